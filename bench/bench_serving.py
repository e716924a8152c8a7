"""Serving benchmark: /predict throughput and p99 against a bare Starlette + inplace_predict baseline.

    .venv/bin/python -m bench.bench_serving [--users 2000] [--seconds 10] [--json out.json]

In one run, on loopback, with `wrk` (16 connections, 2 threads):
1. trains a 300-tree, depth-6 XGBoost ConversionModel on a generated shop (the KNOWN.md reference size);
2. baseline: a minimal Starlette app (uvicorn, same worker count) calling that booster's
   ``inplace_predict`` on a fixed feature vector, single-threaded;
3. for each profile store backend (in-process: 1 worker; Redis: 2 workers sharing the store):
   starts ``propensity serve``, loads the users by PUT and their events by POST /events (ingest
   events/s, 4 concurrent clients, batches of 500), then drives /predict for known users (profile
   lookup, features, engagement, journey, reasons and decision included), with the prediction cache
   off (every request computes) and on (the default, 2 s TTL), with Saabas reasons (the default)
   and exact TreeSHAP reasons (``reasons_approximate: false``).
4. the ceiling of BentoML's own HTTP stack: a BentoML service whose /predict does nothing
   (bench/noop_service.py, 1 worker), under the same load.
Reports requests/s, p99 latency and the throughput ratio to the baseline of the same worker count
(and to the no-op BentoML ceiling).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.support import ROOT, emit, serve
from bench.support import free_port as _free_port
from bench.support import ingest as _ingest
from bench.support import shop as _shop
from bench.support import stop as _stop
from bench.support import train as _train
from bench.support import wait_ready as _wait_ready
from bench.support import wrk as _wrk

ENV_MODEL = "PROPENSITY_BENCH_MODEL"


# -- the baseline app (imported by uvicorn in its own processes) ---------------------------------

def _baseline_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from training.model import ConversionModel

    model = ConversionModel.load(os.environ[ENV_MODEL])
    booster = model.estimator.copy()
    booster.set_param({"nthread": 1})
    row = np.zeros((1, model.encoder.n_columns_), dtype=np.float32)

    async def predict(request: Request) -> JSONResponse:
        body = await request.json()
        p = float(booster.inplace_predict(row, validate_features=False)[0])
        return JSONResponse({"user_id": body.get("user_id"), "probability": p})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


if os.environ.get(ENV_MODEL) and os.environ.get("PROPENSITY_BENCH_BASELINE"):
    baseline_app = _baseline_app()


# -- helpers --------------------------------------------------------------------------------------









def _baseline(model_path: Path, workers: int, seconds: int, users: list[str],
              workdir: Path) -> dict[str, float]:
    port = _free_port()
    env = {**os.environ, ENV_MODEL: str(model_path), "PROPENSITY_BENCH_BASELINE": "1",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.bench_serving:baseline_app",
                             "--port", str(port), "--workers", str(workers), "--no-access-log",
                             "--log-level", "warning"], cwd=ROOT, env=env, start_new_session=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc, path="/predict")
        return _wrk(f"http://127.0.0.1:{port}", users, seconds, workdir)
    finally:
        _stop(proc)


def _bentoml_ceiling(seconds: int, users: list[str], workdir: Path) -> dict[str, float]:
    """The same wrk load on a BentoML service whose /predict does nothing (bench/noop_service.py)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "bench.noop_service:NoopService",
                             "--port", str(port)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        return _wrk(f"http://127.0.0.1:{port}", users, seconds, workdir)
    finally:
        _stop(proc)




def _service(model_path: Path, backend: str, workers: int, cache: bool, approximate: bool, seconds: int,
             shop: tuple, workdir: Path, ingest: bool, extra_config: str = "") -> dict[str, Any]:
    raw_events, raw_users = shop
    config = workdir / f"serving-{backend}-{cache}-{approximate}.yaml"
    prefix = f"bench:{os.getpid()}:{backend}:{cache}:{approximate}:"
    config.write_text(f"cache:\n  enabled: {str(cache).lower()}\naccess_log: false\n"
                      f"reasons_approximate: {str(approximate).lower()}\n{extra_config}"
                      f"store:\n  backend: {backend}\n  key_prefix: '{prefix}'\n")
    proc, url = serve(model_path, workdir, config, workers=workers)
    try:
        _wait_ready(url, proc)
        result: dict[str, Any] = {"backend": backend, "workers": workers, "cache": cache,
                                  "reasons": "saabas" if approximate else "treeshap"}
        ingested = _ingest(url, raw_users, raw_events)
        if ingest:
            result["ingest"] = ingested
        known = sorted({e["user_id"] for e in raw_events})
        result["predict"] = _wrk(url, known, seconds, workdir)
        return result
    finally:
        _stop(proc)
        if backend == "redis":
            import redis

            r = redis.Redis()
            for key in r.scan_iter(match=f"{prefix}*", count=1000):
                r.delete(key)






def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--batch-wait-ms", type=float, default=None,
                        help="serving.yaml batch_wait_ms for every service run (default: the config's)")
    parser.add_argument("--default-only", action="store_true",
                        help="only the default configuration (in-process, Saabas, cache off)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    shop = _shop(args.users)
    model_path = workdir / "model.pkl"
    _train(shop, model_path)
    known = sorted({e["user_id"] for e in shop[0]})
    results: dict[str, Any] = {"users": args.users, "events": len(shop[0]), "seconds": args.seconds,
                               "runs": []}
    baselines = {w: _baseline(model_path, w, args.seconds, known, workdir) for w in (1, 2)}
    results["baseline"] = {str(w): b for w, b in baselines.items()}
    ceiling = _bentoml_ceiling(args.seconds, known, workdir)
    results["bentoml_noop_ceiling"] = ceiling
    print(json.dumps({"baseline": results["baseline"], "bentoml_noop_ceiling": ceiling}), flush=True)
    plan = [("inprocess", 1, False, True), ("inprocess", 1, False, False), ("inprocess", 1, True, True),
            ("redis", 2, False, True), ("redis", 2, True, True)]
    for backend, workers, cache, approximate in plan:
        if args.default_only and (backend, cache, approximate) != ("inprocess", False, True):
            continue
        extra = f"batch_wait_ms: {args.batch_wait_ms}\n" if args.batch_wait_ms is not None else ""
        run = _service(model_path, backend, workers, cache, approximate, args.seconds, shop, workdir,
                       ingest=not cache and approximate, extra_config=extra)
        run["ratio_to_baseline"] = run["predict"]["requests_per_s"] / baselines[workers]["requests_per_s"]
        run["ratio_to_bentoml_noop"] = run["predict"]["requests_per_s"] / ceiling["requests_per_s"]
        results["runs"].append(run)
        print(json.dumps(run), flush=True)
    return emit(results, args.json_path)


if __name__ == "__main__":
    main()
