"""Benchmark of `propensity generate`: seconds and events/s for a shop of N users x D days.

    .venv/bin/python -m bench.bench_generate [--users 100000] [--days 60] [--repeat 3] [--json]

Baseline measured in the same run: NumPy drawing the same number of uniform random numbers as
the shop has event rows, times the 13 columns of an event, written to Parquet with Polars (the
floor of any generator that writes that many rows).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.shop.config import load_generate_config
from features.shop.generate import generate


def baseline(rows: int, out: Path) -> None:
    rng = np.random.default_rng(0)
    pl.DataFrame({f"c{i}": rng.random(rows) for i in range(13)}).write_parquet(out)


def run(users: int, days: int, repeat: int) -> dict[str, Any]:
    cfg = load_generate_config(users=users, days=days)
    best_gen, best_base, rows = float("inf"), float("inf"), 0
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        for _ in range(repeat):
            started = time.perf_counter()
            files = generate(Path(tmp) / "shop", cfg)
            best_gen = min(best_gen, time.perf_counter() - started)
            rows = int(files.stats["events"])
            started = time.perf_counter()
            baseline(rows, Path(tmp) / "baseline.parquet")
            best_base = min(best_base, time.perf_counter() - started)
    return {"users": users, "days": days, "event_rows": rows, "seconds": best_gen,
            "events_per_s": rows / best_gen, "baseline_seconds": best_base,
            "vs_baseline": best_gen / best_base}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.users, args.days, args.repeat)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['users']:,} users x {report['days']} days: {report['event_rows']:,} event rows in "
              f"{report['seconds']:.2f} s ({report['events_per_s']:,.0f} events/s); baseline (random columns "
              f"to Parquet) {report['baseline_seconds']:.2f} s -> {report['vs_baseline']:.2f}x")
    return report


if __name__ == "__main__":
    main()
