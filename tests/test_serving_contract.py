"""The service's typed answers and its own metrics, on a real `propensity serve` (1 worker).

Every answer validates against the model the OpenAPI document declares for it (serving/responses.py),
the document carries the package's version and description, and /metrics counts predictions,
events, cache hits and scores (serving/metrics.py).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_support import start_server
from test_serving_helpers import AS_OF, clean_frames, make_shop, train_model

from serving.responses import (
    DeleteResponse,
    EventsResponse,
    PredictResponse,
    UserAttributesResponse,
    UserProfileResponse,
)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("contract")
    raw_events, raw_users = make_shop(n_users=30, seed=3)
    train_model(*clean_frames(raw_events, raw_users), workdir / "model.pkl")
    # Its own BENTOML_HOME: BentoML empties $BENTOML_HOME/prometheus_multiproc_dir whenever a server
    # starts, so a server started by a parallel test worker would erase the counts measured here.
    proc, base = start_server(workdir, ["--model", str(workdir / "model.pkl")],
                              env={"BENTOML_HOME": str(workdir / "bentoml")})
    try:
        yield base
    finally:
        proc.stop()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_openapi_carries_the_package_version_and_description(url: str) -> None:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    info = httpx.get(f"{url}/docs.json").json()["info"]
    assert (info["version"], info["description"]) == (project["version"], project["description"])


@pytest.mark.parametrize("path, method", [
    ("/predict", "post"), ("/predict_batch", "post"), ("/events", "post"),
    ("/users/{user_id}", "get"), ("/users/{user_id}", "put"), ("/users/{user_id}", "delete")])
def test_openapi_describes_every_answer(url: str, path: str, method: str) -> None:
    doc = httpx.get(f"{url}/docs.json").json()
    schema = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    items = schema.get("items", schema)
    if "$ref" in items:
        items = doc["components"]["schemas"][items["$ref"].rsplit("/", 1)[1]]
    assert items.get("properties"), f"{method} {path}: empty 200 schema"


def test_every_answer_validates_against_its_declared_model(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        put = c.put("/users/typed", json={"age": 30, "country": "fr"}).json()
        events = c.post("/events", json=[{"event_id": "t1", "user_id": "typed", "event": "page_view",
                                          "timestamp": "2026-02-01T00:00:00Z"}]).json()
        answers = [c.post("/predict", json=b).json() for b in (
            {"user_id": "typed", "as_of": AS_OF.isoformat(), "debug": True}, {"user_id": "nobody"},
            {"features": {"events_30d": 3}})]
        batch = c.post("/predict_batch", json=[{"user_id": "typed"}, {"user_id": "x"}]).json()
        profile = c.get("/users/typed").json()
        deleted = c.delete("/users/typed").json()
    UserAttributesResponse.model_validate(put)
    EventsResponse.model_validate(events)
    for answer in answers + batch:
        PredictResponse.model_validate(answer)
    UserProfileResponse.model_validate(profile)
    DeleteResponse.model_validate(deleted)


def test_metrics_count_predictions_events_cache_hits_and_scores(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        before = c.get("/metrics").text
        c.post("/events", json=[{"event_id": "m1", "user_id": "metered", "event": "page_view",
                                 "timestamp": "2026-02-01T00:00:00Z"}] * 2)
        c.post("/events", json=[{"event_id": "m2", "user_id": "metered", "event": "page_view",
                                 "timestamp": "soon"}])
        first = c.post("/predict", json={"user_id": "metered"}).json()
        c.post("/predict", json={"user_id": "metered"})  # same answer, from the cache
        after = c.get("/metrics").text
    labels = {"source": "profile", "variant": "champion", "model_name": "model", "model_version": "file"}
    assert first["source"] == "profile"

    def delta(name: str, **kw: str) -> float:
        return _metric(after, name, **kw) - _metric(before, name, **kw)

    assert delta("propensity_predictions_total", **labels) == 2
    assert delta("propensity_cache_hits_total") == 1
    assert delta("propensity_score_count") == 2
    assert delta("propensity_score_bucket", le="1.0") == 2  # every probability is <= 1
    assert delta("propensity_score_sum") == pytest.approx(2 * first["probability"])
    assert delta("propensity_events_total", outcome="applied") == 1
    assert delta("propensity_events_total", outcome="duplicate") == 1
    assert delta("propensity_events_total", outcome="refused") == 1
    with open(ROOT / "pyproject.toml", "rb") as fh:
        version = tomllib.load(fh)["project"]["version"]
    assert _metric(after, "bentoml_service_request_total", endpoint="/predict", service_version=version) >= 2
