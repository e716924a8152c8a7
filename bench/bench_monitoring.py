"""Monitoring quality and cost (issue 14).

Quality, per seed and planted shift (a shop without sale days, shift at day ONSET): train on
snapshots before the shift, backfill-monitor the days around it, then report
* the first drift alert on the shifted feature, in windows after the onset (goal <= 2),
* false alarms: drift alerts of any feature in the windows before the onset (goal 0),
* on the labelled windows before the onset: mean |estimated - realised AUC| (goal <= 0.02), the
  share of windows whose realised AUC lies in the estimate's interval (goal >= 0.9) and the
  interval's mean width.

Cost: ``monitor --predictions`` over a synthetic prediction log of N rows (feature vectors on a
sample share of them, files of 1M records) and its purchases, wall and CPU seconds (user + system,
all threads) and peak memory (a child process per run, measured by ``resource``), against a bare
Polars scan of the same log (daily group-by with null counts of every column). The model's
``import``/MLflow start-up and the HTML report are included.

    PYTHONPATH=. python -m bench.bench_monitoring quality --seeds 1 2 3 [--config monitor.yaml]
    PYTHONPATH=. python -m bench.bench_monitoring cost --rows 10000000 --model URI --reference F
    PYTHONPATH=. python -m bench.bench_monitoring gate --seeds $(seq 1 20) --users 3000 [--disparity ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

START = date(2026, 9, 1)
ONSET = 40
SHIFTS = {"covariate": ("covariate:source=ads:3@40", "source_share_ads_30d"),
          "tracking": ("tracking:device=mobile:scroll_depth@40", "avg_scroll_depth_30d")}


def _cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "propensity.cli", *args, "--json"], capture_output=True,
                          text=True,
                          env=env, timeout=3000)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _day(k: int) -> str:
    return (START + timedelta(days=k)).isoformat()


def quality_run(tmp: Path, shift: str, seed: int, users: int, config: str | None = None) -> dict[str, Any]:
    spec, feature = SHIFTS[shift]
    env = {**os.environ, "PROPENSITY_HOME": str(tmp / "work")}
    _cli(env, "generate", "--users", str(users), "--days", "60", "--seed", str(seed), "--no-sale",
         "--shift", spec, "--out", str(tmp / "shop"))
    shop = tmp / "shop"
    _cli(env, "features", "--events", str(shop / "events.parquet"), "--users", str(shop / "users.parquet"),
         "--as-of", _day(28), "--snapshots", "3", "--every", "7d", "--out", str(tmp / "F.parquet"))
    trained = _cli(env, "train", "--profile", "demo", "--trials", "2", "--features", str(tmp / "F.parquet"))
    started = time.perf_counter()
    doc = _cli(env, "monitor", "--model", trained["model_uri"], "--events", str(shop / "events.parquet"),
               "--users", str(shop / "users.parquet"), "--from", _day(29), "--to", _day(47),
               "--reference", str(tmp / "F.parquet"), "--out", str(tmp / "mon"), "--no-record",
               *(["--config", config] if config else []))
    seconds = time.perf_counter() - started
    onset = datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(days=ONSET)
    drift = [a for a in doc["alerts"] if a["kind"] == "drift"]
    before = [a for a in drift if datetime.fromisoformat(a["window_start"]) <= onset]
    hits = sorted(datetime.fromisoformat(a["window_start"]) for a in drift if a["subject"] == feature
                  and datetime.fromisoformat(a["window_start"]) > onset)
    stable = [w for w in doc["windows"] if w["realized_auc"] is not None
              and datetime.fromisoformat(w["start"]) <= onset]
    gaps = [abs(w["estimated_auc"] - w["realized_auc"]) for w in stable]
    inside = [w["estimated_auc_low"] <= w["realized_auc"] <= w["estimated_auc_high"] for w in stable]
    return {"shift": shift, "seed": seed, "users": users, "monitor_seconds": round(seconds, 1),
            "first_alert_windows_after_onset": (hits[0] - onset).days if hits else None,
            "false_alarms_before_onset": len(before),
            "false_alarm_subjects": sorted({a["subject"] for a in before}),
            "other_alerts": sorted({(a["kind"], a["subject"]) for a in doc["alerts"]
                                    if a["kind"] != "drift"}),
            "stable_labelled_windows": len(stable),
            "mean_abs_auc_gap": sum(gaps) / len(gaps) if gaps else None,
            "interval_coverage": sum(inside) / len(inside) if inside else None,
            "interval_mean_width": (sum(w["estimated_auc_high"] - w["estimated_auc_low"] for w in stable)
                                    / len(stable) if stable else None)}


CHUNK_ROWS = 1_000_000  # records per log file (the service rotates its log by size and time too)


def write_log(path: Path, rows: int, feature_share: float, seed: int = 0) -> Path:
    """A synthetic prediction log (``monitoring.log`` schema) of ``rows`` records over 30 days, sorted
    by time, in files of ``CHUNK_ROWS`` records under ``path/log/``, with 66 feature columns on a
    ``feature_share`` of the records; and matching purchases in ``path/events.parquet``."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    n_users = max(1000, rows // 50)
    t0 = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp() * 1e6)
    times = np.sort(rng.integers(t0, t0 + 30 * 86_400_000_000, rows))
    (path / "log").mkdir(parents=True, exist_ok=True)
    buys = []
    for k, first in enumerate(range(0, rows, CHUNK_ROWS)):
        frame = _log_chunk(rng, times[first:first + CHUNK_ROWS], first, n_users, feature_share)
        frame.write_parquet(path / "log" / f"part-{k:04d}.parquet", row_group_size=200_000)
        bought = rng.random(frame.height) < frame["probability"].to_numpy() * 0.5
        buys.append(frame.filter(pl.Series(bought)).select(
            "user_id", (pl.col("time") + timedelta(hours=20)).alias("timestamp")))
    events = pl.concat(buys).with_columns(pl.int_range(pl.len()).cast(pl.String).alias("event_id"),
                                          pl.lit("purchase").alias("event"))
    events.write_parquet(path / "events.parquet")
    return path


def _log_chunk(rng: Any, times: Any, first: int, n_users: int, feature_share: float) -> Any:
    import numpy as np
    import polars as pl

    from features.registry import CATEGORICAL_FEATURES, FEATURE_NAMES

    rows = len(times)
    sampled = rng.random(rows) < feature_share
    frame = pl.DataFrame({"request_id": pl.Series(np.arange(first, first + rows)).cast(pl.String),
                          "time": times, "user_id": pl.Series(rng.integers(0, n_users, rows)).cast(pl.String),
                          "probability": rng.beta(1.2, 10, rows)}).with_columns(
        pl.col("time").cast(pl.Datetime("us", "UTC")), pl.lit("propensity-conversion").alias("model_name"),
        pl.lit("1").alias("model_version"), pl.lit("champion").alias("variant"),
        pl.lit(None, pl.String).alias("segment"), pl.lit(None, pl.String).alias("journey_stage"),
        pl.lit("show").alias("decision"), pl.lit("profile").alias("source"))
    feats = {}
    for name in FEATURE_NAMES:
        if name in CATEGORICAL_FEATURES:
            values = np.array(["a", "b", "c", "d"])[rng.integers(0, 4, rows)]
            feats[name] = pl.Series(name, values).set(pl.Series(~sampled), None)
        else:
            feats[name] = pl.Series(name, np.where(sampled, rng.gamma(1.0, 2.0, rows), np.nan)).fill_nan(None)
    return frame.with_columns(**feats)


def _child(code: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3000)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


SCAN = """
import json, resource, time, polars as pl
t = time.perf_counter()
out = pl.scan_parquet({log!r} + "/*.parquet").group_by(pl.col("time").dt.truncate("1d")).agg(
    pl.len(), pl.col("probability").mean().alias("mean_p"),
    pl.all().exclude("time").null_count()).collect()
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": time.perf_counter() - t, "cpu": u.ru_utime + u.ru_stime,
                  "peak_mb": u.ru_maxrss / 1024}}))
"""
MONITOR = """
import json, resource, time
from monitoring.config import load_monitor_config
from monitoring.stage import monitor
cfg = load_monitor_config(overrides={{"tracking": {{"log_to_mlflow": False}}}})
t = time.perf_counter()
r = monitor({model!r}, predictions={log!r}, events={events!r}, reference={reference!r}, out_dir={out!r},
            cfg=cfg, record=False)
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": time.perf_counter() - t, "windows": len(r.windows), "alerts": len(r.alerts),
                  "cpu": u.ru_utime + u.ru_stime, "peak_mb": u.ru_maxrss / 1024}}))
"""


def cost_run(tmp: Path, rows: int, model_uri: str, reference: str, feature_share: float) -> dict[str, Any]:
    folder = write_log(tmp / f"log{rows}", rows, feature_share)
    log = str(folder / "log")
    scan = _child(SCAN.format(log=log))
    run = _child(MONITOR.format(model=model_uri, log=log, events=str(folder / "events.parquet"),
                                reference=reference, out=str(tmp / f"mon{rows}")))
    return {"rows": rows, "feature_share": feature_share, "monitor_seconds": round(run["seconds"], 1),
            "monitor_cpu_seconds": round(run["cpu"], 1), "monitor_peak_mb": round(run["peak_mb"]),
            "scan_seconds": round(scan["seconds"], 2), "scan_cpu_seconds": round(scan["cpu"], 2),
            "scan_peak_mb": round(scan["peak_mb"]),
            "ratio_to_scan": round(run["seconds"] / scan["seconds"], 1),
            "cpu_ratio_to_scan": round(run["cpu"] / scan["cpu"], 1)}


def gate_run(seed: int, users: int, disparity: str | None) -> dict[str, Any]:
    """The gate's verdict on a shop's oracle scores (the true probabilities at the last full
    snapshot, audited against the observed purchases), with and without intervals. The oracle is the
    best possible model of the shop; without a planted disparity only the mild built-in group
    differences and noise remain."""
    from bench.bench_gate import oracle_rows
    from fairness.audit import audit_arrays
    from fairness.config import GateConfig
    from fairness.gate import evaluate_gate

    y, p_true, sensitive = oracle_rows(users, seed, disparity)
    out: dict[str, Any] = {"seed": seed, "users": users, "disparity": disparity}
    for label, n_boot in (("point", 0), ("confidence", 200)):
        audit = audit_arrays(y, p_true, sensitive, intervals="wilson" if n_boot else None, seed=seed)
        verdict = evaluate_gate(audit, GateConfig())
        out[label] = verdict.verdict
        out[f"{label}_failing"] = [(f["metric"], f["feature"], round(f["value"], 3), f["interval"])
                                   for f in verdict.failing]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["quality", "cost", "gate"])
    parser.add_argument("--disparity", default=None)
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--shifts", nargs="*", default=list(SHIFTS))
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--feature-share", type=float, default=0.1)
    parser.add_argument("--model", default=None, help="cost: a registered model URI (MLFLOW_TRACKING_URI)")
    parser.add_argument("--reference", default=None, help="cost: its training snapshot")
    parser.add_argument("--config", default=None, help="quality: monitor.yaml [configs/monitor.yaml]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "gate":
            for seed in args.seeds:
                print(json.dumps(gate_run(seed, args.users, args.disparity)), flush=True)
        elif args.what == "quality":
            for shift in args.shifts:
                for seed in args.seeds:
                    row = quality_run(Path(tmp) / f"{shift}{seed}", shift, seed, args.users, args.config)
                    print(json.dumps(row), flush=True)
        else:
            for rows in args.rows:
                print(json.dumps(cost_run(Path(tmp), rows, args.model, args.reference, args.feature_share)),
                      flush=True)


if __name__ == "__main__":
    main()
