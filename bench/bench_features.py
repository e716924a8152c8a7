"""Benchmark: events -> snapshot features, Parquet read to Parquet written.

Measures, in one run on the same input:
- ``pipeline``: :func:`features.batch.pipeline.build_features` (read, normalise, validate, de-duplicate,
  snapshot, write the snapshot, its quarantine and its metadata);
- ``snapshot``: Parquet read -> :func:`features.batch.snapshot.build_snapshot` -> Parquet write (clean input);
- ``baseline``: one hand-written Polars group-by computing the same per-user aggregates (counts,
  sessions, recency, sums, means, mixes), Parquet read to Parquet written, without validation,
  labels, joins, fixed-point sums or derived columns.
Reports wall seconds, events/s, CPU seconds (user + system, all threads: steadier than wall time
when other processes share the cores), the ratios against the baseline and the peak resident
memory of each step (each run is a fresh subprocess so peaks do not mix).

    .venv/bin/python -m bench.bench_features --events 5000000 --users 200000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

AS_OF = datetime(2024, 3, 1, tzinfo=UTC)
EVENT_MIX = {"page_view": 0.40, "product_view": 0.22, "scroll": 0.12, "search": 0.08, "add_to_cart": 0.07,
             "remove_from_cart": 0.02, "checkout_start": 0.03, "purchase": 0.02, "video_play": 0.02,
             "newsletter_signup": 0.01, "whitepaper_download": 0.01}
PAGE_TYPES = ("home", "category", "product", "cart", "checkout", "content")


def make_events(n_events: int, n_users: int, days: int = 60, seed: int = 0) -> pl.DataFrame:
    """A simple random clickstream in the events contract (skewed user activity, ~1% duplicates)."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    user = rng.choice(n_users, n_events, p=activity / activity.sum())
    start_us = int((AS_OF - timedelta(days=days)).timestamp() * 1e6)
    ts = start_us + rng.integers(0, (days + 7) * 86_400_000_000, n_events)
    names = list(EVENT_MIX)
    ev = rng.choice(len(names), n_events, p=np.array(list(EVENT_MIX.values())) / sum(EVENT_MIX.values()))
    session = ts // (4 * 3_600_000_000)
    event_idx = np.arange(n_events)
    dup = rng.random(n_events) < 0.01
    event_idx[dup] = np.maximum(event_idx[dup] - 1, 0)
    value = np.where(np.isin(ev, [names.index("add_to_cart"), names.index("purchase")]),
                     np.round(rng.gamma(2.0, 30.0, n_events), 2), np.nan)
    return pl.DataFrame({
        "event_id": pl.Series(event_idx).cast(pl.String),
        "user_id": pl.Series(user).cast(pl.String),
        "timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
        "event": pl.Series(ev).replace_strict(dict(enumerate(names)), return_dtype=pl.String),
        "session_id": pl.Series(user * 1_000_000 + session % 1_000_000).cast(pl.String),
        "page_type": pl.Series(rng.integers(0, len(PAGE_TYPES), n_events))
        .replace_strict(dict(enumerate(PAGE_TYPES)), return_dtype=pl.String),
        "value": pl.Series(value).fill_nan(None),
        "duration_s": pl.Series(np.round(rng.exponential(40.0, n_events), 1)),
        "scroll_depth": pl.Series(np.round(rng.random(n_events), 2)),
        "device": pl.Series(rng.integers(0, 3, n_events))
        .replace_strict({0: "mobile", 1: "desktop", 2: "tablet"}, return_dtype=pl.String),
        "source": pl.Series(rng.integers(0, 5, n_events))
        .replace_strict(dict(enumerate(("direct", "search", "social", "email", "ads"))),
                        return_dtype=pl.String),
    })


def baseline(events_path: Path, out: Path) -> int:
    """One hand-written Polars group-by computing the same per-user aggregates (no validation)."""
    from features.registry import WINDOWS_DAYS
    from features.schema import DEVICES, EVENT_TYPES, SOURCES

    as_of = pl.lit(AS_OF)
    ts, ev = pl.col("timestamp"), pl.col("event")
    in_w = {w: ts >= as_of - pl.duration(days=w) for w in WINDOWS_DAYS}
    aggs = []
    for w in WINDOWS_DAYS:
        aggs += [((ev == e) & in_w[w]).sum().alias(f"{e}_{w}d") for e in EVENT_TYPES]
        aggs += [in_w[w].sum().alias(f"events_{w}d"),
                 pl.col("session_id").filter(in_w[w]).n_unique().alias(f"sessions_{w}d")]
    in30 = in_w[30]
    aggs += [
        ts.max().alias("last"), ts.min().alias("first"),
        ts.filter(ev == "add_to_cart").max().alias("last_cart"),
        ts.filter(ev == "purchase").max().alias("last_buy"),
        pl.col("duration_s").filter(in30 & (pl.col("page_type") == "product")).sum().alias("product_time"),
        pl.col("duration_s").filter(in30).mean().alias("avg_duration"),
        pl.col("scroll_depth").filter(in30).mean().alias("avg_scroll"),
        pl.col("value").filter(in30 & (ev == "add_to_cart")).sum().alias("cart_value"),
        pl.col("value").filter(in30 & (ev == "purchase")).sum().alias("purchase_value"),
        (ev == "purchase").sum().alias("purchases"),
        pl.col("value").filter(ev == "purchase").sum().alias("purchase_value_total"),
        *[(in30 & (pl.col("device") == d)).sum().alias(f"device_{d}") for d in DEVICES],
        *[(in30 & (pl.col("source") == s)).sum().alias(f"source_{s}") for s in SOURCES],
    ]
    frame = pl.scan_parquet(events_path).filter(ts < as_of).group_by("user_id").agg(aggs).collect()
    frame.write_parquet(out)
    return frame.height


def snapshot_only(events_path: Path, out: Path) -> int:
    """Parquet read -> build_snapshot -> Parquet write, on clean input (no validation)."""
    from features.batch.snapshot import SNAPSHOT_EVENT_COLUMNS, build_snapshot

    present = pl.read_parquet_schema(events_path)
    events = pl.read_parquet(events_path, columns=[c for c in SNAPSHOT_EVENT_COLUMNS if c in present])
    frame = build_snapshot(events, None, AS_OF, timedelta(days=7))
    frame.write_parquet(out)
    return frame.height


def pipeline(events_path: Path, out: Path, segment_features: bool = False) -> int:
    """The whole feature stage: build_features (ingest, validate, snapshot, write, metadata);
    like for like with the baseline, so without the engagement score and journey stage columns."""
    from features.batch.config import FeaturesConfig, PrivacyConfig
    from features.batch.pipeline import build_features

    config = FeaturesConfig(privacy=PrivacyConfig(ledger_path=str(out.with_suffix(".ledger.jsonl"))),
                            segment_features=segment_features)
    return build_features(events_path, None, AS_OF, timedelta(days=7), 1, None, out, config).rows


def pipeline_segments(events_path: Path, out: Path) -> int:
    """The default feature stage: as ``pipeline`` plus engagement_score and journey_stage."""
    return pipeline(events_path, out, segment_features=True)


STEPS = {"baseline": baseline, "snapshot": snapshot_only, "pipeline": pipeline,
         "pipeline_segments": pipeline_segments}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(step: str, events_path: Path, out: Path, repeat: int) -> dict[str, Any]:
    """Best wall and CPU seconds (user + system, all threads) of ``repeat`` runs, and the peak RSS."""
    best, best_cpu, rows = float("inf"), float("inf"), 0
    for _ in range(repeat):
        started, cpu = time.perf_counter(), _cpu_seconds()
        rows = STEPS[step](events_path, out)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, _cpu_seconds() - cpu)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step": step, "seconds": best, "cpu_seconds": best_cpu, "rows": rows, "peak_mib": peak_mib}


def _run_step(step: str, events_path: Path, out: Path, repeat: int) -> dict[str, Any]:
    """Run one step ``repeat`` times in a fresh interpreter so its peak memory is its own."""
    cmd = [sys.executable, "-m", "bench.bench_features", "--child", step, "--input", str(events_path),
           "--repeat", str(repeat), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N rounds (each step once per round)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--steps", nargs="*", choices=list(STEPS), default=list(STEPS),
                        help="steps to run (baseline always runs)")
    parser.add_argument("--child", choices=list(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.input, args.out, args.repeat)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        events_path = Path(tmp) / "events.parquet"
        make_events(args.events, args.users).write_parquet(events_path)
        # Rounds interleave the steps, so a burst of load from other processes hits all of them.
        steps = ["baseline", *[s for s in args.steps if s != "baseline"]]
        runs = [_run_step(step, events_path, Path(tmp) / f"{step}.parquet", 1)
                for _ in range(args.repeat) for step in steps]
    results = {}
    for step in steps:
        mine = [r for r in runs if r["step"] == step]
        results[step] = {"seconds": min(r["seconds"] for r in mine),
                         "cpu_seconds": min(r["cpu_seconds"] for r in mine),
                         "peak_mib": max(r["peak_mib"] for r in mine), "rows": mine[0]["rows"]}
    base, base_cpu = results["baseline"]["seconds"], results["baseline"]["cpu_seconds"]
    for r in results.values():
        r["events_per_s"] = args.events / r["seconds"]
        r["vs_baseline"] = r["seconds"] / base
        r["cpu_vs_baseline"] = r["cpu_seconds"] / base_cpu
    report = {"events": args.events, "users": args.users, "threads": os.environ.get("POLARS_MAX_THREADS"),
              "cpus": os.cpu_count(), "steps": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.events:,} events, {args.users:,} users, best of {args.repeat} interleaved rounds")
    print(f"{'step':<18} {'wall s':>7} {'events/s':>11} {'vs base':>8} {'CPU s':>7} {'vs base':>8} "
          f"{'peak MiB':>9} {'rows':>8}")
    for step, r in results.items():
        print(f"{step:<18} {r['seconds']:>7.2f} {r['events_per_s']:>11,.0f} {r['vs_baseline']:>7.2f}x "
              f"{r['cpu_seconds']:>7.2f} {r['cpu_vs_baseline']:>7.2f}x {r['peak_mib']:>9.0f} {r['rows']:>8}")


if __name__ == "__main__":
    main()
