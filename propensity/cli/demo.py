"""`propensity demo`: every stage once, end to end, on a generated shop with the embedded defaults.

:func:`run_demo` is the Python entry point; it only calls the stage functions in order
(generate -> features -> segment -> train -> audit -> promote -> experiment -> serving sample) and
prints each stage's usual summary. Results go under ``<work>/demo`` (work = ``$PROPENSITY_HOME``
or ``./work``); MLflow uses the default local SQLite store of the work folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from propensity.cli.common import Steps, emit_json, info, took
from propensity.progress import Step


@dataclass
class DemoResult:
    """Where the demo wrote everything, and the headline numbers."""

    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document: ``paths`` (every artefact, ``out_dir`` included), headline
        ``numbers``, follow-up ``commands`` and the total ``seconds``."""
        return {"paths": {"out_dir": str(self.out_dir), **self.files}, "numbers": self.numbers,
                "commands": self.commands, "seconds": self.seconds}


_say: Any = info  # where stage headers and timings go (the demo's progress display while it runs)


def _notes(message: str) -> None:
    """A stage's progress inside the demo: its notes (counts), not its steps (the demo's bar counts
    stages)."""
    if not isinstance(message, Step):
        info(message)


def _stage(title: str) -> float:
    _say(f"\n== {title} ==")
    return time.perf_counter()


def _done(started: float) -> None:
    _say(f"({time.perf_counter() - started:.1f} s)")


def run_demo(out_dir: str | Path | None = None, users: int | None = None, days: int | None = None,
             seed: int | None = None, disparity: str | None = None, trials: int | None = None,
             quiet: bool = False) -> DemoResult:
    """Run every stage under a progress display (a bar over the 7 stages with ETA on a terminal);
    see :func:`_run_stages`."""
    global _say
    with Steps("demo", as_json=quiet, counter=r"== (\d+)/(\d+)") as steps:
        _say = steps
        try:
            result = _run_stages(out_dir, users, days, seed, disparity, trials, quiet)
        finally:
            _say = info
    result.seconds = steps.seconds
    info(f"total: {took(result.seconds)}")
    return result


def _run_stages(out_dir: str | Path | None, users: int | None, days: int | None, seed: int | None,
                disparity: str | None, trials: int | None, quiet: bool) -> DemoResult:
    """Run every stage on a synthetic shop; returns paths, headline numbers and follow-up commands.

    ``users``/``days``/``seed``/``disparity`` override ``configs/generate.yaml``; ``trials`` the
    ``demo`` training profile (8 trials). ``quiet`` keeps the stage tables off stdout.
    """
    import polars as pl

    from experiments import demo_experiment
    from experiments.config import load_experiments_config
    from fairness.promote import promote
    from fairness.stage import audit_model
    from features.batch.pipeline import build_features
    from features.ingest.tables import read_table
    from features.ingest.validate import validate_events
    from features.segments.segmenter import Segmenter
    from features.segments.stage import segment_snapshot
    from features.shop.config import load_generate_config, parse_disparity
    from features.shop.generate import generate
    from propensity.cli.audit import print_audit
    from propensity.cli.segment import print_segments
    from propensity.cli.train import print_training
    from propensity.paths import work_dir
    from serving.runner import sample_request
    from training.config import load_train_config
    from training.train import train

    out = Path(out_dir) if out_dir is not None else work_dir() / "demo"
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out)
    show = (lambda _r: None) if quiet else None

    t = _stage("1/7 generate a synthetic shop")
    spec = parse_disparity(disparity).model_dump() if disparity else None
    gen_cfg = load_generate_config(users=users, days=days, seed=seed, disparity=spec)
    shop = generate(out / "shop", gen_cfg, progress=_notes)
    s = shop.stats
    info(f"{s['users']} users, {s['days']} days: {s['events']} event rows ({s['duplicates']} duplicates, "
         f"{s['malformed']} malformed), {s['purchases']} purchases -> {shop.events.parent}")
    result.files.update(events=str(shop.events), users=str(shop.users), oracle=str(shop.oracle))
    _done(t)

    t = _stage("2/7 point-in-time features")
    start = datetime(gen_cfg.start.year, gen_cfg.start.month, gen_cfg.start.day, tzinfo=UTC)
    horizon = timedelta(days=gen_cfg.horizon_days)
    as_of = start + timedelta(days=gen_cfg.days) - horizon  # the latest cut-off with a full label window
    spacing = timedelta(days=7)
    n_snapshots = max(2, min(4, (as_of - start - timedelta(days=7)) // spacing + 1))
    features_path = out / "features.parquet"
    built = build_features(shop.events, shop.users, as_of, horizon, n_snapshots, spacing, features_path,
                           progress=_notes)
    rate = "n/a" if built.label_rate is None else f"{built.label_rate:.1%}"
    info(f"{built.rows} rows ({built.users} users, {n_snapshots} snapshots every 7d up to {as_of.date()}), "
         f"label rate {rate}, {built.quarantined} rows quarantined -> {built.output}")
    if built.quarantine_path is not None:
        info(f"quarantine: {built.quarantine_path}")
    result.files["features"] = str(built.output)
    result.numbers.update(rows=built.rows, label_rate=built.label_rate, quarantined=built.quarantined)
    _done(t)

    t = _stage("3/7 segments: engagement, journey stages, behavioural clusters")
    segments = segment_snapshot(features_path, out / "segments")
    (show or print_segments)(segments)
    result.files.update(segment_profile=str(segments.profile_md), segment_plot=str(segments.plot_path),
                        segment_report=str(segments.report_html))
    result.numbers["clusters"] = segments.n_clusters
    _done(t)

    t = _stage("4/7 train: Optuna search, MLflow tracking, registry")
    overrides = {"search": {"n_trials": trials}} if trials else None
    trained = train(features_path, load_train_config(None, "demo", overrides),
                    pre_transform=Segmenter.load(segments.segmenter_path), progress=info)
    (show or print_training)(trained)
    result.numbers.update(auc=trained.metrics["auc"], oracle_auc=trained.oracle_auc,
                          model_version=trained.registered_version)
    result.commands["mlflow_ui"] = trained.ui_command
    _done(t)

    t = _stage("5/7 fairness audit, SHAP explanations and the promotion gate")
    audited = audit_model(trained.model_uri, features_path, shop.users, out_dir=out / "audit")
    (show or print_audit)(audited)
    result.files["audit_report"] = str(audited.html_path)
    result.numbers["fairness_gate"] = audited.verdict.verdict
    name, version = trained.registered_name, str(trained.registered_version)
    if not audited.verdict.blocks_promotion:  # pass, or insufficient_evidence (printed above)
        promote(name, version)
        serving_uri = f"models:/{name}@champion"
        info(f"gate {audited.verdict.verdict}: {name} version {version} is now the champion")
    else:
        serving_uri = trained.model_uri
        info(f"gate failed: {name} version {version} is NOT promoted (the report names the failing groups; "
             f"`propensity promote --force --reason ...` would override and be recorded)")
    _done(t)

    t = _stage("6/7 A/B experiment on the shop's users")
    exp_demo = load_experiments_config().demo
    exposure_start = as_of - timedelta(days=exp_demo.days)
    arms = list(exp_demo.variants)
    info(f"users seen from {exposure_start.date()} for {exp_demo.days} days are split into {', '.join(arms)} "
         f"({arms[0]} = control); planted relative lifts "
         + ", ".join(f"{k} {v:+.0%}" for k, v in list(exp_demo.variants.items())[1:])
         + " on top of the shop's own purchases")
    clean_events = validate_events(read_table(shop.events), source=str(shop.events)).clean
    experiment = demo_experiment(out / "experiment", shop=(clean_events, pl.read_parquet(shop.users),
                                                           exposure_start))
    for verdict in experiment["verdicts"]:
        info(f"- {verdict}")
    for warning in experiment["warnings"]:
        info(f"warning: {warning}")
    info(f"report: {experiment['html']} (Markdown: {experiment['markdown']})")
    result.files["experiment_report"] = str(experiment["html"])
    _done(t)

    t = _stage("7/7 serving: the HTTP service and one real answer")
    user = _an_active_user(built.output)
    command, answer = sample_request(serving_uri, user, str(shop.events), str(shop.users),
                                     as_of=as_of.isoformat())
    serve = f"propensity serve --model {serving_uri} --users {shop.users}"
    info(f"start the service:  {serve}")
    info(f"then ask it:        {command}")
    info("it answers (computed in-process from the same profile, as_of the last cut-off):")
    info(_compact(answer))
    result.commands.update(serve=serve, predict=command)
    result.numbers["sample_probability"] = answer.get("probability")
    _done(t)

    from propensity.cli.demo_content import content_stage  # its own module (content/ab_demo.py works)
    content_stage(result, out, shop.events.parent, user, answer, _stage, _done, info)

    info("\n== where everything is ==")
    info(f"data:        {shop.events.parent}")
    info(f"features:    {built.output} (registry: docs/FEATURES.md)")
    info(f"segments:    {segments.report_html} ({segments.profile_md}, {segments.plot_path})")
    info(f"MLflow:      {trained.ui_command}")
    info(f"fairness:    {audited.html_path}")
    info(f"experiment:  {experiment['html']}")
    info(f"serving:     {serve}")
    return result


def _an_active_user(features_path: Path) -> str:
    """A user of the latest snapshot with recent activity (a more telling sample answer)."""
    import polars as pl

    frame = pl.read_parquet(features_path, columns=["user_id", "as_of", "events_7d"])
    latest = frame.filter(pl.col("as_of") == pl.col("as_of").max()).sort(["events_7d", "user_id"],
                                                                          descending=[True, False])
    return str(latest["user_id"][min(10, latest.height - 1)])


def _compact(answer: dict[str, Any]) -> str:
    import json

    return json.dumps(answer, default=str, indent=2)


@click.command(help="Run every stage end to end on a synthetic shop: generate, features, segments, train "
                    "(MLflow), fairness audit and promotion gate, an A/B report, a sample prediction.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder [<work>/demo; work = $PROPENSITY_HOME or ./work].")
@click.option("--users", type=click.IntRange(min=100), default=None, help="Users in the shop [20000].")
@click.option("--days", type=click.IntRange(min=22), default=None, help="Days of events [60].")
@click.option("--seed", type=int, default=None, help="Random seed of the shop [42].")
@click.option("--disparity", default=None, metavar="[KIND:]FEATURE=VALUE[:FACTOR]",
              help="Plant a group (see `propensity generate --help`); the fairness gate should then fail.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Optuna trials [demo profile: 8].")
@click.option("--json", "as_json", is_flag=True, help="Print paths and headline numbers as JSON at the end.")
def demo(out_dir: Path | None, users: int | None, days: int | None, seed: int | None, disparity: str | None,
         trials: int | None, as_json: bool) -> None:
    result = run_demo(out_dir, users, days, seed, disparity, trials, quiet=as_json)
    if as_json:
        emit_json(result.to_json())
