"""A BentoML service whose /predict does no work: the ceiling of BentoML's HTTP stack, for
bench_serving (same server, middleware and metrics as `propensity serve`, no model, no profile).

``NOOP_TUNED=1``: the worker freezes its start-up heap and turns the cyclic collector off (the
"tuned" ceiling of issue 12). ``NOOP_LEAN=1`` besides: BentoML builds its tracer with the
standard sampler, as the service does by default (serving/telemetry.py), so unsampled requests
record no spans (the tuned ceiling with the service's tracing)."""

from __future__ import annotations

import gc
import os
from typing import Any

import bentoml
from starlette.responses import JSONResponse

if os.environ.get("NOOP_LEAN") == "1":
    from serving.telemetry import install_lean_sampler

    install_lean_sampler()


@bentoml.service(name="noop", workers=1, metrics={"enabled": True}, logging={"access": {"enabled": False}})
class NoopService:
    def __init__(self) -> None:
        if os.environ.get("NOOP_TUNED") == "1":
            gc.collect()
            gc.freeze()
            gc.disable()

    @bentoml.api(route="/predict")
    async def predict(self, user_id: str | None = None, context: dict[str, Any] | None = None) -> Any:
        return JSONResponse({"user_id": user_id, "probability": 0.0})
