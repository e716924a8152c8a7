"""`propensity audit` and `propensity promote`: flags → fairness.stage / fairness.promote; summaries."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import click

from propensity.cli.common import Steps, emit_json, info, took


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


@click.command("audit")
@click.option("--model", "model_uri", required=True,
              help="Model URI: models:/NAME/VERSION, models:/NAME@alias or runs:/RUN/model.")
@click.option("--features", "features_path", type=click.Path(path_type=Path), required=True,
              help="Snapshot Parquet file with the label (`propensity features`).")
@click.option("--users", "users_path", type=click.Path(path_type=Path), default=None,
              help="Users file (age, gender, country) when the snapshot lacks the sensitive attributes.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Fairness config (default: configs/fairness.yaml).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Report folder (default: <work>/audit/NAME-VERSION).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: SQLite, work folder).")
@click.option("--mitigation", type=click.Choice(["auto", "always", "never"]), default="auto",
              help="Fit and compare a Fairlearn mitigation: when the gate fails (auto), always or never.")
@click.option("--register-mitigated", is_flag=True, help="Register the mitigated model as a new version.")
@click.option("--fail-on-gate", is_flag=True,
              help="Exit with status 1 when the gate fails (not on insufficient_evidence).")
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON on stdout.")
def audit(model_uri: str, features_path: Path, users_path: Path | None, config_path: Path | None,
          out_dir: Path | None, tracking_uri: str | None, mitigation: str, register_mitigated: bool,
          fail_on_gate: bool, as_json: bool) -> None:
    """Fairness audit (Fairlearn) and SHAP report of a model; the gate verdict is logged to MLflow."""
    from fairness.config import load_fairness_config
    from fairness.stage import audit_model
    from fairness.stage import register_mitigated as register

    cfg = load_fairness_config(config_path)
    if tracking_uri:
        cfg.tracking.uri = tracking_uri
    with Steps(f"auditing {model_uri}", as_json=as_json) as steps:
        result = audit_model(model_uri, features_path, users_path, cfg, out_dir, mitigation=mitigation,
                             progress=steps)
    mitigated_version = None
    if register_mitigated and result.mitigated_model is not None:
        mitigated_version = register(result)
    if as_json:
        emit_json({**result.to_json(), "paths": {"report_html": str(result.html_path),
                                                 "report_json": str(result.json_path)},
                   "seconds": steps.seconds})
    else:
        print_audit(result)
        info(took(steps.seconds))
    if mitigated_version is not None:
        info(f"mitigated model registered as version {mitigated_version} (alias mitigated)")
    if fail_on_gate and result.verdict.blocks_promotion:  # fail; insufficient_evidence does not block
        sys.exit(1)


def print_audit(result: Any) -> None:
    """The human summary of a :class:`fairness.stage.AuditResult` (also used by the demo)."""
    share = result.audit.top_share
    rule = f"top {share:.0%}" if share is not None else "fixed probability"
    info(f"selection: {rule}, threshold {_fmt(result.audit.threshold)}, {result.audit.n_rows} rows")
    for feature, fa in result.audit.features.items():
        info(f"\n{feature}")
        info(f"  {'group':<16} {'count':>7} {'select':>7} {'tpr':>6} {'fpr':>6} {'auc':>6}  status")
        for g in fa.groups:
            info(f"  {g['group']:<16} {g['count']:>7} {_fmt(g['selection_rate']):>7} {_fmt(g['tpr']):>6} "
                 f"{_fmt(g['fpr']):>6} {_fmt(g['auc']):>6}  {g['status']}")
        info("  " + "  ".join(f"{m}={_fmt(v)}" for m, v in fa.metrics.items()))
    for f in result.verdict.failing:
        low, high = f["interval"] or (None, None)
        within = f", interval {_fmt(low)}..{_fmt(high)}" if low is not None else ""
        info(f"FAIL {f['metric']} on {f['feature']}: {_fmt(f['value'])}{within} (limit {f['limit']}; groups "
             f"{', '.join(f['groups'])})")
    for f in result.verdict.undecided:
        low, high = f["interval"]
        info(f"INSUFFICIENT EVIDENCE {f['metric']} on {f['feature']}: {_fmt(f['value'])}, interval "
             f"{_fmt(low)}..{_fmt(high)} straddles the limit {f['limit']} (does not block promotion)")
    section = result.document.get("mitigation")
    if section:
        before, after = section["comparison"]
        info(f"mitigation {section['method']} ({section['constraint']} on {section['feature']}): AUC "
             f"{_fmt(before['auc'])} -> {_fmt(after['auc'])}, DP ratio "
             f"{_fmt(before['demographic_parity_ratio'])} -> {_fmt(after['demographic_parity_ratio'])}, "
             f"verdict after: {section['verdict_after']}")
    info(f"\nverdict: {result.verdict.verdict}")
    info(f"report: {result.html_path}")


@click.command("promote")
@click.option("--model", "name", default=None,
              help="Registered model name [propensity-conversion with --from-experiment].")
@click.option("--version", "version", default=None, help="Model version to promote (not --from-experiment).")
@click.option("--force", is_flag=True, help="Promote even when the audit failed (recorded with --reason).")
@click.option("--reason", default=None, help="Why a forced promotion is acceptable (recorded as a tag).")
@click.option("--from-experiment", is_flag=True,
              help="Decide from a live A/B: promote the 'challenger' version when it is non-inferior on "
                   "conversion (sequential confidence sequence) within --margin and its gate did not fail.")
@click.option("--exposures", default=None,
              help="Exposure log (user_id, variant champion|challenger, first_exposure[, experiment]), or "
                   "what the service writes: its prediction log folder, a Redis stream "
                   "redis://HOST:PORT/DB#STREAM, or exposures.jsonl (as `ab analyze --exposures`).")
@click.option("--events", type=click.Path(path_type=Path), default=None, help="Events: the conversions.")
@click.option("--margin", type=click.FloatRange(min=0), default=0.005, show_default=True,
              help="Non-inferiority margin on conversion, absolute (0.005 = 0.5 percentage points).")
@click.option("--experiment", default=None, help="Experiment name in the log (when it holds several).")
@click.option("--challenger-share", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Planned challenger share: checks the split (sample ratio mismatch) [not checked].")
@click.option("--serving-config", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Serving config whose split is switched off on promotion, when it exists.")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: SQLite, work folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def promote(name: str | None, version: str | None, force: bool, reason: str | None, from_experiment: bool,
            exposures: str | None, events: Path | None, margin: float, experiment: str | None,
            challenger_share: float | None, serving_config: Path | None, tracking_uri: str | None,
            as_json: bool) -> None:
    """Move the champion alias to a model version whose fairness audit passed, or (--from-experiment)
    to the challenger that a live A/B found non-inferior."""
    from fairness.config import load_fairness_config
    from fairness.promote import promote as promote_stage
    from propensity.errors import PropensityError

    cfg = load_fairness_config()
    store = tracking_uri or cfg.tracking.uri
    if from_experiment:
        if exposures is None or events is None or version is not None or force:
            raise PropensityError("--from-experiment needs --exposures LOG and --events E (and takes no "
                                  "--version or --force: the A/B decides)")
        _from_experiment(name or "propensity-conversion", exposures, events, margin, experiment,
                         challenger_share, serving_config, store, cfg.tracking.champion_alias, as_json)
        return
    if name is None or version is None:
        raise PropensityError("promote needs --model NAME --version V (or --from-experiment)")
    done = promote_stage(name, version, force, reason, cfg.tracking.champion_alias, store)
    if as_json:
        emit_json({"name": done.name, "version": done.version, "alias": done.alias, "forced": done.forced,
                   "fairness_gate": done.gate, "previous": done.previous})
        return
    forced = " (forced; reason recorded)" if done.forced else ""
    info(f"{done.name} version {done.version} is now '{done.alias}'{forced}; "
         f"previous: {done.previous or 'none'}")


def _from_experiment(name: str, exposures: str, events: Path, margin: float, experiment: str | None,
                     share: float | None, serving_config: Path | None, store: str | None, alias: str,
                     as_json: bool) -> None:
    from experiments.champion import decide_challenge

    decision = decide_challenge(exposures, events, name=name, margin=margin, experiment=experiment,
                                challenger_share=share, tracking_uri=store, champion_alias=alias,
                                serving_config=serving_config)
    if as_json:
        emit_json(decision.to_json())
        return
    print_decision(decision)


def print_decision(decision: Any) -> None:
    """The human summary of an :class:`experiments.champion.ChallengeDecision` (also used by the demo)."""
    users = ", ".join(f"{v} {n} users, conversion {decision.conversion[v]:.2%}"
                      for v, n in decision.users.items())
    info(f"A/B: {users}")
    verb = "PROMOTED" if decision.promoted else "champion kept"
    info(f"{verb} (challenger v{decision.challenger_version}, champion v{decision.champion_version}, "
         f"gate {decision.fairness_gate}): {decision.reason}")
