"""The service against BentoML's own ceiling (issue 12), every run in the same session, repeated.

    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_ceiling [--rounds 3] [--seconds 10]
        [--before DIR] [--soak-minutes 10] [--json out.json]

Per round, interleaved so the machine's load hits every server alike (wrk, loopback, 2 and 16
connections, 2,000 live users loaded through PUT /users and POST /events, answers for "now",
the default serving configuration with the access log off):

- ``bentoml_default``: a BentoML service whose /predict does nothing (bench/noop_service.py);
- ``bentoml_tuned``: the same with its start-up heap frozen and the collector off (the issue's
  baseline);
- ``bentoml_lean``: the tuned no-op with the service's tracing too (unsampled requests record no
  spans, serving/telemetry.py): the ceiling with the one BentoML cost the service trims, so the
  ratios to it show the project's own work alone;
- ``starlette``: the same no-op in bare Starlette (uvicorn);
- ``service``: ``propensity serve`` from this checkout;
- ``service_before``: ``propensity serve`` from ``--before DIR`` (a checkout of an older commit,
  e.g. ``git archive BASE | tar -x -C DIR``), when given.

``--soak-minutes M`` (or ``--soak S`` seconds): afterwards, the service under 16 connections for
that long; its resident memory (all processes of the server) is sampled every 10 s and reported
after 1 minute and at the end, with the growth between them (the issue's bound: within 10%).
``--soak-only`` skips the rounds. The table of the rounds (medians and ratios to the tuned no-op)
is printed as Markdown at the end, ready for BENCHMARKS.md; besides requests/s and p99 it has
each server's CPU time per answered request at 16 connections (its process tree) and the
throughput that CPU time allows against the tuned no-op's, which moves less with other load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.support import ROOT, process_tree, wrk
from bench.support import free_port as _free_port
from bench.support import ingest as _ingest
from bench.support import serve as _serve
from bench.support import shop as _shop
from bench.support import stop as _stop
from bench.support import train as _train
from bench.support import wait_ready as _wait_ready


def noop_starlette_app() -> Any:
    """The bare Starlette no-op (imported by uvicorn)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"user_id": body.get("user_id"), "probability": 0.0})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def _start(kind: str, workdir: Path, model_path: Path, before: Path | None) -> tuple[subprocess.Popen, str]:
    if kind.startswith("service"):
        config = workdir / "serving.yaml"
        config.write_text("access_log: false\n")  # everything else: the default configuration
        code = ROOT
        if kind == "service_before":
            assert before is not None
            code = before
        proc, url = _serve(model_path, workdir, config, code)
        _wait_ready(url, proc)
        return proc, url
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROPENSITY_HOME": str(workdir)}
    if kind.startswith("bentoml_"):
        env["NOOP_TUNED"] = "1" if kind in ("bentoml_tuned", "bentoml_lean") else "0"
        env["NOOP_LEAN"] = "1" if kind == "bentoml_lean" else "0"
        args = ["-m", "bentoml", "serve", "bench.noop_service:NoopService", "--port", str(port)]
    else:  # starlette
        args = ["-m", "uvicorn", "bench.bench_ceiling:noop_starlette_app", "--factory", "--port", str(port),
                "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, proc, path="/predict" if kind == "starlette" else "/readyz")
    return proc, url


def measure(kind: str, workdir: Path, model_path: Path, shop: tuple, seconds: int,
            before: Path | None) -> dict[str, Any]:
    """One server: load the users (services only), warm up, then 2 and 16 connections."""
    proc, url = _start(kind, workdir, model_path, before)
    users = sorted({e["user_id"] for e in shop[0]})
    try:
        if kind.startswith("service"):
            _ingest(url, shop[1], shop[0])
        wrk(url, users, 3, workdir)  # warm-up: profile states, caches, first collections
        return {"c2": wrk(url, users, seconds, workdir, connections=2, server_pid=proc.pid),
                "c16": wrk(url, users, seconds, workdir, server_pid=proc.pid)}
    finally:
        _stop(proc)


def _rss_mb(pid: int) -> float:
    return sum(p.memory_info().rss for p in process_tree(pid) if p.is_running()) / 2**20


def soak(workdir: Path, model_path: Path, shop: tuple, seconds: int) -> dict[str, Any]:
    """The service under 16 connections for ``seconds``; resident memory every 10 s (MB)."""
    proc, url = _start("service", workdir, model_path, None)
    users = sorted({e["user_id"] for e in shop[0]})
    samples: list[tuple[float, float]] = []
    try:
        _ingest(url, shop[1], shop[0])
        result: dict[str, Any] = {}
        load = threading.Thread(target=lambda: result.update(wrk(url, users, seconds, workdir)))
        started = time.monotonic()
        load.start()
        while load.is_alive():
            samples.append((round(time.monotonic() - started, 1), round(_rss_mb(proc.pid), 1)))
            load.join(timeout=10)
        at_60 = next((mb for t, mb in samples if t >= 60), samples[-1][1])
        return {"seconds": seconds, "load": result, "rss_mb_at_60s": at_60, "rss_mb_at_end": samples[-1][1],
                "growth_after_60s": samples[-1][1] / at_60 - 1, "samples": samples}
    finally:
        _stop(proc)


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in rounds[0]:
        out[kind] = {c: {m: statistics.median(r[kind][c][m] for r in rounds)
                         for m in ("requests_per_s", "p99_ms", "non_2xx", "server_cpu_us")}
                     for c in ("c2", "c16")}
    for base, suffix in (("bentoml_tuned", "tuned"), ("bentoml_lean", "lean")):
        if base not in out:
            continue
        ceiling = out[base]
        for kind in ("service", "service_before"):
            if kind in out:
                rps = out[kind]["c16"]["requests_per_s"]
                out[kind][f"throughput_vs_{suffix}_c16"] = rps / ceiling["c16"]["requests_per_s"]
                out[kind][f"p99_vs_{suffix}_c2"] = out[kind]["c2"]["p99_ms"] / ceiling["c2"]["p99_ms"]
                out[kind][f"p99_vs_{suffix}_c16"] = out[kind]["c16"]["p99_ms"] / ceiling["c16"]["p99_ms"]
                # CPU-bound throughput from CPU per answer: moves much less with other processes' load
                out[kind][f"cpu_throughput_vs_{suffix}_c16"] = (ceiling["c16"]["server_cpu_us"]
                                                               / out[kind]["c16"]["server_cpu_us"])
    return out


LABELS = {"bentoml_default": "BentoML no-op, default",
          "bentoml_tuned": "BentoML no-op, frozen heap + GC off (tuned)",
          "bentoml_lean": "BentoML no-op, tuned + the service's tracing (lean)",
          "starlette": "bare Starlette no-op", "service_before": "service before", "service": "**service**"}


def markdown(rounds: list[dict[str, Any]]) -> str:
    """The rounds and their medians as one Markdown table, ratios to the tuned no-op of the same round
    (and to the lean no-op, when it ran)."""
    lean = "bentoml_lean" in rounds[0]
    extra = " | req/s vs lean (c16) | p99 vs lean (c2) | p99 vs lean (c16)" if lean else ""
    head = ("| round | server | req/s c2 | p99 ms c2 | req/s c16 | p99 ms c16 | req/s vs tuned (c16) "
            f"| p99 vs tuned (c2) | p99 vs tuned (c16){extra} | non-2xx | server CPU µs/req (c16) "
            "| CPU-bound req/s vs tuned |\n|" + "---|" * (15 if lean else 12))
    lines = [head]
    median = _summary(rounds)
    for name, run in [*((str(i + 1), r) for i, r in enumerate(rounds)), ("median", median)]:
        ceilings = [run["bentoml_tuned"], *([run["bentoml_lean"]] if lean else [])]
        for kind in [k for k in LABELS if k in run]:
            c2, c16 = run[kind]["c2"], run[kind]["c16"]
            ratios = "".join(f"| {c16['requests_per_s'] / c['c16']['requests_per_s']:.2f} "
                             f"| {c2['p99_ms'] / c['c2']['p99_ms']:.2f} "
                             f"| {c16['p99_ms'] / c['c16']['p99_ms']:.2f} "
                             for c in ceilings)
            lines.append(
                f"| {name} | {LABELS[kind]} | {c2['requests_per_s']:,.0f} | {c2['p99_ms']:.1f} "
                f"| {c16['requests_per_s']:,.0f} | {c16['p99_ms']:.1f} {ratios}"
                f"| {c2['non_2xx'] + c16['non_2xx']:.0f} | {c16['server_cpu_us']:.0f} "
                f"| {ceilings[0]['c16']['server_cpu_us'] / c16['server_cpu_us']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, default=None, help="checkout of the commit to compare with")
    parser.add_argument("--soak", type=int, default=0, help="seconds of the memory run (0: none)")
    parser.add_argument("--soak-minutes", type=float, default=0, help="minutes of the memory run (0: none)")
    parser.add_argument("--soak-only", action="store_true", help="only the memory run, no rounds")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    soak_s = args.soak or int(args.soak_minutes * 60)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    shop = _shop(args.users)
    model_path = workdir / "model.pkl"
    _train(shop, model_path)
    kinds = ["bentoml_default", "bentoml_tuned", "bentoml_lean", "starlette", "service"]
    if args.before is not None:
        kinds.append("service_before")
    rounds = []
    load_before = os.getloadavg()
    for i in range(0 if args.soak_only else args.rounds):
        order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]  # rotate: no kind always runs first
        run = {kind: measure(kind, workdir, model_path, shop, args.seconds, args.before) for kind in order}
        print(json.dumps({"round": i + 1, **run}), flush=True)
        rounds.append(run)
    results: dict[str, Any] = {"users": args.users, "seconds": args.seconds, "rounds": rounds,
                               "median": _summary(rounds) if rounds else {},
                               "load_average": {"start": load_before, "end": os.getloadavg()}}
    if soak_s:
        results["soak"] = soak(workdir, model_path, shop, soak_s)
    print(json.dumps({k: v for k, v in results.items() if k != "rounds"}, indent=2))
    if rounds:
        print(markdown(rounds))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
