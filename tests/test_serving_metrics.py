"""The service's own Prometheus series (serving/metrics.py), in process: answers are counted in
memory and published in bulk; what reaches the series must equal what prometheus_client's own
one-at-a-time ``inc``/``observe`` would have recorded."""

from __future__ import annotations

import math
import random

from prometheus_client import CollectorRegistry, Histogram

from serving.metrics import SCORE_BUCKETS, ServiceMetrics, observe_many


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect() if metric.name == name for s in metric.samples
            if not s.name.endswith("_created")}


def _renamed(samples: dict[tuple, float], old: str, new: str) -> dict[tuple, float]:
    return {(name.replace(old, new, 1), labels): value for (name, labels), value in samples.items()}


def test_bulk_observation_equals_one_observe_per_value() -> None:
    registry = CollectorRegistry()
    one = Histogram("one", "reference", buckets=SCORE_BUCKETS, registry=registry)
    bulk = Histogram("bulk", "bulk", buckets=SCORE_BUCKETS, registry=registry)
    rng = random.Random(7)
    # every bound exactly (observe counts v <= bound), just above it, the ends, and random scores
    values = [*SCORE_BUCKETS, *(b + 1e-12 for b in SCORE_BUCKETS), 0.0, 1.0, 2.5, -0.1,
              *(rng.random() for _ in range(500))]
    for v in values:
        one.observe(v)
    observe_many(bulk, values)
    assert _renamed(_samples(registry, "bulk"), "bulk", "one") == _samples(registry, "one")
    assert _samples(registry, "one")[("one_count", ())] == len(values)


def test_nan_scores_fall_in_no_bucket_as_with_observe() -> None:
    registry = CollectorRegistry()
    one = Histogram("one", "reference", buckets=SCORE_BUCKETS, registry=registry)
    bulk = Histogram("bulk", "bulk", buckets=SCORE_BUCKETS, registry=registry)
    one.observe(math.nan)
    observe_many(bulk, [math.nan])
    got = _renamed(_samples(registry, "bulk"), "bulk", "one")
    want = _samples(registry, "one")
    assert got.keys() == want.keys()
    assert all(math.isnan(v) if math.isnan(want[k]) else v == want[k] for k, v in got.items())


def test_a_histogram_without_bucket_values_is_observed_one_by_one() -> None:
    seen: list[float] = []

    class Plain:
        def observe(self, value: float) -> None:
            seen.append(value)

    observe_many(Plain(), [0.2, 0.7])
    assert seen == [0.2, 0.7]


def test_answers_reach_the_series_only_when_published_and_exactly_once() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    answers = [{"source": "profile" if i % 3 else "cold_start", "variant": "champion", "probability": i / 10,
                "model": {"name": "m", "version": "3"}} for i in range(10)]
    for i, answer in enumerate(answers):
        metrics.prediction(answer, cached=i % 2 == 0)
    predictions = "propensity_predictions"

    def hits() -> float:
        return _samples(registry, "propensity_cache_hits")[("propensity_cache_hits_total", ())]

    assert _samples(registry, predictions) == {} and hits() == 0
    metrics.publish()
    metrics.publish()  # nothing new: nothing added twice
    labels = {"variant": "champion", "model_name": "m", "model_version": "3"}
    counted = _samples(registry, predictions)
    assert counted[(f"{predictions}_total", tuple(sorted({**labels, "source": "profile"}.items())))] == 6
    assert counted[(f"{predictions}_total", tuple(sorted({**labels, "source": "cold_start"}.items())))] == 4
    assert hits() == 5
    scores = _samples(registry, "propensity_score")
    assert scores[("propensity_score_count", ())] == 10
    assert scores[("propensity_score_sum", ())] == sum(a["probability"] for a in answers)
    assert scores[("propensity_score_bucket", (("le", "0.5"),))] == 6  # 0.0 .. 0.5
