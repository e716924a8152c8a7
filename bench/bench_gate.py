"""Benchmark of the confidence-aware fairness gate: how often it says `fail` on fair and on planted shops.

For each seed, two shops of ``--users`` users x 40 days: one without a planted disparity ("fair":
only the shop's mild built-in age/gender/country effects) and one generated with ``--disparity``
(default ``country=fr:0.3``, "planted"). Each is audited (top 20% selected, the default gate:
demographic parity ratio >= 0.8 and equalized odds difference <= 0.10 on gender, age band and
country) and the verdicts counted per kind, for three ways of judging:

* ``point``: the point values alone (the gate before intervals);
* ``naive_bootstrap``: the percentile interval of the resampled disparity itself (what Fairlearn
  ``MetricFrame(n_boot=..., ci_quantiles=...).difference_ci()/ratio_ci()`` computes; the gate's
  previous method, kept here only for comparison);
* ``gate``: the gate as configured (:mod:`fairness.intervals`, Wilson by default).

Scorers: ``oracle`` (default; fast) audits the shop's true probabilities at the last full snapshot
against the purchases that followed: the best possible model, so "fair" means no disparity beyond
the built-in one. ``model`` runs the real pipeline through the CLI (generate, features, ``train
--profile demo --trials 2``, ``audit``) and reports the gate's verdict only; minutes per shop.
Goal (issue 14): fair shops `fail` in at most 5% of seeds, planted shops `fail`.

    PYTHONPATH=. python -m bench.bench_gate --seeds 1-20 --users 3000 [--scorer model] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fairness.audit import audit_arrays, disparity_metrics
from fairness.config import GateConfig
from fairness.gate import evaluate_gate, judge
from fairness.intervals import cell_counts

PLANTED = "country=fr:0.3"
METHODS = ("point", "naive_bootstrap", "gate")


def oracle_rows(users: int, seed: int,
                disparity: str | None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Labels, oracle scores and sensitive columns at the shop's last full snapshot."""
    import polars as pl

    from features.ingest.validate import validate_events
    from features.schema import age_band
    from features.shop.config import GenerateConfig, parse_disparity
    from features.shop.generate import generate_shop

    spec = parse_disparity(disparity).model_dump() if disparity else None
    shop = generate_shop(GenerateConfig.model_validate({"users": users, "days": 40, "seed": seed,
                                                        "disparity": spec}))
    as_of = shop.oracle["as_of"].max()
    buys = (validate_events(shop.events).clean.filter((pl.col("event") == "purchase")
                                                       & (pl.col("timestamp") >= as_of))
            .select("user_id").unique().with_columns(pl.lit(1).alias("y")))
    rows = (shop.oracle.filter(pl.col("as_of") == as_of).join(shop.users, on="user_id")
            .join(buys, on="user_id", how="left").with_columns(pl.col("y").fill_null(0)))
    sensitive = {"gender": rows["gender"].to_list(), "country": rows["country"].to_list(),
                 "age_band": [age_band(int(a)) for a in rows["age"]]}
    return rows["y"].to_numpy(), rows["p_true"].to_numpy(), sensitive


def naive_intervals(cells: np.ndarray, n_boot: int = 200, level: float = 0.95,
                    seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile interval of the resampled disparity itself (the biased method, for comparison)."""
    flat = cells.reshape(-1).astype(np.float64)
    draws = np.random.default_rng(seed).multinomial(int(flat.sum()), flat / flat.sum(), size=n_boot)
    samples: dict[str, list[float]] = {}
    for c in draws.reshape(n_boot, *cells.shape):
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = [{"selection_rate": g[:, 1].sum() / g.sum(), "tpr": g[1, 1] / g[1].sum(),
                      "fpr": g[0, 1] / g[0].sum()} for g in c]
        for metric, value in disparity_metrics(rates).items():
            samples.setdefault(metric, []).append(value)
    tail = (1 - level) / 2
    out = {}
    for metric, values in samples.items():
        finite = np.array([v for v in values if math.isfinite(v)])
        out[metric] = ((float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail)))
                       if finite.size else (math.nan, math.nan))
    return out


def naive_verdict(audit: Any, y: np.ndarray, y_pred: np.ndarray, sensitive: dict[str, Any], cfg: GateConfig,
                  seed: int) -> str:
    from fairness.audit import group_labels
    from fairness.gate import CHECKS

    verdicts = []
    for feature, fa in audit.features.items():
        names = [g["group"] for g in fa.judged()]
        if len(names) < 2:
            continue
        cells = cell_counts(y, y_pred, group_labels(sensitive[feature]), names)
        intervals = naive_intervals(cells, seed=seed)
        for metric, (key, kind, _) in CHECKS.items():
            limit = getattr(cfg, key)
            if limit is not None and math.isfinite(fa.metrics[metric]):
                verdicts.append(judge(fa.metrics[metric], intervals[metric], limit, kind))
    return "fail" if "fail" in verdicts else "insufficient_evidence" if "insufficient_evidence" in verdicts \
        else "pass"


def oracle_run(users: int, seed: int, disparity: str | None) -> dict[str, Any]:
    """The three verdicts on one shop's oracle scores, with the gate's failing checks."""
    y, score, sensitive = oracle_rows(users, seed, disparity)
    cfg = GateConfig()
    point = audit_arrays(y, score, sensitive)
    gated = audit_arrays(y, score, sensitive, intervals="wilson", seed=seed)
    verdict = evaluate_gate(gated, cfg)
    y_pred = (score >= point.threshold).astype(int)
    return {"point": evaluate_gate(point, cfg).verdict,
            "naive_bootstrap": naive_verdict(point, y, y_pred, sensitive, cfg, seed),
            "gate": verdict.verdict,
            "gate_failing": [(f["metric"], f["feature"], round(f["value"], 3),
                              [round(v, 3) for v in f["interval"]]) for f in verdict.failing]}


def _cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "propensity.cli", *args, "--json"], capture_output=True,
                          text=True, env=env, timeout=3000)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def model_run(users: int, seed: int, disparity: str | None) -> dict[str, Any]:
    """The gate's verdict on a model trained on the shop, through the CLI (as tests/test_shop_fairness)."""
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as folder:
        tmp = Path(folder)
        env = {**os.environ, "PROPENSITY_HOME": str(tmp / "work")}
        planted = ["--disparity", disparity] if disparity else []
        _cli(env, "generate", "--users", str(users), "--days", "40", "--seed", str(seed), "--out",
             str(tmp / "shop"), *planted)
        shop = tmp / "shop"
        events, users_file = str(shop / "events.parquet"), str(shop / "users.parquet")
        snapshot = str(tmp / "F.parquet")
        _cli(env, "features", "--events", events, "--users", users_file, "--as-of", "2026-10-04",
             "--snapshots", "3", "--every", "7d", "--out", snapshot)
        trained = _cli(env, "train", "--profile", "demo", "--trials", "2", "--features", snapshot)
        doc = _cli(env, "audit", "--model", trained["model_uri"], "--features", snapshot, "--users",
                   users_file, "--mitigation", "never", "--out", str(tmp / "audit"))
    point = "fail" if any(c["passed"] is False for c in doc["checks"]) else "pass"
    return {"point": point, "gate": doc["verdict"],
            "gate_failing": [(f["metric"], f["feature"], round(f["value"], 3),
                              [round(v, 3) for v in f["interval"] or []]) for f in doc["failing"]]}


def seeds_of(text: list[str]) -> list[int]:
    """``["1-5", "9"]`` -> ``[1, 2, 3, 4, 5, 9]``."""
    out: list[int] = []
    for item in text:
        low, _, high = item.partition("-")
        out += list(range(int(low), int(high or low) + 1))
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per kind and method: verdict counts and the fail rate."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        out[kind] = {}
        for method in METHODS:
            if method not in mine[0]:
                continue
            counts = Counter(r[method] for r in mine)
            out[kind][method] = {"seeds": len(mine), **dict(counts),
                                 "fail_rate": round(counts["fail"] / len(mine), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", default=["1-20"], help="seeds or ranges (1-20)")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--disparity", default=PLANTED, help="the planted shops' --disparity")
    parser.add_argument("--scorer", choices=["oracle", "model"], default="oracle")
    parser.add_argument("--json", type=Path, default=Path("bench/results/gate.json"))
    args = parser.parse_args()
    run = oracle_run if args.scorer == "oracle" else model_run
    rows = []
    for seed in seeds_of(args.seeds):
        for kind, disparity in (("fair", None), ("planted", args.disparity)):
            row = {"kind": kind, "seed": seed, "users": args.users, **run(args.users, seed, disparity)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"scorer": args.scorer, "users": args.users, "disparity": args.disparity,
              "summary": summary(rows), "runs": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
