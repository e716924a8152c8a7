"""Small synthetic snapshot frames with the registry's columns, for the training tests.

A latent propensity per user drives a few behaviour columns and the label, so a model can learn
something; everything else is noise. Deterministic for a given seed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from features import registry


def synthetic_snapshots(n_users: int = 600, n_snapshots: int = 3, seed: int = 0) -> pl.DataFrame:
    """``n_snapshots`` weekly snapshots of ``n_users`` users: KEY_COLUMNS + FEATURE_NAMES + label."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    frames = []
    base = rng.normal(0, 1, n_users)
    tiers = np.array(["bronze", "silver", "gold", None], dtype=object)
    tier = tiers[rng.integers(0, 4, n_users)]
    for s in range(n_snapshots):
        latent = base + rng.normal(0, 0.5, n_users) + (tier == "gold") * 0.7
        cols: dict[str, object] = {
            "user_id": [f"u{i}" for i in range(n_users)],
            "as_of": [start + timedelta(days=7 * s)] * n_users,
        }
        for f in registry.FEATURES:
            if f.kind == "categorical":
                continue
            cols[f.name] = rng.gamma(1.0, 1.0, n_users)
        cols["add_to_cart_7d"] = rng.poisson(np.exp(0.8 * latent))
        cols["product_view_30d"] = rng.poisson(3 * np.exp(0.5 * latent))
        recency = rng.exponential(np.exp(-latent) * 5)
        recency[rng.random(n_users) < 0.2] = np.nan
        cols["days_since_last_event"] = recency
        cols["age"] = rng.integers(18, 80, n_users).astype(float)
        cols["age_band"] = rng.choice(["18-24", "25-34", "35-44", "45-54"], n_users)
        cols["gender"] = rng.choice(["f", "m"], n_users)
        cols["country"] = rng.choice(["DE", "FR", "US"], n_users)
        cols["loyalty_tier"] = tier
        p = 1 / (1 + np.exp(-(latent - 1.5)))
        cols["label"] = (rng.random(n_users) < p).astype(np.int64)
        frames.append(pl.DataFrame(cols))
    out = pl.concat(frames)
    out = out.with_columns(pl.col("as_of").cast(pl.Datetime("us", "UTC")))
    numeric = [f.name for f in registry.FEATURES if f.kind == "numeric"]
    out = out.with_columns([pl.col(c).cast(pl.Float64) for c in numeric])
    return out.select(list(registry.KEY_COLUMNS) + list(registry.FEATURE_NAMES) + ["label"])
