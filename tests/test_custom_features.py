"""A feature added in configs/features.yaml (no code change) flows through every path.

One entry, ``shoe_views_14d`` (product views of category 'shoes' in the last 14 days), in a
temporary config folder: ``propensity features`` puts it in the batch snapshot (checked against a
count written here in plain Polars), the Spark engine computes it identically, a newly trained
model takes it as an input and stores its definition, and a real BentoML server started with the
default configs/ (which do not define it) computes it from the model's own specs for
``GET /users/{id}``, equal to the batch value.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest
from server_support import start_server
from test_serving_helpers import AS_OF, clean_frames, make_shop

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ("  - {name: shoe_views_14d, events: [product_view], where: {category: shoes}, aggregate: count, "
         "window: 14d}\n")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]



@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[dict]]:
    """A small shop whose events carry categories, written as JSON Lines, and a config folder with
    one added feature."""
    tmp = tmp_path_factory.mktemp("custom")
    events, users = make_shop(n_users=80, seed=11)
    rng = random.Random(4)
    for e in events:
        e["category"] = rng.choice(["shoes", "shoes", "hats", None])
        if rng.random() < 0.5:
            e["event"] = "product_view"
    (tmp / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp / "users.jsonl").write_text("".join(json.dumps(u) + "\n" for u in users))
    conf = tmp / "configs"
    shutil.copytree(ROOT / "configs", conf)
    text = (conf / "features.yaml").read_text().replace("segment_features: true", "segment_features: false")
    (conf / "features.yaml").write_text(text + "\nfeatures:\n" + ENTRY)
    return tmp, events, users


def _reference(events: list[dict], as_of: datetime) -> dict[str, float]:
    """Product views of category shoes with as_of - 14d <= timestamp < as_of, per user (plain Polars)."""
    keys = ("user_id", "timestamp", "event", "category")
    frame = pl.DataFrame([{k: e.get(k) for k in keys} for e in events])
    ts = pl.col("timestamp").str.to_datetime(time_zone="UTC")
    views = (pl.col("event").str.to_lowercase() == "product_view") & (pl.col("category") == "shoes")
    hits = frame.filter(views & (ts >= as_of - timedelta(days=14)) & (ts < as_of))
    return {u: float(n) for u, n in hits.group_by("user_id").len().iter_rows()}


@pytest.fixture(scope="module")
def built(shop: tuple[Path, list[dict], list[dict]]) -> pl.DataFrame:
    tmp, events, _ = shop
    out = tmp / "features.parquet"
    env = {**os.environ, "PROPENSITY_CONFIG_DIR": str(tmp / "configs"), "PROPENSITY_HOME": str(tmp / "work"),
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "propensity.cli", "features", "--events", str(tmp / "events.jsonl"),
           "--users", str(tmp / "users.jsonl"), "--as-of", AS_OF.isoformat(), "--snapshots", "3",
           "--every", "7d", "--out", str(out)]
    done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return pl.read_parquet(out)


def test_added_feature_is_in_the_batch_snapshot(shop: tuple[Path, list[dict], list[dict]],
                                                built: pl.DataFrame) -> None:
    _, events, _ = shop
    assert "shoe_views_14d" in built.columns
    for as_of in built["as_of"].unique():
        want = _reference(events, as_of)
        rows = built.filter(pl.col("as_of") == as_of)
        got = dict(zip(rows["user_id"], rows["shoe_views_14d"], strict=True))
        assert got == {u: want.get(u, 0.0) for u in got}
        assert sum(got.values()) > 0


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_added_feature_is_in_the_spark_snapshot(shop: tuple[Path, list[dict], list[dict]]) -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java on PATH")
    from features.batch.engine import LocalEngine
    from features.batch.spark_engine import SparkEngine
    from features.feature_set import feature_set_from_config

    tmp, events, users = shop
    clean_events, clean_users = clean_frames(events, users)
    fs = feature_set_from_config(tmp / "configs" / "features.yaml")
    as_ofs = [AS_OF - timedelta(days=7), AS_OF]
    with SparkEngine(master="local[2]", shards=3) as spark:
        frame = spark.build(clean_events, clean_users, as_ofs, timedelta(days=7), feature_set=fs)
    assert "shoe_views_14d" in frame.columns
    local = LocalEngine().build(clean_events, clean_users, as_ofs, timedelta(days=7), feature_set=fs)
    assert frame.equals(local)


def test_trained_model_takes_it_and_the_server_computes_it_from_the_model(
        shop: tuple[Path, list[dict], list[dict]], built: pl.DataFrame,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from training.config import load_train_config
    from training.train import train

    tmp, events, _ = shop
    monkeypatch.setenv("PROPENSITY_CONFIG_DIR", str(tmp / "configs"))
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp / "work"))
    cfg = load_train_config(overrides={
        "search": {"n_trials": 2, "families": ["xgboost"], "threads": 1},
        "tracking": {"uri": f"sqlite:///{tmp}/mlflow.db", "plots": False,
                     "artifact_location": (tmp / "art").as_uri()}})
    model = train(tmp / "features.parquet", cfg).model
    assert "shoe_views_14d" in model.feature_names
    assert any(s.get("name") == "shoe_views_14d" for s in model.metadata["feature_specs"])
    model.save(str(tmp / "model.pkl"))
    monkeypatch.delenv("PROPENSITY_CONFIG_DIR")  # the server runs with the default configs/

    (tmp / "serve").mkdir()
    proc, url = start_server(tmp / "serve", ["--model", str(tmp / "model.pkl")])
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            shuffled = random.Random(2).sample(events, len(events))
            for i in range(0, len(shuffled), 300):
                assert c.post("/events", json=shuffled[i:i + 300]).status_code == 200
            latest = built.filter(pl.col("as_of") == built["as_of"].max())
            as_of = latest["as_of"][0]
            for row in latest.head(25).iter_rows(named=True):
                got = c.get(f"/users/{row['user_id']}", params={"as_of": as_of.isoformat()}).json()
                assert got["features"]["shoe_views_14d"] == row["shoe_views_14d"], row["user_id"]
                assert got["features"]["purchases_total"] == row["purchases_total"]
    finally:
        proc.stop()
