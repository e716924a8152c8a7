"""The prediction log's cost (issue 14): `/predict` throughput with the log on against off, same run.

    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_predlog [--rounds 3] [--seconds 10] [--json out.json]
    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_predlog --inprocess [--rounds 5] [--json out.json]
    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_predlog --lock [--rounds 5] [--json out.json]

Per round, in a rotated order so load changes hit both alike: ``propensity serve`` from this
checkout (1 worker, in-process store, the default serving configuration with the access log off),
once with ``prediction_log.enabled: false`` and once with the default log (Parquet files in the
work folder, feature vectors on the default sample share); 2,000 live users loaded through PUT /users and
POST /events, a 3 s warm-up, then wrk at 16 connections for ``--seconds``. After each "on" server
stops, the rows on disk are counted against the requests wrk sent (nothing may be missing).
Reports median requests/s, p99 and the server's CPU time per answered request (its process tree) per
setting, and the ratios on/off (goal >= 0.95; the CPU ratio moves less with other processes' load).

``--inprocess``: the same comparison without HTTP, on the engine the service runs
(``serving.loader.build_engine``, default configuration but the answer cache off, feature vectors
on the default sample share): per round the CPU time of ``engine.predict`` for every user in
turn, three times, without the log and with it, then the CPU time (all threads) to write what it
queued (one flush, timed apart); reports both throughputs, the
write time per answer and its share of the answering time (timed seconds apart, so less exposed
to the machine's load than two whole server runs). The write's CPU includes the writer process's.

``--lock``: what a flush costs a busy request thread, for both writers (``prediction_log.writer``
process and thread) and for the thread writer whose reading steps run on the worker's event loop
(``loop``, what a service worker does: :meth:`serving.predlog.PredictionLog.attach_loop`).
5,000 answers of the engine are queued, then flushed by the log's thread while this process's
main thread runs Python without pause (as a worker at 2 connections does; for ``loop``, short
callbacks on its event loop); the main thread's stalls (gaps over 0.2 ms between two of its
steps: it waited for the interpreter lock, or ran a reading step of the log) are summed: per
flush the time stalled, their number and the longest.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.support import ingest as _ingest
from bench.support import serve, wrk
from bench.support import shop as _shop
from bench.support import stop as _stop
from bench.support import train as _train
from bench.support import wait_ready as _wait_ready


def measure(log_on: bool, workdir: Path, model_path: Path, shop: tuple, seconds: int) -> dict[str, Any]:
    """One server (log on or off): load the users, warm up, measure; with the log, count its rows."""
    run_dir = Path(tempfile.mkdtemp(prefix="on-" if log_on else "off-", dir=workdir))
    config = run_dir / "serving.yaml"
    config.write_text(f"access_log: false\nprediction_log:\n  enabled: {str(log_on).lower()}\n")
    proc, url = serve(model_path, run_dir, config)
    users = sorted({e["user_id"] for e in shop[0]})
    try:
        _wait_ready(url, proc)
        _ingest(url, shop[1], shop[0])
        warm = wrk(url, users, 3, run_dir)
        result: dict[str, Any] = wrk(url, users, seconds, run_dir, server_pid=proc.pid)
    finally:
        _stop(proc)  # SIGTERM: the service writes what its log still holds
    if log_on:
        import polars as pl

        files = sorted((run_dir / "predictions").rglob("*.parquet"))
        rows = pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0
        result["log_rows"] = rows
        result["log_files"] = len(files)
        result["requests_sent"] = warm["requests"] + result["requests"]  # wrk may leave some unanswered
    return result


def _loaded_engine(model_path: Path, shop: tuple) -> tuple[Any, dict[str, Any]]:
    """The engine ``propensity serve`` builds (in-process store, the answer cache off: every answer
    computed) with the shop's users and events loaded, and the schema of its logged features."""
    from features.live.profile import normalize_event
    from serving.loader import build_engine, logged_feature_kinds
    from serving.predlog import feature_schema

    engine = build_engine({"model_uri": str(model_path), "store": {"backend": "inprocess"}})
    no_cache = engine.cfg.cache.model_copy(update={"enabled": False})
    engine.cfg = engine.cfg.model_copy(update={"cache": no_cache})
    for user in shop[1]:
        engine.store.upsert_user(user["user_id"], {k: v for k, v in user.items() if k != "user_id"})
    engine.store.add_events([normalize_event(e) for e in shop[0]])
    return engine, feature_schema(logged_feature_kinds(engine))


def inprocess(workdir: Path, model_path: Path, shop: tuple, rounds: int) -> dict[str, Any]:
    """The log's cost on one engine (see the module doc): per round, the CPU time of answering
    every user three times without the log, then with it (queueing only), then of writing what it
    queued; the log's share of the work is (queueing extra + writing) / answering without it."""
    import time

    from serving.predlog import ParquetFolderSink, PredictionLog

    engine, schema = _loaded_engine(model_path, shop)
    log = PredictionLog(ParquetFolderSink(workdir / "inprocess"), schema, flush_rows=10**9,
                        flush_every_s=3600, max_buffer_rows=10**9,
                        feature_share=engine.cfg.prediction_log.feature_share)  # its writes are timed apart
    users = sorted({e["user_id"] for e in shop[0]}) * 3

    def answer_all() -> float:
        t0 = time.process_time()
        for user in users:
            engine.predict({"user_id": user})
        return time.process_time() - t0

    out: list[dict[str, float]] = []
    for i in range(rounds):
        engine.prediction_log = None
        off = answer_all()
        engine.prediction_log = log
        on = answer_all()
        t0 = time.process_time() + _writer_cpu_s(log)  # CPU of every thread and of the writer process
        log.flush()
        write = time.process_time() + _writer_cpu_s(log) - t0
        run = {"off_answers_per_s": len(users) / off, "on_answers_per_s": len(users) / (on + write),
               "write_us_per_answer": write / len(users) * 1e6, "write_share": write / off,
               "wall_ratio": off / (on + write)}
        print(json.dumps({"round": i + 1, **run}), flush=True)
        out.append(run)
    log.close()
    keys = out[0].keys()
    median = {k: statistics.median(r[k] for r in out) for k in keys}
    return {"rounds": out, "median": median, "ratio_from_write_share": 1 / (1 + median["write_share"]),
            "written": log.written, "dropped": log.dropped, "answers": len(users) * rounds}


def _writer_cpu_s(log: Any) -> float:
    """CPU seconds of the log's writer process so far (0 without one)."""
    import psutil

    proc = getattr(getattr(log, "_writer", None), "_proc", None)
    if proc is None or proc.poll() is not None:
        return 0.0
    times = psutil.Process(proc.pid).cpu_times()
    return float(times.user + times.system)


def lock_stalls(workdir: Path, model_path: Path, shop: tuple, rounds: int, n: int = 5000) -> dict[str, Any]:
    """Per writer, per round: how long the main thread, busy running Python, was kept off the
    interpreter lock while a flush of ``n`` answers ran (see the module doc)."""
    import threading
    import time

    from serving.gc_policy import freeze_startup_heap
    from serving.predlog import ParquetFolderSink, PredictionLog

    engine, schema = _loaded_engine(model_path, shop)
    users = sorted({e["user_id"] for e in shop[0]})
    out: dict[str, list[dict[str, float]]] = {"process": [], "thread": [], "loop": []}
    for i in range(rounds):
        for writer in out if i % 2 == 0 else reversed(list(out)):
            log = PredictionLog(ParquetFolderSink(workdir / f"lock-{writer}"), schema, flush_rows=10**9,
                                flush_every_s=3600, max_buffer_rows=10**9,
                                writer="process" if writer == "process" else "thread",
                                feature_share=engine.cfg.prediction_log.feature_share)
            engine.prediction_log = log
            engine.predict({"user_id": users[0]})
            log.flush()  # the writer process starts at the first flush, once per worker: not timed
            for k in range(n):
                engine.predict({"user_id": users[k % len(users)]})
            engine.prediction_log = None
            freeze_startup_heap()  # as in a service worker: no collection in the timed part
            done = threading.Event()

            def flush(log: PredictionLog = log, done: threading.Event = done) -> None:
                log.flush()
                done.set()

            flusher = threading.Thread(target=flush)
            gaps: list[float] = []
            started = last = time.perf_counter()
            if writer == "loop":  # the main thread runs an event loop of short callbacks ("requests")
                gaps, started = _loop_gaps(log, flusher, done)
            else:
                flusher.start()
                while not done.is_set():
                    now = time.perf_counter()
                    if now - last > 0.0002:
                        gaps.append(now - last)
                    last = now
            run = {"flush_ms": (time.perf_counter() - started) * 1e3, "stalled_ms": sum(gaps) * 1e3,
                   "stalls": len(gaps), "longest_ms": max(gaps, default=0.0) * 1e3}
            flusher.join()
            log.close()
            gc.enable()
            print(json.dumps({"round": i + 1, "writer": writer, **run}), flush=True)
            out[writer].append(run)
    median = {w: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for w, runs in out.items()}
    return {"answers_per_flush": n, "rounds": out, "median": median}


def _loop_gaps(log: Any, flusher: Any, done: Any) -> tuple[list[float], float]:
    """``--lock`` with the log attached to an event loop in this thread (as in a service worker):
    the loop runs short callbacks back to back while ``flusher`` flushes; a gap between two of them
    over 0.2 ms is a stall (waiting for the lock, or a reading step of the log taking its turn)."""
    import asyncio
    import time

    loop = asyncio.new_event_loop()
    log.attach_loop(loop)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def request() -> None:
        now = time.perf_counter()
        if now - last[0] > 0.0002:
            gaps.append(now - last[0])
        last[0] = now
        if done.is_set():
            loop.stop()
        else:
            loop.call_soon(request)

    started = time.perf_counter()
    loop.call_soon(flusher.start)  # the flush starts with the loop running
    loop.call_soon(request)
    loop.run_forever()
    loop.close()
    return gaps, started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--inprocess", action="store_true", help="the engine without HTTP (see above)")
    parser.add_argument("--lock", action="store_true", help="a flush's stalls of a busy thread (see above)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-predlog-"))
    shop = _shop(args.users)
    model_path = workdir / "model.pkl"
    _train(shop, model_path)
    if args.lock or args.inprocess:  # in process, no server
        in_process = lock_stalls if args.lock else inprocess
        found = {"users": args.users, **in_process(workdir, model_path, shop, args.rounds),
                 "load_average": os.getloadavg()}
        print(json.dumps({k: v for k, v in found.items() if k != "rounds"}, indent=2))
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(found, indent=2))
        return found
    rounds: list[dict[str, Any]] = []
    for i in range(args.rounds):
        order = [False, True] if i % 2 == 0 else [True, False]
        run = {("on" if on else "off"): measure(on, workdir, model_path, shop, args.seconds) for on in order}
        run["ratio"] = run["on"]["requests_per_s"] / run["off"]["requests_per_s"]
        run["cpu_ratio"] = run["off"]["server_cpu_us"] / run["on"]["server_cpu_us"]
        print(json.dumps({"round": i + 1, **run}), flush=True)
        rounds.append(run)
    median = {k: {m: statistics.median(r[k][m] for r in rounds)
                  for m in ("requests_per_s", "p99_ms", "server_cpu_us")} for k in ("off", "on")}
    results: dict[str, Any] = {
        "users": args.users, "seconds": args.seconds, "rounds": rounds, "median": median,
        "ratio_of_medians": median["on"]["requests_per_s"] / median["off"]["requests_per_s"],
        "median_of_ratios": statistics.median(float(r["ratio"]) for r in rounds),
        "median_of_cpu_ratios": statistics.median(float(r["cpu_ratio"]) for r in rounds),
        "load_average": os.getloadavg()}
    print(json.dumps({k: v for k, v in results.items() if k != "rounds"}, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
