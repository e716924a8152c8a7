"""The project's own per-request work of ``/predict``, in-process (no HTTP): CPU microseconds a request.

    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_engine [--users 2000] [--requests 20000]
        [--concurrency 16] [--before DIR] [--profile 25] [--json out.json]

The same engine ``propensity serve`` builds (serving.loader.build_engine: default configuration,
in-process store, the 300-tree bench model of bench/bench_serving.py), loaded with 2,000 users
through ``put_user`` and ``ingest``, answers ``/predict`` for known users in turn, ``--concurrency``
requests at a time on one event loop (the batching the service does), for "now". Measured:

- ``engine``: :meth:`PredictionEngine.predict_async` with the prediction cache off (every request
  computes: profile state, online features, engagement, journey, model, reasons, decision);
- ``engine_cached``: the same with every answer in the prediction cache (a TTL longer than the run:
  the cost of a hit; with the default 2 s TTL the hit rate depends on the request rate);
- ``middleware``: :class:`serving.protection.ProtectionMiddleware` in front of an empty app
  (key check, body read, JSON parse and bounds) for one /predict body.

CPU time of this process (``time.process_time``), median of ``--rounds``: steadier than wall time
on a shared machine. As in a service worker, the start-up heap is frozen and the automatic
collector is off while measuring (serving.gc_policy); ``engine`` is also measured two requests at
a time (``engine_c2_us``: the batches of a lightly loaded server). ``--before DIR`` runs the same
measurement on a checkout of an older commit in a subprocess of the same session and reports the
ratios; ``--profile N`` prints the N costliest functions (cProfile, own time) of the engine, cache off.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def _engine(workdir: Path, model_path: Path, cache: bool, shop: tuple) -> Any:
    from serving.loader import build_engine

    config = workdir / f"serving-{cache}.yaml"
    config.write_text(f"cache:\n  enabled: {str(cache).lower()}\n  ttl_s: 86400\n")
    engine = build_engine({"config_path": str(config), "model_uri": str(model_path)})
    events, users = shop
    for user in users:
        engine.put_user(user["user_id"], {k: v for k, v in user.items() if k != "user_id"})
    for i in range(0, len(events), 500):
        engine.ingest(events[i:i + 500])
    return engine


async def _drive(call: Any, ids: list[str], n: int, concurrency: int) -> None:
    for start in range(0, n, concurrency):
        await asyncio.gather(*(call(ids[(start + j) % len(ids)]) for j in range(concurrency)))


def _cpu_us(call: Any, ids: list[str], n: int, concurrency: int, rounds: int) -> float:
    """Median over rounds of the CPU microseconds per request."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_drive(call, ids, min(n, 2000), concurrency))  # warm-up: states, caches
        out = []
        for _ in range(rounds):
            started = time.process_time()
            loop.run_until_complete(_drive(call, ids, n, concurrency))
            out.append((time.process_time() - started) / n * 1e6)
        return statistics.median(out)
    finally:
        loop.close()


def _middleware_call() -> Any:
    from serving.protection import ProtectionMiddleware

    async def empty(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = ProtectionMiddleware(empty)

    async def call(user_id: str) -> None:
        body = json.dumps({"user_id": user_id}).encode()
        scope = {"type": "http", "method": "POST", "path": "/predict", "client": ("127.0.0.1", 5000),
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            return None

        await app(scope, receive, send)

    return call


def measure(workdir: Path, model_path: Path, users: int, n: int, concurrency: int, rounds: int,
            profile_top: int) -> dict[str, Any]:
    """The measurements of the module docstring on the code importable here."""
    from bench.bench_serving import _shop

    os.environ["PROPENSITY_HOME"] = str(workdir)
    shop = _shop(users)
    ids = sorted({e["user_id"] for e in shop[0]})
    engine = _engine(workdir, model_path, False, shop)
    cached = _engine(workdir, model_path, True, shop)
    gc.collect()
    gc.freeze()
    gc.disable()

    def ask(eng: Any) -> Any:
        async def call(user_id: str) -> Any:
            return await eng.predict_async({"user_id": user_id, "context": {}, "features": None,
                                            "as_of": None, "debug": False})
        return call

    result: dict[str, Any] = {"requests": n, "concurrency": concurrency, "rounds": rounds}
    result["engine_us"] = _cpu_us(ask(engine), ids, n, concurrency, rounds)
    result["engine_c2_us"] = _cpu_us(ask(engine), ids, n // 4, 2, rounds)
    result["engine_cached_us"] = _cpu_us(ask(cached), ids, n, concurrency, rounds)
    result["middleware_us"] = _cpu_us(_middleware_call(), ids, n, concurrency, rounds)
    if profile_top:
        profiler = cProfile.Profile()
        loop = asyncio.new_event_loop()
        profiler.enable()
        loop.run_until_complete(_drive(ask(engine), ids, n, concurrency))
        profiler.disable()
        loop.close()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(profile_top)
        result["profile"] = text.getvalue()
    return result


def _run_before(before: Path, workdir: Path, model_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` on the code of ``before`` (a subprocess with that checkout on the path)."""
    out = workdir / "before.json"
    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import importlib.util as u; s = u.spec_from_file_location('bench_engine_here', sys.argv[2]); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); "
            "r = m.measure(Path(sys.argv[3]), Path(sys.argv[4]), *map(int, sys.argv[5:9]), 0); "
            "Path(sys.argv[9]).write_text(json.dumps(r))")
    env = {**os.environ, "PYTHONPATH": str(before)}
    subprocess.run([sys.executable, "-c", code, str(before), str(HERE), str(workdir / "before"),
                    str(model_path), str(args.users), str(args.requests), str(args.concurrency),
                    str(args.rounds), str(out)],
                   cwd=before, env=env, check=True)
    return dict(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, default=None, help="checkout of the commit to compare with")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    from bench.bench_serving import _shop, _train

    workdir = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    model_path = workdir / "model.pkl"
    _train(_shop(args.users), model_path)
    results: dict[str, Any] = {"load_average": os.getloadavg()}
    if args.before is not None:  # first, so the two runs see the machine's load alike on average
        (workdir / "before").mkdir()
        results["before"] = _run_before(args.before, workdir, model_path, args)
    (workdir / "after").mkdir()
    results["after"] = measure(workdir / "after", model_path, args.users, args.requests, args.concurrency,
                               args.rounds, args.profile)
    if "before" in results:
        keys = ("engine_us", "engine_c2_us", "engine_cached_us", "middleware_us")
        results["after_vs_before"] = {k: results["after"][k] / results["before"][k]
                                      for k in keys if results["before"].get(k)}
    profile = results["after"].pop("profile", None)
    if profile:
        print(profile)
    from bench.support import emit

    return emit(results, args.json_path)


if __name__ == "__main__":
    main()
