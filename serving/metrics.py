"""The service's own Prometheus series, next to BentoML's HTTP ones on ``/metrics``.

- ``propensity_predictions_total{source,variant,model_name,model_version}``: answers served;
- ``propensity_events_total{outcome}``: events applied, duplicate, dropped (user deleted), refused
  (the request failed validation);
- ``propensity_cache_hits_total``: answers served from the per-user prediction cache;
- ``propensity_score``: a histogram of the probabilities served;
- ``propensity_prediction_log_written_total``: records written to the prediction log;
- ``propensity_prediction_log_dropped_total{reason}``: records that could not be (``buffer_full``,
  ``write_error``, ``closed``), see serving/predlog.py.

BentoML's metric wrappers share the worker processes' multiprocess registry, so every worker's
counts add up. Label children are cached: one dictionary lookup per answer on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (1.0,)
EVENT_OUTCOMES = ("applied", "duplicate", "dropped", "refused")


class ServiceMetrics:
    """Counters and the score histogram of one worker (create it once, in the service's start-up)."""

    def __init__(self) -> None:
        import bentoml

        self._predictions = bentoml.metrics.Counter(
            name="propensity_predictions_total", documentation="Predictions served",
            labelnames=["source", "variant", "model_name", "model_version"])
        self._events = bentoml.metrics.Counter(
            name="propensity_events_total", documentation="Events received, by outcome",
            labelnames=["outcome"])
        self._cache_hits = bentoml.metrics.Counter(
            name="propensity_cache_hits_total", documentation="Predictions served from the cache")
        self._score = bentoml.metrics.Histogram(
            name="propensity_score", documentation="Probabilities served (share 0..1)",
            buckets=SCORE_BUCKETS)
        self._log_written = bentoml.metrics.Counter(
            name="propensity_prediction_log_written_total", documentation="Prediction log records written")
        self._log_dropped = bentoml.metrics.Counter(
            name="propensity_prediction_log_dropped_total",
            documentation="Prediction log records that could not be written, by reason",
            labelnames=["reason"])
        self._children: dict[tuple[str, str, str, str], Any] = {}

    def prediction(self, answer: Mapping[str, Any], cached: bool) -> None:
        """Count one answer of ``/predict`` (its source, variant and model) and observe its score."""
        model = answer["model"]
        key = (answer["source"], answer["variant"], model["name"], model["version"])
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._predictions.labels(*key)
        child.inc()
        self._score.observe(answer["probability"])
        if cached:
            self._cache_hits.inc()

    def events(self, applied: int = 0, duplicate: int = 0, dropped: int = 0, refused: int = 0) -> None:
        """Count the events of one ``/events`` request by outcome."""
        for outcome, n in zip(EVENT_OUTCOMES, (applied, duplicate, dropped, refused), strict=True):
            if n:
                self._events.labels(outcome).inc(n)

    def log_written(self, n: int) -> None:
        """Count ``n`` prediction log records written (called by the log's flushing thread)."""
        self._log_written.inc(n)

    def log_dropped(self, reason: str, n: int) -> None:
        """Count ``n`` prediction log records lost for ``reason``."""
        self._log_dropped.labels(reason).inc(n)
