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
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
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

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen, path: str = "/readyz", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code in (200, 405):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server not ready in time")


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wrk(url: str, users: list[str], seconds: int, workdir: Path) -> dict[str, float]:
    script = workdir / "predict.lua"
    ids = ",".join(f'"{u}"' for u in users)
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"local ids = {{{ids}}}\nlocal n = 0\n"
        "request = function()\n  n = n + 1\n"
        '  local body = \'{"user_id": "\' .. ids[(n % #ids) + 1] .. \'"}\'\n'
        '  return wrk.format(nil, "/predict", nil, body)\nend\n')
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": rps, "p99_ms": float(p99.group(1)) * scale,  # type: ignore[union-attr]
            "non_2xx": int(errors.group(1)) if errors else 0}


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


def _ingest(url: str, users: list[dict], events: list[dict]) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=60) as c:
        for u in users:
            c.put(f"/users/{u['user_id']}", json={k: v for k, v in u.items() if k != "user_id"})
    batches = [events[i:i + 500] for i in range(0, len(events), 500)]

    def send(batch: list[dict]) -> int:
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/events", json=batch)
            r.raise_for_status()
            return int(r.json()["applied"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        applied = sum(pool.map(send, batches))
    seconds = time.perf_counter() - t0
    return {"events": len(events), "applied": applied, "seconds": seconds,
            "events_per_s": len(events) / seconds}


def _service(model_path: Path, backend: str, workers: int, cache: bool, approximate: bool, seconds: int,
             shop: tuple, workdir: Path, ingest: bool, extra_config: str = "") -> dict[str, Any]:
    raw_events, raw_users = shop
    config = workdir / f"serving-{backend}-{cache}-{approximate}.yaml"
    prefix = f"bench:{os.getpid()}:{backend}:{cache}:{approximate}:"
    config.write_text(f"cache:\n  enabled: {str(cache).lower()}\naccess_log: false\n"
                      f"reasons_approximate: {str(approximate).lower()}\n{extra_config}"
                      f"store:\n  backend: {backend}\n  key_prefix: '{prefix}'\n")
    port = _free_port()
    env = {**os.environ, "PROPENSITY_HOME": str(workdir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "propensity.cli", "serve", "--model", str(model_path),
                             "--port", str(port), "--workers", str(workers), "--config", str(config)],
                            cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
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


def _shop(n_users: int) -> tuple[list[dict], list[dict]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_serving_helpers import make_shop

    return make_shop(n_users=n_users, seed=11)


def _train(shop: tuple, path: Path) -> None:
    import xgboost as xgb

    sys.path.insert(0, str(ROOT / "tests"))
    from test_serving_helpers import START, clean_frames

    from features.batch.snapshot import build_snapshots_at
    from features.registry import model_features
    from training.model import ConversionModel
    from training.preprocess import FeatureEncoder

    events, users = clean_frames(*shop)
    frame = build_snapshots_at(events, users, [START + timedelta(days=d) for d in (30, 37, 44)],
                               timedelta(days=7))
    numeric = [n for n in model_features() if n != "loyalty_tier"]
    encoder = FeatureEncoder(numeric, ["loyalty_tier"]).fit(frame)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2,
                         "seed": 0, "verbosity": 0},
                        xgb.DMatrix(encoder.transform(frame), label=frame["label"].to_numpy()),
                        num_boost_round=300)
    ConversionModel(family="xgboost", encoder=encoder, estimator=booster).save(str(path))


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
    print(json.dumps(results, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
