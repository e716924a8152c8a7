"""Benchmark: analysing N unit-level rows (3 variants, a binary and a continuous metric).

Each step runs in a fresh subprocess on the same Parquet file, so peak memories do not mix:
- ``analyze``: Parquet read -> :func:`experiments.analyze_experiment` (metric detection, Polars
  aggregation, SRM, chi-square, z-tests, Welch ANOVA and t-tests, Holm, Beta-Binomial, power checks);
- ``baseline``: Parquet read -> bare numpy ``bincount`` per-variant sums -> scipy chi-square and
  Welch t-tests of the same comparisons (no validation, no Bayes, no corrections).
Reports wall seconds, CPU seconds, peak resident memory (GiB) and the ratio analyze / baseline.

    .venv/bin/python -m bench.bench_experiments --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def make_data(path: Path, rows: int, seed: int = 0) -> None:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    variant = rng.integers(0, 3, rows).astype(np.int8)
    converted = (rng.random(rows) < 0.10 + 0.005 * variant).astype(np.int8)
    revenue = np.where(converted == 1, rng.gamma(2.0, 25.0, rows), 0.0)
    pl.DataFrame({"variant": pl.Series(np.array(["A", "B", "C"])[variant]).cast(pl.Categorical),
                  "converted": converted, "revenue": revenue}).write_parquet(path)


def run_analyze(path: str) -> dict[str, Any]:
    import polars as pl

    from experiments import analyze_experiment

    frame = pl.read_parquet(path)
    result = analyze_experiment(frame, "variant", "A", ["converted", "revenue"])
    return {"p_values": [c.p_value for m in result.metrics.values() for c in m.comparisons]}


def run_baseline(path: str) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from scipy import stats

    table = pq.read_table(path)
    names = table.column("variant").cast(pa.string())
    v = pc.index_in(names, value_set=pa.array(["A", "B", "C"])).to_numpy()
    conv = table.column("converted").to_numpy().astype(float)
    rev = table.column("revenue").to_numpy()
    n = np.bincount(v)
    p_values = []
    s = np.bincount(v, conv)
    for k in (1, 2):
        chi = stats.chi2_contingency([[s[k], n[k] - s[k]], [s[0], n[0] - s[0]]], correction=False)
        p_values.append(float(chi.pvalue))
    total, total_sq = np.bincount(v, rev), np.bincount(v, rev * rev)
    mean, var = total / n, (total_sq - total**2 / n) / (n - 1)
    for k in (1, 2):
        p_values.append(float(stats.ttest_ind_from_stats(mean[k], np.sqrt(var[k]), n[k], mean[0],
                                                         np.sqrt(var[0]), n[0], equal_var=False).pvalue))
    return {"p_values": p_values}


def _child(step: str, path: str) -> None:
    import pyarrow.parquet  # noqa: F401  (imports are not timed)
    import scipy.stats  # noqa: F401

    import experiments  # noqa: F401

    start, cpu0 = time.perf_counter(), time.process_time()
    out = (run_analyze if step == "analyze" else run_baseline)(path)
    out.update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu0,
               peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--child", nargs=2, metavar=("STEP", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "units.parquet"
        make_data(path, args.rows)
        results = {}
        for step in ("baseline", "analyze"):
            cmd = [sys.executable, "-m", "bench.bench_experiments", "--child", step, str(path)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results[step] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, base = results["analyze"], results["baseline"]
    agree = max(abs(a - b) for a, b in zip(ours["p_values"], base["p_values"], strict=True))
    report = {"rows": args.rows, "analyze_s": round(ours["seconds"], 2),
              "baseline_s": round(base["seconds"], 2), "ratio": round(ours["seconds"] / base["seconds"], 2),
              "analyze_cpu_s": round(ours["cpu_seconds"], 2),
              "analyze_peak_gib": round(ours["peak_rss_gib"], 2),
              "baseline_peak_gib": round(base["peak_rss_gib"], 2), "max_p_value_gap": agree}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
