"""Shared helpers of the serving tests (no tests here): a small synthetic shop and a real model on it."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import xgboost as xgb

from features.batch.snapshot import build_snapshots_at
from features.ingest.validate import validate_events, validate_users
from features.registry import model_features
from training.model import ConversionModel
from training.preprocess import FeatureEncoder

START = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = datetime(2026, 2, 20, 13, 7, 5, 123456, tzinfo=UTC)
EVENT_MIX = ["page_view"] * 6 + ["product_view"] * 3 + ["search", "scroll", "video_play", "add_to_cart",
                                                         "add_to_cart", "remove_from_cart", "checkout_start",
                                                         "purchase", "newsletter_signup", "wishlist"]


def make_shop(n_users: int = 120, days: int = 60, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(events, users) as raw contract rows: ISO timestamps with offsets, mixed case enums, extras."""
    rng = random.Random(seed)
    events: list[dict] = []
    users: list[dict] = []
    for u in range(n_users):
        uid = f"user{u:04d}"
        activity = rng.choice([2, 8, 20, 60])
        n = rng.randint(0, activity * 2) + (1 if u % 11 else 0)
        for i in range(n):
            ts = START + timedelta(seconds=rng.uniform(0, days * 86400))
            ev = rng.choice(EVENT_MIX)
            offset = rng.choice(["+00:00", "+02:00", "-05:00"])
            local = ts.astimezone(datetime.strptime(offset, "%z").tzinfo)
            events.append({
                "event_id": f"{uid}-{i}", "user_id": uid, "timestamp": local.isoformat(),
                "event": ev.upper() if rng.random() < 0.1 else ev,
                "session_id": f"{uid}-s{rng.randrange(max(1, n // 4 + 1))}" if rng.random() < 0.9 else None,
                "page_type": rng.choice(["product", "home", "Category", None]),
                "value": round(rng.uniform(5, 200), 2) if ev in ("add_to_cart", "purchase") else None,
                "duration_s": round(rng.uniform(1, 400), 1) if rng.random() < 0.7 else None,
                "scroll_depth": round(rng.random(), 3) if rng.random() < 0.5 else None,
                "device": rng.choice(["mobile", "desktop", "tablet", None]),
                "source": rng.choice(["direct", "search", "social", "email", "ads", "affiliate", None]),
            })
        users.append({
            "user_id": uid, "age": rng.randint(18, 80), "gender": rng.choice(["F", "M", "x"]),
            "country": rng.choice(["DE", "FR", "US"]),
            "loyalty_tier": rng.choice(["bronze", "silver", "gold"]),
            "signup_date": (date(2025, 1, 1) + timedelta(days=rng.randrange(400))).isoformat(),
            "consent": u % 17 != 5,
        })
    return events, users


def clean_frames(events: list[dict], users: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The contract rows through the batch ingestion (the path the snapshot builder is fed by)."""
    ev = validate_events(pl.DataFrame(events, infer_schema_length=None))
    us = validate_users(pl.DataFrame(users, infer_schema_length=None))
    assert ev.quarantine.height == 0 and us.quarantine.height == 0
    return ev.clean, us.clean


def train_model(events: pl.DataFrame, users: pl.DataFrame, path: Path) -> ConversionModel:
    """A small real ConversionModel (XGBoost) on stacked snapshots of the shop; pickled to ``path``."""
    as_ofs = [START + timedelta(days=d) for d in (20, 27, 34, 41)]
    frame = build_snapshots_at(events, users, as_ofs, timedelta(days=7))
    numeric = [n for n in model_features() if n not in ("loyalty_tier",)]
    encoder = FeatureEncoder(numeric, ["loyalty_tier"]).fit(frame)
    X = encoder.transform(frame)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 1,
                         "seed": 0, "verbosity": 0}, xgb.DMatrix(X, label=frame["label"].to_numpy()),
                        num_boost_round=30)
    model = ConversionModel(family="xgboost", encoder=encoder, estimator=booster)
    model.save(str(path))
    return model
