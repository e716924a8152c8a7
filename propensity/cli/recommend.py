"""`propensity recommend`: train and compare product recommenders (content/recommend_train.py)."""

from __future__ import annotations

from pathlib import Path

import click

from propensity.cli.common import emit_json, info


@click.group(help="Product recommenders: popularity, item-to-item, ALS and content-based.")
def recommend() -> None:
    pass


TRAIN_HELP = ("Fit every recommender of configs/recommend.yaml on a time split of a generated shop; log "
              "recall@k, NDCG@k and coverage next to the oracle's ideal ranking in MLflow and register "
              "each as a version of one model (alias = its name, champion = best recall).")


@recommend.command(help=TRAIN_HELP)
@click.option("--shop", type=click.Path(path_type=Path), default=None,
              help="Folder of `propensity generate` (events, catalogue, product oracle) [<work>/shop].")
@click.option("--k", type=click.IntRange(1, 50), default=None, help="List length [config: 10].")
@click.option("--test-days", type=click.IntRange(min=1), default=None,
              help="Test window in days [config: 14].")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI [sqlite:///<work>/mlflow.db].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Recommender config YAML [configs/recommend.yaml].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(shop: Path | None, k: int | None, test_days: int | None, tracking_uri: str | None,
          config_path: Path | None, as_json: bool) -> None:
    from content.recommend_train import load_recommend_config, train_recommenders
    from propensity.paths import work_dir

    cfg = load_recommend_config(config_path, k=k, test_days=test_days)
    if tracking_uri is not None:
        cfg.tracking.uri = tracking_uri
    oracle, results = train_recommenders(shop or work_dir() / "shop", cfg, say=info)
    if as_json:
        emit_json({"k": cfg.k, "oracle": oracle, "recommenders": [
            {"name": r.name, "metrics": r.metrics, "fit_seconds": r.fit_seconds, "version": r.version,
             "run_id": r.run_id} for r in results]})
        return
    click.echo(f"{'recommender':<12} recall@{cfg.k:<3} ndcg@{cfg.k:<5} coverage  vs-oracle  version")
    for r in results:
        m = r.metrics
        click.echo(f"{r.name:<12} {m['recall']:.3f}     {m['ndcg']:.3f}    {m['coverage']:.3f}     "
                   f"{m['recall'] / oracle['recall']:.2f}       {r.version}")
    click.echo(f"{'oracle':<12} {oracle['recall']:.3f}     {oracle['ndcg']:.3f}    {oracle['coverage']:.3f}")
