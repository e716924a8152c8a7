"""`propensity train`: flags → training.train(); prints a leaderboard or the --json document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from propensity.cli.common import Steps, emit_json, info, took


@click.command("train")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Training config (default: configs/train.yaml).")
@click.option("--profile", default=None, help="A named profile of the config, e.g. 'demo' (a quick search).")
@click.option("--features", "features_path", type=click.Path(path_type=Path), required=True,
              help="Snapshot Parquet file written by `propensity features` (needs the label).")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Number of Optuna trials.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Search time budget in seconds.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes sharing one study.")
@click.option("--storage", default=None, help="Optuna storage URL (sqlite:///... or postgresql://...).")
@click.option("--study", "study_name", default=None, help="Optuna study name (join an existing study).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: SQLite, work folder).")
@click.option("--oracle", type=click.Path(path_type=Path), default=None,
              help="oracle.parquet of a synthetic shop: print the best achievable AUC next to the model's.")
@click.option("--segmenter", "segmenter_path", type=click.Path(path_type=Path), default=None,
              help="segmenter.joblib written by `propensity segment`: its segment and cluster become model "
                   "inputs, and the model carries it (serving assigns them the same way).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def train(config_path: Path | None, profile: str | None, features_path: Path, trials: int | None,
          timeout: float | None, workers: int | None, storage: str | None, study_name: str | None,
          tracking_uri: str | None, oracle: Path | None, segmenter_path: Path | None, as_json: bool) -> None:
    """Optuna search over model families on a feature snapshot; registers the best model in MLflow."""
    from training.config import load_train_config
    from training.train import train as train_stage

    cfg = load_train_config(config_path, profile, {
        "search": {"n_trials": trials, "timeout_s": timeout, "workers": workers, "storage": storage,
                   "study_name": study_name},
        "tracking": {"uri": tracking_uri},
    })
    segmenter = None
    if segmenter_path is not None:
        from features.segments.segmenter import Segmenter

        segmenter = Segmenter.load(segmenter_path)
    with Steps("training", as_json=as_json, counter=r"^trial (\d+)/(\d+)") as steps:
        result = train_stage(features_path, cfg, oracle=oracle, pre_transform=segmenter, progress=steps)
    if as_json:
        emit_json({**result.to_json(), "seconds": steps.seconds})
        return
    print_training(result)
    info(took(steps.seconds))


def print_training(result: Any) -> None:
    """The human summary of a :class:`training.train.TrainResult` (also used by the demo)."""
    info("")
    info(f"{'family':<24} {'best AUC':>9} {'trials':>7} {'pruned':>7}")
    for row in result.leaderboard:
        auc = f"{row['best_auc']:.4f}" if row["best_auc"] is not None else "-"
        info(f"{row['family']:<24} {auc:>9} {row['complete']:>7} {row['pruned']:>7}")
    m = result.metrics
    info(f"\nbest: {result.best_family} (calibration: {result.calibration})")
    info(f"validation: AUC {m['auc']:.4f}  PR AUC {m['pr_auc']:.4f}  log loss {m['log_loss']:.4f}  "
         f"Brier {m['brier']:.4f}  ECE {m['ece']:.4f}  lift@10% {m['lift_top10']:.2f}  "
         f"capture@10% {m['capture_top10']:.2f}")
    if result.oracle_auc is not None:
        info(f"oracle AUC {result.oracle_auc:.4f} (best achievable); gap {result.oracle_auc - m['auc']:+.4f}")
    info(f"registered: {result.registered_name} version {result.registered_version} "
         f"(alias challenger) -> {result.model_uri}")
    info(f"run: {result.run_id}")
    info(f"MLflow UI: {result.ui_command}")
