"""`propensity retrain`: flags → :func:`training.retrain.retrain`; a summary or the --json document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from propensity.cli.common import Steps, emit_json, info, took


@click.command("retrain", help="Retrain on fresh snapshots (up to the latest complete label window of the "
                               "events; now = the latest event time), seed the Optuna search with the "
                               "champion's parameters, audit the challenger with the fairness gate and, "
                               "unless the gate fails, give it the alias 'challenger' and write the serving "
                               "config with the champion/challenger split on (a running service applies it "
                               "on restart).")
@click.option("--events", type=click.Path(path_type=Path), required=True, help="Events file (up to now).")
@click.option("--users", type=click.Path(path_type=Path), default=None, help="Users (CRM) file.")
@click.option("--champion", default=None,
              help="The model challenged [models:/<registered model>@champion].")
@click.option("--snapshots", type=click.IntRange(min=2), default=4, show_default=True,
              help="Weekly snapshots to build (the latest validates).")
@click.option("--recency-half-life", "half_life", type=click.FloatRange(min=0), default=None, metavar="DAYS",
              help="Weigh the training snapshots by recency: a row's weight halves every DAYS days of "
                   "its snapshot's age; 0 = equal weights [the training config's "
                   "retrain.recency_half_life_days: equal weights].")
@click.option("--refit/--no-refit", "refit", default=None,
              help="After the search, fit the chosen candidate again on the training and validation "
                   "snapshots together (the latest labels; same rounds; validation metrics and "
                   "calibration stay the held-out candidate's) [the training config's "
                   "retrain.refit_with_validation: on].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Training config [configs/train.yaml].")
@click.option("--profile", default=None, help="A named profile of the training config, e.g. 'demo'.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Optuna trials.")
@click.option("--fairness-config", type=click.Path(path_type=Path), default=None,
              help="Fairness config [configs/fairness.yaml].")
@click.option("--serving-config", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Serving config written with the split on [<work>/serving.yaml; the other settings "
                   "come from it when it exists, else from configs/serving.yaml].")
@click.option("--challenger-share", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Share of users the split sends to the challenger [the serving config's, 0.1].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for the snapshots and the audit report [<work>/retrain].")
@click.option("--tracking-uri", default=None, help="MLflow store [default: SQLite in the work folder].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def retrain(events: Path, users: Path | None, champion: str | None, snapshots: int, half_life: float | None,
            refit: bool | None, config_path: Path | None, profile: str | None, trials: int | None,
            fairness_config: Path | None, serving_config: Path | None, challenger_share: float | None,
            out_dir: Path | None, tracking_uri: str | None, as_json: bool) -> None:
    from fairness.config import load_fairness_config
    from training.config import load_train_config
    from training.retrain import retrain as retrain_stage

    cfg = load_train_config(config_path, profile, {"search": {"n_trials": trials},
                                                   "tracking": {"uri": tracking_uri}})
    if half_life is not None:
        cfg.retrain.recency_half_life_days = half_life or None
    if refit is not None:
        cfg.retrain.refit_with_validation = refit
    fairness = load_fairness_config(fairness_config)
    if tracking_uri:
        fairness.tracking.uri = tracking_uri
    with Steps("retraining", as_json=as_json, counter=r"^trial (\d+)/(\d+)") as steps:
        result = retrain_stage(events, users, cfg, fairness_cfg=fairness, champion=champion, out_dir=out_dir,
                               serving_config=serving_config, snapshots=snapshots,
                               challenger_share=challenger_share, progress=steps)
    if as_json:
        emit_json(result.to_json())
        return
    print_retrain(result)
    info(took(steps.seconds))


def print_retrain(result: Any) -> None:
    """The human summary of a :class:`training.retrain.RetrainResult` (also used by the demo)."""
    t = result.trained
    info(f"now {result.now:%Y-%m-%d %H:%M} UTC: snapshots up to {result.as_of.date()} -> {result.features}")
    oracle = f" (oracle {t.oracle_auc:.4f})" if t.oracle_auc is not None else ""
    info(f"challenger {t.registered_name} v{t.registered_version}: {t.best_family}, validation AUC "
         f"{t.metrics['auc']:.4f}{oracle}; champion was v{result.champion[1]}")
    info(f"fairness gate: {result.gate} (report {result.audit_report})")
    if result.alias_set:
        info(f"alias 'challenger' -> v{t.registered_version}; split on in {result.serving_config} "
             f"(restart `propensity serve --config {result.serving_config}` to apply it)")
    else:
        info("the gate failed: no 'challenger' alias, the serving config is unchanged")
