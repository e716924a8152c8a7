"""A BentoML service answering its own request's trace facts, for tests/test_telemetry.py.

Run as ``python tests/telemetry_probe.py lean|bentoml SAMPLE_RATE`` in a fresh interpreter (BentoML
builds its tracer provider once per process); prints one JSON line per request. The rate is the
service's ``tracing.sample_rate`` (BentoML's configuration).
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

if sys.argv[1] == "lean":
    from serving.telemetry import install_lean_sampler

    install_lean_sampler()

import bentoml  # noqa: E402
from bentoml._internal.context import trace_context  # noqa: E402
from opentelemetry import trace  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@bentoml.service(name="probe", logging={"access": {"enabled": False}},
                 tracing={"sample_rate": float(sys.argv[2])})
class Probe:
    @bentoml.api(route="/ids")
    async def ids(self, x: int = 0) -> dict[str, Any]:
        return {"request_id": trace_context.request_id, "trace_id": trace_context.trace_id,
                "span_id": trace_context.span_id, "sampled": trace_context.sampled,
                "recording": trace.get_current_span().is_recording()}


if __name__ == "__main__":
    with TestClient(Probe.to_asgi()) as client:  # type: ignore[attr-defined]
        for _ in range(3):
            print(json.dumps(client.post("/ids", json={"x": 1}).json()), flush=True)
