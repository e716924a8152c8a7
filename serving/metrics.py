"""The service's own Prometheus series, next to BentoML's HTTP ones on ``/metrics``.

- ``propensity_predictions_total{source,variant,model_name,model_version}``: answers served;
- ``propensity_events_total{outcome}``: events applied, duplicate, dropped (user deleted), refused
  (the request failed validation);
- ``propensity_cache_hits_total``: answers served from the per-user prediction cache;
- ``propensity_score``: a histogram of the probabilities served;
- ``propensity_prediction_log_written_total``: records written to the prediction log;
- ``propensity_prediction_log_dropped_total{reason}``: records that could not be (``buffer_full``,
  ``write_error``, ``closed``), see serving/predlog.py.

The series live in prometheus_client's registry, which BentoML's workers share in multiprocess
mode, so every worker's counts add up. Each update of that registry takes a lock and writes a
memory-mapped file (about 2 µs a counter, 5 µs a histogram observation, ~10 µs per answer in
all): the request path only counts in memory (:meth:`ServiceMetrics.prediction`, a dictionary
update and a list append), and :meth:`ServiceMetrics.publish` adds what was counted to the
series in one update per series, every second on the worker's event loop and before every
``/metrics`` answer of that worker (:func:`publish_all`). A scrape answered by another worker
sees this worker's answers of the last second at the next scrape.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (1.0,)
EVENT_OUTCOMES = ("applied", "duplicate", "dropped", "refused")
_LIVE: weakref.WeakSet[ServiceMetrics] = weakref.WeakSet()


def publish_all() -> None:
    """:meth:`ServiceMetrics.publish` of every live instance of this process (before ``/metrics``)."""
    for metrics in list(_LIVE):
        metrics.publish()


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for each of ``values``, as one update per bucket and one of the sum.

    Uses prometheus_client's per-bucket values (``_upper_bounds``, ``_buckets``, ``_sum``; stable
    since 2017); a histogram without them gets one ``observe`` per value."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:  # observe's bucket: the first bound >= value (the last bound is +Inf)
        if value == value:  # NaN falls in no bucket, as with observe
            counts[bisect.bisect_left(bounds, value)] += 1
    for bucket, n in zip(buckets, counts, strict=True):
        if n:
            bucket.inc(n)
    total.inc(sum(values))


class ServiceMetrics:
    """Counters and the score histogram of one worker (create it once, in the service's start-up)."""

    def __init__(self, registry: Any = None) -> None:
        """``registry``: where the series live (default: prometheus_client's, which ``/metrics`` reads)."""
        # Imported here, in the worker: BentoML sets PROMETHEUS_MULTIPROC_DIR before it builds the
        # service, and prometheus_client reads it at import (what bentoml.metrics, now deprecated, did).
        from prometheus_client import REGISTRY, Counter, Histogram

        where = REGISTRY if registry is None else registry
        self._predictions = Counter("propensity_predictions_total", "Predictions served",
                                    ["source", "variant", "model_name", "model_version"], registry=where)
        self._events = Counter("propensity_events_total", "Events received, by outcome", ["outcome"],
                               registry=where)
        self._cache_hits = Counter("propensity_cache_hits_total", "Predictions served from the cache",
                                   registry=where)
        self._score = Histogram("propensity_score", "Probabilities served (share 0..1)",
                                buckets=SCORE_BUCKETS, registry=where)
        self._log_written = Counter("propensity_prediction_log_written_total",
                                    "Prediction log records written", registry=where)
        self._log_dropped = Counter("propensity_prediction_log_dropped_total",
                                    "Prediction log records that could not be written, by reason", ["reason"],
                                    registry=where)
        self._children: dict[tuple[str, str, str, str], Any] = {}
        # Counted on the request path, added to the series by publish():
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, str], int] = {}
        self._scores: list[float] = []
        self._hits = 0
        _LIVE.add(self)

    def prediction(self, answer: Mapping[str, Any], cached: bool) -> None:
        """Count one answer of ``/predict`` (its source, variant and model) and its score, in memory."""
        model = answer["model"]
        key = (answer["source"], answer["variant"], model["name"], model["version"])
        with self._lock:
            counts = self._counts
            counts[key] = counts.get(key, 0) + 1
            self._scores.append(answer["probability"])
            if cached:
                self._hits += 1

    def publish(self) -> None:
        """Add what :meth:`prediction` counted since the last call to the Prometheus series."""
        with self._lock:
            counts, scores, hits = self._counts, self._scores, self._hits
            if not scores:
                return
            self._counts, self._scores, self._hits = {}, [], 0
        for key, n in counts.items():
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._predictions.labels(*key)
            child.inc(n)
        observe_many(self._score, scores)
        if hits:
            self._cache_hits.inc(hits)

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
