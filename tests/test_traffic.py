"""BentoML's request timeout with its timer released (serving/traffic.py), on BentoML's own middleware."""

from __future__ import annotations

import asyncio
import json

from bentoml._internal.server.http.traffic import TimeoutMiddleware

from serving.traffic import install_timer_release


async def _answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _slow(scope, receive, send) -> None:
    await asyncio.sleep(5)


async def _requests(app, n: int) -> tuple[list[dict], list[asyncio.TimerHandle]]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    for _ in range(n):
        await app({"type": "http", "path": "/predict"}, receive, send)
    loop = asyncio.get_running_loop()
    return sent, [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]


def test_every_request_leaves_its_timeout_timer_cancelled() -> None:
    install_timer_release()
    sent, pending = asyncio.run(_requests(TimeoutMiddleware(_answer, timeout=30), 50))
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200] * 50
    assert pending == []  # BentoML's own version leaves 50 timers of 30 s each


def test_the_timeout_still_answers_504() -> None:
    install_timer_release()
    sent, _ = asyncio.run(_requests(TimeoutMiddleware(_slow, timeout=0.05), 1))
    assert sent[0]["status"] == 504 and "0.05 seconds" in json.loads(sent[1]["body"])["error"]
