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


async def _started_then_slow(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(0.1)
    await send({"type": "http.response.body", "body": b"late"})


def test_the_timeout_does_not_cut_a_response_that_has_started() -> None:
    install_timer_release()
    sent, _ = asyncio.run(_requests(TimeoutMiddleware(_started_then_slow, timeout=0.02), 1))
    assert [m.get("status") or m.get("body") for m in sent] == [200, b"late"]


def test_a_cancellation_from_elsewhere_still_cancels_the_request() -> None:
    install_timer_release()
    started = []

    async def app(scope, receive, send) -> None:
        started.append(True)
        await asyncio.sleep(5)

    async def main() -> bool:
        task = asyncio.ensure_future(_requests(TimeoutMiddleware(app, timeout=30), 1))
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main()) and started == [True]
