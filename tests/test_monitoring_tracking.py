"""A tracking outage (one device stops sending a field) alerts as drift of the model input computed
from that field within two daily windows of its onset, and nothing alerts on the stable windows
before it: end to end through ``propensity monitor``'s backfill mode on a small shop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
import polars as pl
import pytest
import xgboost as xgb
from fairness_support import register_model

from features.batch.snapshot import build_snapshots_at
from features.ingest.validate import validate_events, validate_users
from features.shop.config import GenerateConfig
from features.shop.generate import generate_shop
from features.shop.shifts import parse_shift
from monitoring.config import load_monitor_config
from monitoring.fields import arrival_counts, field_changes
from monitoring.stage import monitor
from training.model import ConversionModel
from training.preprocess import FeatureEncoder

ONSET, DAYS = 19, 27
NUMERIC = ["avg_scroll_depth_30d", "sessions_7d", "events_7d", "avg_duration_s_30d"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    cfg = {"users": 1500, "days": DAYS, "seed": 5, "sale": {"days": 0},
           "shifts": [parse_shift(f"tracking:device=mobile:scroll_depth@{ONSET}").model_dump()]}
    made = generate_shop(GenerateConfig.model_validate(cfg))
    folder = tmp_path_factory.mktemp("shop")
    made.events.write_parquet(folder / "events.parquet")
    made.users.write_parquet(folder / "users.parquet")
    day0 = datetime(made.config.start.year, made.config.start.month, made.config.start.day, tzinfo=UTC)
    return folder, day0


def test_the_field_stops_arriving_on_the_outage_device_only(shop) -> None:
    folder, day0 = shop
    events = validate_events(pl.read_parquet(folder / "events.parquet")).clean
    counts = arrival_counts(events, ["scroll_depth"], ["device"], day0, timedelta(days=1), timedelta(0))
    changes = field_changes(counts, min_rows=200, sample_rows=20_000)
    onset = day0 + timedelta(days=ONSET)
    mobile = {w: c for w, cs in changes.items() for c in cs if c["slice"] == "device=mobile"}
    # share of carrying events that still had it: all of them before, none from the onset day on
    assert mobile[onset]["share_before"] == 1.0 and mobile[onset]["share"] == 0.0
    assert all(c["share"] == 1.0 for w, c in mobile.items() if w < onset)
    desktop = [c for cs in changes.values() for c in cs if c["slice"] == "device=desktop"]
    assert desktop and all(c["share"] == c["share_before"] == 1.0 for c in desktop)


def test_a_tracking_outage_alerts_on_the_fed_input_within_two_windows(shop, tmp_path, monkeypatch) -> None:
    folder, day0 = shop
    monkeypatch.setenv("PROPENSITY_HOME", str(tmp_path / "work"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("t", (tmp_path / "art").as_uri()))
    cfg = load_monitor_config(overrides={"tracking": {"uri": uri, "log_to_mlflow": False}})
    events = validate_events(pl.read_parquet(folder / "events.parquet")).clean
    users = validate_users(pl.read_parquet(folder / "users.parquet")).clean
    frame = build_snapshots_at(events, users, [day0 + timedelta(days=d) for d in (6, 9)], timedelta(days=7))
    encoder = FeatureEncoder(NUMERIC, []).fit(frame)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "verbosity": 0},
                        xgb.DMatrix(encoder.transform(frame), label=frame["label"].to_numpy()), 10)
    model_uri = register_model(ConversionModel("xgboost", encoder, booster))
    result = monitor(model_uri, events=folder / "events.parquet", users=folder / "users.parquet",
                     start=day0 + timedelta(days=ONSET - 5), end=day0 + timedelta(days=ONSET + 3),
                     reference=frame, cfg=cfg, out_dir=tmp_path / "mon", record=False)
    onset = day0 + timedelta(days=ONSET)
    drift = [a for a in result.alerts if a["kind"] == "drift"]
    # a backfill window is a snapshot at its start: the onset day's events are first seen one day later
    assert not [a for a in drift if datetime.fromisoformat(a["window_start"]) <= onset]
    first = min(datetime.fromisoformat(a["window_start"]) for a in drift
                if a["subject"] == "avg_scroll_depth_30d")
    assert timedelta(0) < first - onset <= timedelta(days=2)
    hit = next(a for a in drift if a["subject"] == "avg_scroll_depth_30d")
    assert (hit["field"], hit["slice"], hit["share"]) == ("scroll_depth", "device=mobile", 0.0)
    # the input itself has barely moved: its own PSI against the reference stays small
    window = next(w for w in result.windows if w.start == first)
    assert window.drift["avg_scroll_depth_30d"]["psi"] < 0.2
    assert np.isfinite(window.estimated["auc"])
