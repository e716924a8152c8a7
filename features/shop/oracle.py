"""The oracle: the exact probability that each user buys within the horizon, at every midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from features.shop.config import GenerateConfig
from features.shop.intent import purchase_scale
from features.shop.model import HAZARD


def oracle_probabilities(cfg: GenerateConfig, trans: np.ndarray, traits: dict[str, np.ndarray], z: np.ndarray,
                         buy: np.ndarray, user_ids: pl.Series) -> pl.DataFrame:
    """Exact P(purchase in [as_of, as_of + horizon)) at every midnight as_of = start + k days, for the
    hidden states ``z`` and purchases ``buy`` of :func:`~features.shop.intent.simulate_intent`."""
    beta = traits["beta"]
    n, h = len(beta), cfg.horizon_days
    ks = list(range(1, cfg.days - h + 1))
    start = datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=UTC)
    frames = []
    for k in ks:
        prev = np.where(buy[:, k - 1], 0, z[:, k - 1])
        v = np.zeros((n, 3))
        v[np.arange(n), prev] = 1.0
        for day in range(k, k + h):
            scale = purchase_scale(cfg, traits, day)
            hazard = np.minimum(HAZARD[None, :] * beta[:, None] * scale[:, None], 1.0)
            v = np.einsum("ni,nij->nj", v, trans) * (1.0 - hazard)
        frames.append(pl.DataFrame({"user_id": user_ids, "p_true": 1.0 - v.sum(axis=1)})
                      .with_columns(pl.lit(start + timedelta(days=k)).cast(pl.Datetime("us", "UTC"))
                                    .alias("as_of")))
    if not frames:
        return pl.DataFrame(schema={"user_id": pl.String, "as_of": pl.Datetime("us", "UTC"),
                                    "p_true": pl.Float64})
    return pl.concat(frames).select("user_id", "as_of", "p_true")

