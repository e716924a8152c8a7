"""The demo's loop stages: a planted concept shift, monitoring, retraining, a live A/B, the decision.

Timeline on a shop of D days (day 0 = its start; D >= :data:`MIN_DAYS`):

* the champion is trained on snapshots whose label windows end before the shift (stage "features"
  stops at ``SHIFT_DAY - 7``); from ``SHIFT_DAY = D - 29`` the users without a loyalty tier (half the
  shop) are twice as likely to buy while their browsing stays the same
  (``concept:loyalty_tier=none:2@SHIFT_DAY``, features/shop/shifts.py). The group is a model input, so
  retraining can learn the new link; a shift on a sensitive attribute the model does not take as
  input (``concept:country=fr:0.5``) cannot be learnt back (BENCHMARKS.md, Retraining);
* "now" is ``NOW_DAY = D - 14``: monitoring backfills weekly windows of the events known by then
  (the week before the shift and the week after it) and retraining uses those events only;
* the live A/B enrols users during the 7 days from ``NOW_DAY`` (days the models never saw) and their
  conversions are read 7 days on (experiments/simulate_models.py states the outcome model);
* the decision is ``propensity promote --from-experiment``'s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from propensity.cli.common import info

if TYPE_CHECKING:
    from propensity.cli.demo import DemoContext

MIN_DAYS = 44
SHIFT = "concept:loyalty_tier=none:2@{day}"
AB_DAYS, OUTCOME_DAYS = 7, 7
CHALLENGER_SHARE = 0.5  # the demo's split: half the users, for power within a week
MARGIN = 0.005  # non-inferiority margin on conversion (0.5 pp), the CLI default
NO_REFIT_HALF_LIFE_DAYS = 3.5  # the demo's retrain: no refit, recency weighting (see _retrain)
RETRAIN_TRIALS = 4  # the champion's parameters and each demo family's defaults (the queued trials)


def plant_shift(ctx: DemoContext, gen_cfg: Any) -> None:
    """Add the planted shift to the shop's config and set the loop's days (no loop on a short shop)."""
    from features.shop.shifts import parse_shift

    days = gen_cfg.days
    if days < MIN_DAYS:
        info(f"(the loop stages need --days >= {MIN_DAYS}; they are skipped on this {days}-day shop)")
        return
    now = days - AB_DAYS - OUTCOME_DAYS
    shift = now - 15
    gen_cfg.shifts = [*gen_cfg.shifts, parse_shift(SHIFT.format(day=shift))]
    ctx.made.update(loop=True, shift_day=shift, now_day=now, champion_until=shift)
    info(f"planted: {SHIFT.format(day=shift)} (the champion learns from the days before it)")


def _day(ctx: DemoContext, day: int) -> Any:
    return ctx.made["start"] + timedelta(days=day)


def _runs(ctx: DemoContext) -> bool:
    if not ctx.made.get("loop"):
        info("skipped (a shop shorter than the loop needs)")
        return False
    if ctx.made["serving_uri"] != "models:/propensity-conversion@champion":
        info("skipped: there is no champion to monitor and challenge (the gate failed)")
        return False
    return True


def _monitor(ctx: DemoContext) -> None:
    import polars as pl

    from monitoring.stage import monitor

    if not _runs(ctx):
        return
    now = _day(ctx, ctx.made["now_day"])
    past = ctx.out / "loop" / "events_until_now.parquet"
    past.parent.mkdir(parents=True, exist_ok=True)
    pl.read_parquet(ctx.made["shop"].events).filter(pl.col("timestamp") < now).write_parquet(past)
    shift = ctx.made["shift_day"]
    result = monitor(ctx.made["serving_uri"], events=past, users=ctx.made["shop"].users,
                     start=_day(ctx, shift - 7), end=_day(ctx, shift + 7), every=timedelta(days=7),
                     out_dir=ctx.out / "monitor")
    for w in (w.to_json() for w in result.windows):
        auc, rate = (("-" if w[k] is None else f"{w[k]:.3f}") for k in ("realized_auc", "realized_rate"))
        info(f"week from {w['start'][:10]}: {w['predictions']} users scored, mean probability "
             f"{w['mean_probability']:.3f}, realised rate {rate}, realised AUC {auc} (estimated "
             f"{w['estimated_auc']:.3f})")
    for alert in result.alerts:
        info(f"ALERT {alert['window_start'][:10]} {alert['kind']}: {alert['subject']} {alert['value']:.3f} "
             f"(threshold {alert['threshold']:.3f})")
    if not result.alerts:
        info("no alert: the shift did not cross a configured threshold (configs/monitor.yaml)")
    ctx.result.files["monitor_report"] = str(result.report)
    ctx.result.numbers["monitor_alerts"] = len(result.alerts)
    ctx.made["past_events"] = past


def _retrain(ctx: DemoContext) -> None:
    from propensity.cli.retrain import print_retrain
    from training.config import load_train_config
    from training.retrain import retrain

    if not _runs(ctx):
        return
    trials = min(ctx.trials or RETRAIN_TRIALS, RETRAIN_TRIALS)
    cfg = load_train_config(None, "demo", {"search": {"n_trials": trials}})
    # No refit on the validation snapshot here (retrain's default is on): on the demo shop it adds one
    # ~28 s hist-gradient-boosting fit, which takes the demo to ~3 min (BENCHMARKS.md, Retraining).
    # Without the refit the latest post-shift week only validates, and a 3.5-day recency half-life
    # (not retrain's default equal weights, measured best with the refit) was the best measured.
    cfg.retrain.refit_with_validation = False
    cfg.retrain.recency_half_life_days = NO_REFIT_HALF_LIFE_DAYS
    done = retrain(ctx.made["past_events"], ctx.made["shop"].users, cfg, champion=ctx.made["serving_uri"],
                   out_dir=ctx.out / "retrain", serving_config=ctx.out / "serving.yaml",
                   challenger_share=CHALLENGER_SHARE, explain=False, progress=info)
    print_retrain(done)
    ctx.result.files.update(retrain_audit=str(done.audit_report))
    if done.serving_config is not None:
        ctx.result.files["serving_config"] = str(done.serving_config)
    ctx.result.numbers.update(challenger_version=done.trained.registered_version, challenger_gate=done.gate)
    ctx.made["retrained"] = done


def _live_ab(ctx: DemoContext) -> None:
    from experiments.simulate_models import simulate_model_ab
    from serving.config import load_serving_config

    if not _runs(ctx):
        return
    if not ctx.made["retrained"].alias_set:
        info("skipped: the challenger's gate failed, there is nothing to test")
        return
    now = _day(ctx, ctx.made["now_day"])
    snapshot, oracle = _snapshot_at(ctx, now)
    models = {"champion": ctx.made["trained"].model, "challenger": ctx.made["retrained"].trained.model}
    _quality(ctx, snapshot, models)
    split = load_serving_config(ctx.out / "serving.yaml").experiment
    ab = simulate_model_ab(ctx.made["clean_events"], oracle, snapshot, models, ctx.out / "live_ab", now,
                           days=AB_DAYS, salt=split.salt, share=split.challenger_share, experiment=split.name)
    info(f"users seen in the {AB_DAYS} days from {now.date()} are split by the service's hash "
         f"(salt '{split.salt}', challenger share {split.challenger_share}); each arm's model picks its top "
         f"20% for an incentive, whose response follows the shop's true probabilities")
    for arm, n in ab["arms"].items():
        info(f"- {arm}: {n['users']} users, {n['treated']} treated, {n['planted_purchases']} extra purchases")
    ctx.result.files.update(ab_exposures=str(ab["paths"]["exposures"]), ab_events=str(ab["paths"]["events"]))
    ctx.made["ab"] = ab


def _snapshot_at(ctx: DemoContext, now: Any) -> tuple[Any, Any]:
    """The point-in-time snapshot at ``now`` (with the labels of the week after it) and the oracle."""
    import polars as pl

    from features.batch.snapshot import build_snapshots_at
    from features.ingest.tables import read_table
    from features.ingest.validate import validate_users
    from features.segments.stage import add_segment_features

    users = validate_users(read_table(ctx.made["shop"].users)).clean
    events = ctx.made["clean_events"]
    snapshot = add_segment_features(build_snapshots_at(events, users, [now], ctx.made["horizon"]), events)
    return snapshot, pl.read_parquet(ctx.made["shop"].oracle)


def _quality(ctx: DemoContext, snapshot: Any, models: dict[str, Any]) -> None:
    """AUC of the oracle, the champion and the challenger on the labelled snapshot at "now", next to the
    champion's before the shift: how much of the shift's cost the challenger wins back."""
    import polars as pl
    from sklearn.metrics import roc_auc_score

    oracle = pl.read_parquet(ctx.made["shop"].oracle, columns=["user_id", "as_of", "p_true"])
    rows = snapshot.join(oracle.with_columns(pl.col("as_of").cast(snapshot.schema["as_of"])),
                         on=["user_id", "as_of"])
    y = rows.get_column("label").to_numpy()
    auc = {"oracle": float(roc_auc_score(y, rows.get_column("p_true").to_numpy()))}
    auc.update({k: float(roc_auc_score(y, m.predict_proba(rows))) for k, m in models.items()})
    trained = ctx.made["trained"]
    before = (trained.oracle_auc or float("nan")) - trained.metrics["auc"]
    loss = (auc["oracle"] - auc["champion"]) - before
    won = (auc["challenger"] - auc["champion"]) / loss if loss > 0 else float("nan")
    info(f"labelled week from now: AUC oracle {auc['oracle']:.3f}, champion {auc['champion']:.3f}, "
         f"challenger {auc['challenger']:.3f}; the champion's gap to the oracle grew by {loss:+.3f} after "
         f"the shift, the challenger wins back {won:.0%} of it")
    ctx.result.numbers.update(after_shift_auc=auc, shift_auc_loss=loss, recovered_share=won)


def _decide(ctx: DemoContext) -> None:
    from experiments.champion import decide_challenge
    from propensity.cli.audit import print_decision

    if "ab" not in ctx.made:
        info("skipped: no live A/B")
        return
    paths = ctx.made["ab"]["paths"]
    decision = decide_challenge(paths["exposures"], paths["events"], margin=MARGIN,
                                challenger_share=CHALLENGER_SHARE, serving_config=ctx.out / "serving.yaml")
    print_decision(decision)
    info(f"from the shell: propensity promote --from-experiment --exposures {paths['exposures']} "
         f"--events {paths['events']} --margin {MARGIN}")
    ctx.result.numbers.update(promoted=decision.promoted, decision=decision.reason)


LOOP_STAGES: list[tuple[str, Any]] = [
    ("monitor the champion after a planted concept shift", _monitor),
    ("retrain: a challenger seeded with the champion, gated, staged in serving", _retrain),
    ("live A/B: champion vs challenger on the following week", _live_ab),
    ("decision: non-inferiority on conversion, then promotion", _decide),
]
