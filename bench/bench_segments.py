"""Benchmark of the segments stage: batch score / stage / segment / cluster per user, and the
incremental per-event update of the live profile.

    .venv/bin/python -m bench.bench_segments [--users 1000000] [--events-per-user 10] [--json]

Baselines measured in the same run: a one-aggregate polars group-by over the same events (the
cheapest possible per-user batch pass) and a plain dict update per event (the cheapest possible
incremental step).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from features.segments.config import load_segments_config
from features.segments.engagement import EngagementState, engagement_scores
from features.segments.journey import JourneyState, journey_stages, machine_for
from features.segments.segmenter import Segmenter
from serving.rules import load_rules

AS_OF = datetime(2026, 4, 1, tzinfo=UTC)
EVENTS = ["page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout_start", "purchase",
          "newsletter_signup", "whitepaper_download", "video_play", "search", "scroll"]
SHARES = [0.35, 0.2, 0.05, 0.01, 0.02, 0.01, 0.005, 0.005, 0.05, 0.1, 0.195]


def make_events(n_users: int, per_user: float, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(per_user, n_users) + 1
    user = np.repeat(np.arange(n_users), counts)
    n = len(user)
    start = int((AS_OF - timedelta(days=90)).timestamp() * 1e6)
    ts = start + rng.integers(0, 90 * 86_400_000_000, n)
    kind = rng.choice(len(EVENTS), size=n, p=np.array(SHARES) / sum(SHARES))
    return pl.DataFrame({
        "event_id": pl.int_range(n, eager=True).cast(pl.String),
        "user_id": pl.Series(user).cast(pl.String),
        "timestamp": pl.Series(ts).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "event": pl.Series(np.array(EVENTS)[kind]),
    })


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def snapshot_like(n: int, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cfg = load_segments_config()
    cols = {name: rng.gamma(1.0, 3.0, n) for name in cfg.clustering.features}
    cols["cart_open"] = (rng.random(n) < 0.3).astype(float)
    cols["days_since_last_purchase"] = np.where(rng.random(n) < 0.3, rng.uniform(0, 60, n), np.nan)
    cols["engagement_score"] = rng.normal(3, 4, n)
    return pl.DataFrame({"user_id": pl.int_range(n, eager=True).cast(pl.String), **cols})


def run(n_users: int, per_user: float) -> dict[str, Any]:
    cfg = load_segments_config()
    results: dict[str, Any] = {"users": n_users}
    events = make_events(n_users, per_user)
    results["events"] = events.height
    base_s, _ = timed(lambda: events.group_by("user_id").agg(pl.len()), 2)
    score_s, _ = timed(lambda: engagement_scores(events, AS_OF, cfg), 2)
    stage_s, _ = timed(lambda: journey_stages(events, AS_OF, cfg), 2)
    results["baseline_groupby_s"] = base_s
    results["engagement_batch_s"] = score_s
    results["journey_batch_s"] = stage_s
    results["engagement_users_per_s"] = n_users / score_s
    results["journey_users_per_s"] = n_users / stage_s
    results["engagement_vs_groupby"] = score_s / base_s
    results["journey_vs_groupby"] = stage_s / base_s

    snap = snapshot_like(n_users)
    seg = Segmenter(cfg).fit(snap)
    transform_s, _ = timed(lambda: seg.transform(snap), 2)
    results["segment_cluster_users_per_s"] = n_users / transform_s
    results["segment_cluster_s"] = transform_s
    results["all_four_users_per_s"] = n_users / (score_s + stage_s + transform_s)

    # Incremental: a sample of events fed one at a time, in time order per user.
    sample = events.head(200_000).sort("timestamp").to_dicts()
    machine = machine_for(cfg)
    state_e: dict[str, EngagementState] = {}
    state_j: dict[str, JourneyState] = {}

    def incremental() -> None:
        for row in sample:
            user = row["user_id"]
            e = state_e.get(user)
            if e is None:
                e = state_e[user] = EngagementState(cfg)
                state_j[user] = JourneyState(machine)
            e.add(row)
            state_j[user].apply(row)

    def dict_baseline() -> None:
        counts: dict[tuple[str, str], int] = {}
        for row in sample:
            key = (row["user_id"], row["event"])
            counts[key] = counts.get(key, 0) + 1

    inc_s, _ = timed(incremental)
    dict_s, _ = timed(dict_baseline, 2)
    results["incremental_us_per_event"] = inc_s / len(sample) * 1e6
    results["dict_baseline_us_per_event"] = dict_s / len(sample) * 1e6
    users = list(state_e)[:20_000]
    query_s, _ = timed(lambda: [(state_e[u].score_at(AS_OF), state_j[u].stage_at(AS_OF)) for u in users])
    results["score_and_stage_query_us"] = query_s / len(users) * 1e6
    rows = snap.head(20_000).to_dicts()
    one_s, _ = timed(lambda: [seg.assign_one(r) for r in rows])
    results["assign_one_us"] = one_s / len(rows) * 1e6
    rules = load_rules()
    ctx = {"journey_stage": "consideration", "product_view_7d": 2.0, "add_to_cart_7d": 0.0,
           "hours_since_cart_abandoned": None, "probability": 0.3, "segment": "engaged",
           "purchases_total": 0.0, "whitepaper_download_30d": 0.0, "video_play_30d": 1.0}
    rule_s, _ = timed(lambda: [rules.decide(ctx) for _ in range(50_000)])
    results["rules_decide_us"] = rule_s / 50_000 * 1e6
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events-per-user", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.users, args.events_per_user)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key, value in results.items():
        print(f"{key:32s} {value:,.3f}" if isinstance(value, float) else f"{key:32s} {value:,}")


if __name__ == "__main__":
    main()
