"""A self-contained simulated experiment on a synthetic shop (for the demo and the benchmark).

Units are users enrolled at their first exposure during ``days`` days. Each has a device, a
pre-period spend (the CUPED covariate) and a purchase propensity that grows with pre-period
spend; a variant multiplies the propensity by ``1 + lift``. Revenue is the basket value of a
purchase (0 without one), correlated with pre-period spend.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def simulate_units(n_users: int, lifts: Mapping[str, float], days: int = 14, seed: int = 7,
                   base_rate: float = 0.08) -> pl.DataFrame:
    """One row per user: user_id, variant, first_exposure (UTC), device, pre_revenue, converted, revenue.

    ``lifts`` maps variant name -> relative lift of the purchase propensity (the first is the
    control, normally 0); users are split equally. ``base_rate`` is the control's mean conversion.
    """
    rng = np.random.default_rng(seed)
    names = list(lifts)
    variant = rng.integers(0, len(names), n_users)
    device = rng.choice(np.array(["mobile", "desktop", "tablet"]), n_users, p=[0.6, 0.32, 0.08])
    pre = rng.gamma(0.6, 40.0, n_users) * (rng.random(n_users) < 0.5)
    propensity = base_rate * (0.6 + 0.8 * (pre > 0)) * np.where(device == "desktop", 1.2, 0.92)
    lift = np.array([lifts[n] for n in names])[variant]
    converted = rng.random(n_users) < np.clip(propensity * (1 + lift), 0, 1)
    revenue = np.where(converted, rng.gamma(2.0, 25.0, n_users) + 0.3 * pre, 0.0)
    seconds = rng.integers(0, days * 86_400, n_users)
    return pl.DataFrame({
        "user_id": [f"u{i:07d}" for i in range(n_users)],
        "variant": np.array(names)[variant],
        "first_exposure": pl.Series(np.datetime64(START.replace(tzinfo=None), "us")
                                    + seconds.astype("timedelta64[s]")).dt.replace_time_zone("UTC"),
        "device": device,
        "pre_revenue": pre.round(2),
        "converted": converted.astype(np.int8),
        "revenue": revenue.round(2),
    })


def simulate_experiment(out_dir: str | Path, n_users: int = 30_000,
                        lifts: Mapping[str, float] | None = None, days: int = 14, seed: int = 7) -> Path:
    """Write ``units.parquet`` (see :func:`simulate_units`) into ``out_dir`` and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = simulate_units(n_users, lifts or {"A": 0.0, "B": 0.12, "C": 0.02}, days, seed)
    path = out / "units.parquet"
    frame.write_parquet(path)
    return path
