"""Retraining after a planted concept shift: how much of the champion's lost AUC the challenger wins back.

Per seed: a shop with ``--shift`` (default ``concept:loyalty_tier=none:3@40``) and onset + 20 days; the
champion is trained on snapshots whose labels end at the onset; "now" is 13 days after it (the
events known then: labels of two post-shift weeks); the challenger is trained on fresh snapshots up
to the latest complete label window (:func:`training.retrain.latest_cutoff`), its search seeded with
the champion's parameters (:func:`training.retrain.champion_trial`), once per recency half-life
(``--half-lives``, days; 0 = equal weights; :func:`training.retrain.challenger_config`) and per
refit setting (``--refit``: 0 = the searched candidate as fitted on the training snapshots, 1 = the
same candidate refitted on training + validation snapshots, ``retrain.refit_with_validation``).
All are scored on the labelled snapshot at "now" (the week neither saw; AUC and, for the
challengers, log loss) and on the pre-shift validation snapshot, next to the oracle (``p_true``).
Without ``--half-lives`` and ``--refit`` it measures the shipped default (configs/train.yaml
``retrain:``; plus equal weights when that default weighs by recency):

    loss      = (oracle - champion) after  -  (oracle - champion) before     (AUC points)
    recovered = (challenger - champion) after / loss            (per challenger)

    python -m bench.bench_retrain [--seeds 42 43 44] [--users 20000] [--shift SPEC] [--snapshots 4]
                                  [--every 7] [--half-lives 0 3.5] [--refit 0 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from sklearn.metrics import log_loss, roc_auc_score


def _auc(frame: pl.DataFrame, oracle: pl.DataFrame, models: dict) -> dict[str, float]:
    truth = oracle.with_columns(pl.col("as_of").cast(frame.schema["as_of"]))
    rows = frame.join(truth, on=["user_id", "as_of"])
    y = rows.get_column("label").to_numpy()
    out = {"oracle": float(roc_auc_score(y, rows.get_column("p_true").to_numpy()))}
    for k, m in models.items():
        p = m.predict_proba(rows)
        out[k], out[f"{k} log loss"] = float(roc_auc_score(y, p)), float(log_loss(y, p, labels=[0, 1]))
    return out


def _name(half_life: float, refit: bool) -> str:
    return f"{half_life:g}{' refit' if refit else ''}"


def one_seed(seed: int, users: int, shift: str, trials: int, work: Path, snapshots: int = 4,
             half_lives: tuple[float, ...] = (0.0,), refits: tuple[bool, ...] = (False,),
             every_days: float = 7.0) -> dict[str, float]:
    from features.batch.pipeline import build_features
    from features.shop.config import load_generate_config
    from features.shop.generate import generate
    from features.shop.shifts import parse_shift
    from training.config import load_train_config
    from training.retrain import challenger_config, champion_trial, latest_cutoff
    from training.train import train

    onset = parse_shift(shift).day
    cfg = load_generate_config(users=users, days=onset + 20, seed=seed)
    cfg.shifts = [parse_shift(shift)]
    shop = generate(work / "shop", cfg)
    start, week = datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=UTC), timedelta(days=7)
    now = start + timedelta(days=onset + 13)
    events = pl.read_parquet(shop.events)
    events.filter(pl.col("timestamp") < now).write_parquet(work / "past.parquet")
    latest = events.filter(pl.col("timestamp") < now).get_column("timestamp").max()
    assert isinstance(latest, datetime)
    as_of = latest_cutoff(latest, week)
    before_onset = start + timedelta(days=onset) - week
    build_features(shop.events, shop.users, before_onset, week, 4, week, work / "c.parquet")
    build_features(work / "past.parquet", shop.users, as_of, week, snapshots, timedelta(days=every_days),
                   work / "r.parquet")
    build_features(shop.events, shop.users, now, week, 1, week, work / "after.parquet")
    train_cfg = load_train_config(None, "demo", {"search": {"n_trials": trials},
                                                 "tracking": {"plots": False, "log_trials": False}})
    champion = train(work / "c.parquet", train_cfg)
    seed_trial = champion_trial(champion.model, list(train_cfg.search.families))
    models = {"champion": champion.model}
    names = [_name(h, r) for h in half_lives for r in refits]
    for half_life in half_lives:  # one challenger per recency half-life (0: equal weights) and refit
        for refit in refits:
            train_cfg.retrain.recency_half_life_days = half_life or None
            train_cfg.retrain.refit_with_validation = refit
            models[f"challenger {_name(half_life, refit)}"] = train(
                work / "r.parquet", challenger_config(train_cfg),
                seed_trials=[seed_trial] if seed_trial else None).model
    oracle = pl.read_parquet(shop.oracle, columns=["user_id", "as_of", "p_true"])
    after = _auc(pl.read_parquet(work / "after.parquet"), oracle, models)
    before = (champion.oracle_auc or float("nan")) - champion.metrics["auc"]
    loss = (after["oracle"] - after["champion"]) - before
    recovered = {f"recovered {n}": (after[f"challenger {n}"] - after["champion"]) / loss
                 if loss > 0 else float("nan") for n in names}
    return {"seed": seed, "gap_before": before, **after, "loss": loss, **recovered}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--shift", default="concept:loyalty_tier=none:3@40")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--snapshots", type=int, default=4, help="the challenger's fresh snapshots")
    parser.add_argument("--every", type=float, default=7.0,
                        help="days between the challenger's snapshots (below 7 their label weeks overlap)")
    parser.add_argument("--half-lives", type=float, nargs="+", default=None,
                        help="recency half-lives (days) of the challengers, 0 = equal weights "
                             "[0 and configs/train.yaml retrain.recency_half_life_days]")
    parser.add_argument("--refit", type=int, nargs="+", choices=[0, 1], default=None,
                        help="refit settings of the challengers: 0 = fitted on the training snapshots, "
                             "1 = refitted on training + validation snapshots [configs/train.yaml "
                             "retrain.refit_with_validation]")
    args = parser.parse_args()
    half_lives = tuple(args.half_lives if args.half_lives is not None else _default_half_lives())
    if args.refit is None:
        from training.config import load_train_config

        args.refit = [int(load_train_config().retrain.refit_with_validation)]
    refits = tuple(bool(r) for r in args.refit)
    names = [_name(h, r) for h in half_lives for r in refits]
    print(f"shift {args.shift}, {args.users} users, {args.trials} trials (demo profile), challenger on "
          f"{args.snapshots} snapshots every {args.every:g} days, recency half-lives "
          f"{', '.join(f'{h:g}' for h in half_lives)} days, "
          f"refit {', '.join(str(r) for r in args.refit)}")
    heads = "".join(f" {'ch. ' + n:>14} {'recov.':>7} {'logloss':>7}" for n in names)
    print(f"{'seed':>5} {'gap before':>10} {'oracle':>7} {'champion':>8} {'loss':>7}{heads} {'seconds':>7}")
    with tempfile.TemporaryDirectory() as tmp:  # one work folder: MLflow keeps its store open across seeds
        os.environ["PROPENSITY_HOME"] = tmp
        for seed in args.seeds:
            started = time.perf_counter()
            work = Path(tmp) / f"seed{seed}"
            work.mkdir()
            r = one_seed(seed, args.users, args.shift, args.trials, work, args.snapshots, half_lives, refits,
                         args.every)
            cells = "".join(f" {r[f'challenger {n}']:>14.4f} {r[f'recovered {n}']:>7.0%} "
                            f"{r[f'challenger {n} log loss']:>7.4f}" for n in names)
            print(f"{seed:>5} {r['gap_before']:>10.4f} {r['oracle']:>7.4f} {r['champion']:>8.4f} "
                  f"{r['loss']:>7.4f}{cells} {time.perf_counter() - started:>7.0f}", flush=True)


def _default_half_lives() -> list[float]:
    from training.config import load_train_config

    configured = load_train_config().retrain.recency_half_life_days
    return [0.0] + ([configured] if configured else [])


if __name__ == "__main__":
    main()
