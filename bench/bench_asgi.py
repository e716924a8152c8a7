"""The service against the tuned BentoML no-op through BentoML's real ASGI app, in-process: CPU per request.

    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_asgi [--requests 4000] [--concurrency 16] [--rounds 2]

wrk's numbers on a shared machine move with the other processes' load; CPU time per request does
much less. Each server runs in its own subprocess: its BentoML ASGI app (``Service.to_asgi()``,
start-up through the ASGI lifespan, then the same middleware, OpenTelemetry, metrics and IO
models as under ``bentoml serve``; only the socket and the HTTP parser are left out) answers
``POST /predict`` for 2,000 users, ``--concurrency`` requests at a time on one event loop, after
the worker's start-up (frozen heap, collector off):

- ``noop``: bench/noop_service.py, tuned (the issue's ceiling);
- ``noop_lean``: the same with the service's tracing (unsampled requests record no spans,
  serving/telemetry.py): the ceiling the service's own work is measured against;
- ``hollow``: the service with an engine that returns a constant answer (what the project adds
  outside the engine: protection middleware, the larger input model, the ledger check);
- ``service``: the service (default configuration, cache off, in-process store loaded through
  ``POST /events``, the bench model of bench/bench_serving.py).

Reported: CPU µs per request (median of rounds, rounds interleaved) and the throughput the
service would have against the no-op if CPU-bound (``noop_us / service_us``; the issue's target
is >= 0.8), and against the lean no-op.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

ANSWER = {"user_id": "u", "probability": 0.5, "segment": "s", "cluster": None, "journey_stage": "j",
          "engagement_score": 1.0, "reasons": [{"feature": "f", "contribution": 0.1}] * 3,
          "model": {"name": "m", "version": "1"}, "variant": "champion", "decision": "d",
          "personalized": True, "source": "profile"}


def _app(kind: str) -> Any:
    if kind.startswith("noop"):
        os.environ["NOOP_TUNED"] = "1"
        os.environ["NOOP_LEAN"] = "1" if kind == "noop_lean" else "0"
        from bench.noop_service import NoopService

        return cast(Any, NoopService).to_asgi()  # the decorator made it a bentoml Service
    if kind == "hollow":
        from serving.engine import PredictionEngine

        async def constant(self: Any, request: Any) -> dict[str, Any]:
            return ANSWER

        PredictionEngine.predict_async = constant  # type: ignore[method-assign]
    from serving.service import PropensityService

    return cast(Any, PropensityService).to_asgi()


async def _start(app: Any) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    asyncio.get_running_loop().create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                               queue.get, send))
    await started.wait()


async def _post(app: Any, path: str, body: Any) -> int:
    data = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
             "server": ("127.0.0.1", 3000), "client": ("127.0.0.1", 50000), "state": {},
             "headers": [(b"host", b"127.0.0.1:3000"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(data)).encode())]}
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


async def _measure(kind: str, n: int, concurrency: int) -> float:
    from bench.bench_serving import _shop

    app = _app(kind)
    await _start(app)
    events, _ = _shop(2000)
    ids = sorted({e["user_id"] for e in events})
    if kind == "service":
        for i in range(0, len(events), 500):
            assert await _post(app, "/events", events[i:i + 500]) == 200
    for user_id in ids:  # warm-up: every user's profile state, as after a few seconds of traffic
        assert await _post(app, "/predict", {"user_id": user_id}) == 200
    gc.collect()
    gc.freeze()
    gc.disable()
    started = time.process_time()
    for i in range(0, n, concurrency):
        statuses = await asyncio.gather(*(_post(app, "/predict", {"user_id": ids[(i + j) % len(ids)]})
                                          for j in range(concurrency)))
        assert set(statuses) == {200}, statuses
    return (time.process_time() - started) / n * 1e6


def _one(kind: str, n: int, concurrency: int, workdir: Path, model_path: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "."), "BENTOML_HOME": str(workdir / kind),
           "PROPENSITY_HOME": str(workdir / "home"),
           "PROPENSITY_SERVING": json.dumps({"config_path": str(workdir / "serving.yaml"),
                                             "model_uri": str(model_path), "insecure": True})}
    out = subprocess.run([sys.executable, "-m", "bench.bench_asgi", "--worker", kind, "--requests", str(n),
                          "--concurrency", str(concurrency)], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        us = asyncio.run(_measure(args.worker, args.requests, args.concurrency))
        print(us, flush=True)
        os._exit(0)  # the lifespan task and BentoML's background threads are not ours to wait for
    from bench.bench_serving import _shop, _train

    workdir = Path(tempfile.mkdtemp(prefix="bench-asgi-"))
    (workdir / "serving.yaml").write_text("access_log: false\ncache:\n  enabled: false\n")
    model_path = workdir / "model.pkl"
    _train(_shop(2000), model_path)
    runs: dict[str, list[float]] = {"noop": [], "noop_lean": [], "hollow": [], "service": []}
    for _ in range(args.rounds):
        for kind in runs:
            runs[kind].append(_one(kind, args.requests, args.concurrency, workdir, model_path))
    median = {k: statistics.median(v) for k, v in runs.items()}
    result = {"concurrency": args.concurrency, "requests": args.requests, "cpu_us_per_request": runs,
              "median_us": median, "service_throughput_vs_noop": median["noop"] / median["service"],
              "service_throughput_vs_noop_lean": median["noop_lean"] / median["service"],
              "hollow_throughput_vs_noop": median["noop"] / median["hollow"], "load_average": os.getloadavg()}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
