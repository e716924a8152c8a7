"""A BentoML service whose /predict does no work: the ceiling of BentoML's HTTP stack, for
bench_serving (same server, middleware and metrics as `propensity serve`, no model, no profile)."""

from __future__ import annotations

from typing import Any

import bentoml
from starlette.responses import JSONResponse


@bentoml.service(name="noop", workers=1, metrics={"enabled": True}, logging={"access": {"enabled": False}})
class NoopService:
    @bentoml.api(route="/predict")
    async def predict(self, user_id: str | None = None, context: dict[str, Any] | None = None) -> Any:
        return JSONResponse({"user_id": user_id, "probability": 0.0})
