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


def _stage(title: str) -> float:
    _say(f"\n== {title} ==")
    return time.perf_counter()


def _done(started: float) -> None:
    _say(f"({time.perf_counter() - started:.1f} s)")


@dataclass
class DemoContext:
    """What the stages share: options, the output folder, the result being filled and what earlier
    stages produced (each stage reads what it needs and adds what it makes)."""

    out: Path
    result: DemoResult
    quiet: bool
    users: int | None = None
    days: int | None = None
    seed: int | None = None
    disparity: str | None = None
    trials: int | None = None
    made: dict[str, Any] = field(default_factory=dict)

    def show(self, printer: Any, value: Any) -> None:
        """Print a stage's usual table unless quiet (``--json``)."""
        if not self.quiet:
            printer(value)


def _notes(message: str) -> None:
    """A stage's progress inside the demo: its notes (counts), not its steps (the demo's bar counts
    stages)."""
    if not isinstance(message, Step):
        info(message)


Stage = tuple[str, Any]  # (title, function(DemoContext) -> None)


def demo_stages() -> list[Stage]:
    """The demo's stages in order: the platform once (generate .. serving), then the loop
    (``propensity.cli.demo_loop``: monitor, retrain, live A/B, decision). Other modules add theirs here."""
    from propensity.cli.demo_loop import LOOP_STAGES

    return [*CORE_STAGES, *LOOP_STAGES]


def run_demo(out_dir: str | Path | None = None, users: int | None = None, days: int | None = None,
             seed: int | None = None, disparity: str | None = None, trials: int | None = None,
             quiet: bool = False) -> DemoResult:
    """Run every stage under a progress display (a bar over the stages with ETA on a terminal);
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
    """Run every stage of :func:`demo_stages` on a synthetic shop; returns paths, headline numbers and
    follow-up commands.

    ``users``/``days``/``seed``/``disparity`` override ``configs/generate.yaml``; ``trials`` the
    ``demo`` training profile (8 trials). ``quiet`` keeps the stage tables off stdout.
    """
    from propensity.paths import work_dir

    out = Path(out_dir) if out_dir is not None else work_dir() / "demo"
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out, DemoResult(out), quiet, users, days, seed, disparity, trials)
    stages = demo_stages()
    for k, (title, run) in enumerate(stages, start=1):
        t = _stage(f"{k}/{len(stages)} {title}")
        run(ctx)
        _done(t)
    _where(ctx)
    return ctx.result


def _generate(ctx: DemoContext) -> None:
    from features.shop.config import load_generate_config, parse_disparity
    from features.shop.generate import generate
    from propensity.cli.demo_loop import plant_shift

    spec = parse_disparity(ctx.disparity).model_dump() if ctx.disparity else None
    gen_cfg = load_generate_config(users=ctx.users, days=ctx.days, seed=ctx.seed, disparity=spec)
    plant_shift(ctx, gen_cfg)
    shop = generate(ctx.out / "shop", gen_cfg, progress=_notes)
    s = shop.stats
    info(f"{s['users']} users, {s['days']} days: {s['events']} event rows ({s['duplicates']} duplicates, "
         f"{s['malformed']} malformed), {s['purchases']} purchases -> {shop.events.parent}")
    ctx.result.files.update(events=str(shop.events), users=str(shop.users), oracle=str(shop.oracle))
    start = datetime(gen_cfg.start.year, gen_cfg.start.month, gen_cfg.start.day, tzinfo=UTC)
    ctx.made.update(shop=shop, gen_cfg=gen_cfg, start=start, horizon=timedelta(days=gen_cfg.horizon_days))


def _features(ctx: DemoContext) -> None:
    from features.batch.pipeline import build_features

    shop, start, horizon = ctx.made["shop"], ctx.made["start"], ctx.made["horizon"]
    # the latest cut-off with a full label window (before the planted shift when the loop runs)
    end_day = ctx.made.get("champion_until", ctx.made["gen_cfg"].days)
    as_of = start + timedelta(days=end_day) - horizon
    spacing = timedelta(days=7)
    n_snapshots = max(2, min(4, (as_of - start - timedelta(days=7)) // spacing + 1))
    features_path = ctx.out / "features.parquet"
    built = build_features(shop.events, shop.users, as_of, horizon, n_snapshots, spacing, features_path,
                           progress=_notes)
    rate = "n/a" if built.label_rate is None else f"{built.label_rate:.1%}"
    info(f"{built.rows} rows ({built.users} users, {n_snapshots} snapshots every 7d up to {as_of.date()}), "
         f"label rate {rate}, {built.quarantined} rows quarantined -> {built.output}")
    if built.quarantine_path is not None:
        info(f"quarantine: {built.quarantine_path}")
    ctx.result.files["features"] = str(built.output)
    ctx.result.numbers.update(rows=built.rows, label_rate=built.label_rate, quarantined=built.quarantined)
    ctx.made.update(as_of=as_of, built=built)


def _segments(ctx: DemoContext) -> None:
    from features.segments.stage import segment_snapshot
    from propensity.cli.segment import print_segments

    segments = segment_snapshot(ctx.made["built"].output, ctx.out / "segments")
    ctx.show(print_segments, segments)
    ctx.result.files.update(segment_profile=str(segments.profile_md), segment_plot=str(segments.plot_path),
                            segment_report=str(segments.report_html))
    ctx.result.numbers["clusters"] = segments.n_clusters
    ctx.made["segments"] = segments


def _train(ctx: DemoContext) -> None:
    from features.segments.segmenter import Segmenter
    from propensity.cli.train import print_training
    from training.config import load_train_config
    from training.train import train

    overrides = {"search": {"n_trials": ctx.trials}} if ctx.trials else None
    trained = train(ctx.made["built"].output, load_train_config(None, "demo", overrides),
                    pre_transform=Segmenter.load(ctx.made["segments"].segmenter_path), progress=info)
    ctx.show(print_training, trained)
    ctx.result.numbers.update(auc=trained.metrics["auc"], oracle_auc=trained.oracle_auc,
                              model_version=trained.registered_version)
    ctx.result.commands["mlflow_ui"] = trained.ui_command
    ctx.made["trained"] = trained


def _audit(ctx: DemoContext) -> None:
    from fairness.promote import promote
    from fairness.stage import audit_model
    from propensity.cli.audit import print_audit

    trained, shop = ctx.made["trained"], ctx.made["shop"]
    audited = audit_model(trained.model_uri, ctx.made["built"].output, shop.users, out_dir=ctx.out / "audit")
    ctx.show(print_audit, audited)
    ctx.result.files["audit_report"] = str(audited.html_path)
    ctx.result.numbers["fairness_gate"] = audited.verdict.verdict
    name, version = trained.registered_name, str(trained.registered_version)
    if not audited.verdict.blocks_promotion:  # pass, or insufficient_evidence (printed above)
        promote(name, version)
        serving_uri = f"models:/{name}@champion"
        info(f"gate {audited.verdict.verdict}: {name} version {version} is now the champion")
    else:
        serving_uri = trained.model_uri
        info(f"gate failed: {name} version {version} is NOT promoted (the report names the failing groups; "
             f"`propensity promote --force --reason ...` would override and be recorded)")
    ctx.made.update(audited=audited, serving_uri=serving_uri)


def _experiment(ctx: DemoContext) -> None:
    import polars as pl

    from experiments import demo_experiment
    from experiments.config import load_experiments_config
    from features.ingest.tables import read_table
    from features.ingest.validate import validate_events

    shop = ctx.made["shop"]
    exp_demo = load_experiments_config().demo
    exposure_start = ctx.made["as_of"] - timedelta(days=exp_demo.days)
    arms = list(exp_demo.variants)
    info(f"users seen from {exposure_start.date()} for {exp_demo.days} days are split into {', '.join(arms)} "
         f"({arms[0]} = control); planted relative lifts "
         + ", ".join(f"{k} {v:+.0%}" for k, v in list(exp_demo.variants.items())[1:])
         + " on top of the shop's own purchases")
    clean_events = validate_events(read_table(shop.events), source=str(shop.events)).clean
    experiment = demo_experiment(ctx.out / "experiment", shop=(clean_events, pl.read_parquet(shop.users),
                                                               exposure_start))
    for verdict in experiment["verdicts"]:
        info(f"- {verdict}")
    for warning in experiment["warnings"]:
        info(f"warning: {warning}")
    info(f"report: {experiment['html']} (Markdown: {experiment['markdown']})")
    ctx.result.files["experiment_report"] = str(experiment["html"])
    ctx.made.update(clean_events=clean_events, experiment=experiment)


def _serving(ctx: DemoContext) -> None:
    from serving.runner import sample_request

    shop, serving_uri = ctx.made["shop"], ctx.made["serving_uri"]
    user = _an_active_user(ctx.made["built"].output)
    command, answer = sample_request(serving_uri, user, str(shop.events), str(shop.users),
                                     as_of=ctx.made["as_of"].isoformat())
    serve = f"propensity serve --model {serving_uri} --users {shop.users}"
    info(f"start the service:  {serve}")
    info(f"then ask it:        {command}")
    info("it answers (computed in-process from the same profile, as_of the last cut-off):")
    info(_compact(answer))
    ctx.result.commands.update(serve=serve, predict=command)
    ctx.result.numbers["sample_probability"] = answer.get("probability")
    ctx.made.update(user=user, answer=answer)


def _content(ctx: DemoContext) -> None:
    from propensity.cli.demo_content import content_stage  # its own module (content/ab_demo.py works)

    content_stage(ctx.result, ctx.out, ctx.made["shop"].events.parent, ctx.made["user"], ctx.made["answer"],
                  info)


CORE_STAGES: list[Stage] = [
    ("generate a synthetic shop", _generate),
    ("point-in-time features", _features),
    ("segments: engagement, journey stages, behavioural clusters", _segments),
    ("train: Optuna search, MLflow tracking, registry", _train),
    ("fairness audit, SHAP explanations and the promotion gate", _audit),
    ("A/B experiment on the shop's users", _experiment),
    ("serving: the HTTP service and one real answer", _serving),
    ("content: rendered components and a recommender A/B with simulated visitors", _content),
]


def _where(ctx: DemoContext) -> None:
    m, r = ctx.made, ctx.result
    info("\n== where everything is ==")
    info(f"data:        {m['shop'].events.parent}")
    info(f"features:    {m['built'].output} (registry: docs/FEATURES.md)")
    info(f"segments:    {m['segments'].report_html} ({m['segments'].profile_md}, {m['segments'].plot_path})")
    info(f"MLflow:      {m['trained'].ui_command}")
    info(f"fairness:    {m['audited'].html_path}")
    info(f"experiment:  {m['experiment']['html']}")
    info(f"serving:     {r.commands['serve']}")
    for label, key in (("monitoring:", "monitor_report"), ("retrain:", "retrain_audit"),
                       ("live A/B:", "ab_exposures")):
        if key in r.files:
            info(f"{label:<12} {r.files[key]}")


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
                    "(MLflow), fairness audit and promotion gate, an A/B report, a sample prediction; then "
                    "the loop on a planted concept shift: monitor, retrain, a live champion/challenger A/B "
                    "and the promotion decision (with --days >= 44).")
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
