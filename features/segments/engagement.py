"""Weighted engagement score with exponential time decay, in batch and incrementally.

The score of a user at ``as_of`` is a sum over behaviours that happened before ``as_of``
(``timestamp < as_of``)::

    score = sum_i weight(behaviour_i) * 2 ** (-(as_of - t_i) / half_life)      (no decay: factor 1)

Behaviours are events (weight by event name) and the derived ``abandoned_cart``: an
``add_to_cart`` at ``t`` with no ``purchase`` in ``[t, t + abandoned_cart_after_hours]``; it is
dated ``t + abandoned_cart_after_hours`` and counts once that moment is before ``as_of``.

A sum of terms does not depend on the order of the terms, so :class:`EngagementState` accepts
events in any order and gives the batch result (to floating-point rounding, ~1e-15 relative).
Input events are expected deduplicated by ``event_id`` (ingestion does it); the incremental state
also ignores a repeated ``event_id`` itself.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from features.ingest.eventtime import US_PER_DAY, US_PER_HOUR, epoch_us
from features.segments.config import EngagementConfig, SegmentsConfig, default_segments_config

# Rebase the anchored sum before 2**x can overflow (2**1023 is the float64 limit).
_REBASE_HALF_LIVES = 500.0


def _engagement_cfg(cfg: SegmentsConfig | EngagementConfig | None) -> EngagementConfig:
    if cfg is None:
        return default_segments_config().engagement
    return cfg.engagement if isinstance(cfg, SegmentsConfig) else cfg


def segment_for(score: float | None, cfg: SegmentsConfig | EngagementConfig | None = None) -> str:
    """The segment name of an engagement score: first threshold with ``score >= min_score``.

    A missing score (no history) or one below every threshold gets ``below_segment``.
    """
    ecfg = _engagement_cfg(cfg)
    if score is None or score != score:
        return ecfg.below_segment
    for threshold in ecfg.thresholds:
        if score >= threshold.min_score:
            return threshold.segment
    return ecfg.below_segment


def segment_expr(score: pl.Expr, cfg: SegmentsConfig | EngagementConfig | None = None) -> pl.Expr:
    """Polars expression mapping a score column to segment names, same rule as :func:`segment_for`."""
    ecfg = _engagement_cfg(cfg)
    out: Any = pl
    for threshold in ecfg.thresholds:
        out = out.when(score.is_not_null() & ~score.is_nan() & (score >= threshold.min_score)).then(
            pl.lit(threshold.segment))
    return out.otherwise(pl.lit(ecfg.below_segment))


def _weighted(weight: pl.Expr, age_us: pl.Expr, half_life_days: float | None) -> pl.Expr:
    """Per-row ``weight * 2 ** (-age / half_life)``, to be computed in ``with_columns`` and then summed.

    Without decay this is ``weight`` alone; it must stay one value per row: summing a bare literal
    in ``group_by().agg()`` gives the literal once per group, not once per row.
    """
    if half_life_days is None:
        return weight
    return weight * pl.lit(2.0).pow(-(age_us.cast(pl.Float64) / (half_life_days * US_PER_DAY)))


def engagement_scores(events: pl.DataFrame | pl.LazyFrame, as_of: datetime,
                      cfg: SegmentsConfig | EngagementConfig | None = None) -> pl.DataFrame:
    """Engagement score (points, float64) of every user with at least one event before ``as_of``.

    ``events`` needs ``user_id``, ``timestamp`` (UTC datetime) and ``event``. Returns
    ``[user_id, engagement_score]`` sorted by ``user_id``; users without events are absent.
    """
    ecfg = _engagement_cfg(cfg)
    as_of_us = epoch_us(as_of)
    ev = (events.lazy()
          .select("user_id", pl.col("timestamp").dt.epoch("us").alias("t"), "event")
          .filter(pl.col("t") < as_of_us))
    weights = {k: v for k, v in ecfg.weights.items() if k != "abandoned_cart"}
    direct = (ev.with_columns(w=pl.col("event").replace_strict(weights, default=0.0, return_dtype=pl.Float64))
              .with_columns(s=_weighted(pl.col("w"), pl.lit(as_of_us) - pl.col("t"), ecfg.half_life_days))
              .group_by("user_id")
              .agg(pl.col("s").sum().alias("direct")))
    result = direct
    w_abandoned = ecfg.weights.get("abandoned_cart", 0.0)
    if w_abandoned != 0.0:
        wait_us = round(ecfg.abandoned_cart_after_hours * US_PER_HOUR)
        carts = ev.filter(pl.col("event") == "add_to_cart").select("user_id", "t").sort("t")
        purchases = (ev.filter(pl.col("event") == "purchase")
                     .select("user_id", pl.col("t").alias("p")).sort("p"))
        abandoned = (carts.join_asof(purchases, left_on="t", right_on="p", by="user_id", strategy="forward",
                                     check_sortedness=False)
                     .with_columns(a=pl.col("t") + wait_us)
                     .filter((pl.col("a") < as_of_us) & (pl.col("p").is_null() | (pl.col("p") > pl.col("a"))))
                     # one row per abandoned cart: the literal weight is broadcast to every row here
                     .with_columns(s=_weighted(pl.lit(w_abandoned, dtype=pl.Float64),
                                               pl.lit(as_of_us) - pl.col("a"), ecfg.half_life_days))
                     .group_by("user_id")
                     .agg(pl.col("s").sum().alias("abandoned")))
        result = direct.join(abandoned, on="user_id", how="left")
    else:
        result = direct.with_columns(abandoned=pl.lit(0.0))
    return (result.select("user_id", (pl.col("direct") + pl.col("abandoned").fill_null(0.0))
                          .alias("engagement_score"))
            .sort("user_id").collect())


@dataclass(frozen=True)
class EngagementRules:
    """The engagement config compiled for the per-event path (built once per config)."""

    cfg: EngagementConfig
    weights: dict[str, float]
    half_life_us: float | None
    wait_us: int
    w_abandoned: float

    @classmethod
    def from_config(cls, cfg: EngagementConfig) -> EngagementRules:
        h = cfg.half_life_days
        return cls(cfg, {k: v for k, v in cfg.weights.items() if k != "abandoned_cart"},
                   None if h is None else h * US_PER_DAY, round(cfg.abandoned_cart_after_hours * US_PER_HOUR),
                   cfg.weights.get("abandoned_cart", 0.0))


_RULES: dict[int, tuple[object, EngagementRules]] = {}


def rules_for(cfg: SegmentsConfig | EngagementConfig | EngagementRules | None = None) -> EngagementRules:
    """Compiled rules of a config, cached by config object (configs are treated as immutable)."""
    if isinstance(cfg, EngagementRules):
        return cfg
    hit = _RULES.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    rules = EngagementRules.from_config(_engagement_cfg(cfg))
    _RULES[id(cfg)] = (cfg, rules)  # keeps cfg alive, so its id is not reused
    return rules


class EngagementState:
    """The engagement score of one user, updated one event at a time, in any order.

    ``add`` costs O(1) (one power of two); ``score_at(as_of)`` is O(1) plus the user's carts when
    ``as_of`` is after every event added, and O(events) when it is not (events at or after
    ``as_of`` must then be left out exactly).
    """

    __slots__ = ("_cfg", "_weights", "_half_life_us", "_wait_us", "_w_abandoned", "_ref", "_sum",
                 "_latest", "_earliest", "_count", "_terms", "_carts", "_purchases", "_seen")

    def __init__(self, cfg: SegmentsConfig | EngagementConfig | EngagementRules | None = None) -> None:
        rules = rules_for(cfg)
        self._cfg = rules.cfg
        self._weights = rules.weights
        self._half_life_us = rules.half_life_us
        self._wait_us = rules.wait_us
        self._w_abandoned = rules.w_abandoned
        self._ref: int | None = None  # anchor time of _sum (µs)
        self._sum = 0.0  # sum of weight * 2 ** ((t - _ref) / half_life)
        self._latest: int | None = None
        self._earliest: int | None = None
        self._count = 0
        self._terms: list[tuple[int, float]] = []
        self._carts: list[int] = []
        self._purchases: list[int] = []
        self._seen: set[str] = set()

    @property
    def n_events(self) -> int:
        """Number of distinct events added."""
        return self._count

    def add(self, event: Mapping[str, Any]) -> bool:
        """Add one event (``timestamp``, ``event``, optional ``event_id``); False for a repeated id."""
        event_id = event.get("event_id")
        if event_id is not None:
            if event_id in self._seen:
                return False
            self._seen.add(event_id)
        t = epoch_us(event["timestamp"])
        name = event["event"]
        self._count += 1
        if self._latest is None or t > self._latest:
            self._latest = t
        if self._earliest is None or t < self._earliest:
            self._earliest = t
        if name == "add_to_cart":
            self._carts.append(t)
        elif name == "purchase":
            insort(self._purchases, t)
        w = self._weights.get(name, 0.0)
        if w == 0.0:
            return True
        self._terms.append((t, w))
        h = self._half_life_us
        if h is None:
            self._sum += w
            return True
        if self._ref is None:
            self._ref = t
        elif t - self._ref > _REBASE_HALF_LIVES * h:
            self._sum *= 2.0 ** (-(t - self._ref) / h)
            self._ref = t
        self._sum += w * 2.0 ** ((t - self._ref) / h)
        return True

    def _decay(self, age_us: int) -> float:
        h = self._half_life_us
        return 1.0 if h is None else 2.0 ** (-age_us / h)

    def score_at(self, as_of: datetime | str | int) -> float:
        """The score at ``as_of`` (points): only events with ``timestamp < as_of`` count."""
        now = epoch_us(as_of)
        h = self._half_life_us
        if self._latest is not None and now > self._latest:
            if h is None or self._ref is None:
                score = self._sum
            else:
                score = self._sum * 2.0 ** (-(now - self._ref) / h)
        else:
            score = 0.0
            for t, w in self._terms:
                if t < now:
                    score += w * self._decay(now - t)
        if self._w_abandoned != 0.0:
            purchases = self._purchases
            for c in self._carts:
                a = c + self._wait_us
                if a < now:
                    i = bisect_left(purchases, c)
                    if i == len(purchases) or purchases[i] > a:
                        score += self._w_abandoned * self._decay(now - a)
        return score

    def segment_at(self, as_of: datetime | str | int) -> str:
        """The segment name of :meth:`score_at` (``below_segment`` without history before ``as_of``)."""
        return self.score_and_segment_at(as_of)[1]

    def score_and_segment_at(self, as_of: datetime | str | int) -> tuple[float, str]:
        """:meth:`score_at` and :meth:`segment_at` with the score computed once (the serving path)."""
        now = epoch_us(as_of)
        score = self.score_at(now)
        if self._earliest is None or self._earliest >= now:
            return score, self._cfg.below_segment
        return score, segment_for(score, self._cfg)
