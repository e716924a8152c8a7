"""`propensity serve` in several settings, same rounds: which setting moves req/s, p99 and CPU.

    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_variants --rounds 4 \\
        --variant 'on=' --variant 'off=prediction_log: {enabled: false}' \\
        --variant 'before=@/tmp/before' [--seconds 10] [--json out.json]

Each ``--variant NAME=SETTINGS`` is YAML added to the serving configuration (after
``access_log: false``; empty: the default configuration), or ``NAME=@DIR``: the default
configuration served by the code of another checkout (``git archive COMMIT | tar -x -C DIR``),
``NAME=@DIR:SETTINGS`` both. Per round, in a rotated order so the machine's load hits every
variant alike: start the server (1 worker, in-process store), load 2,000 live users, 3 s of
warm-up, then wrk for ``--seconds`` at 2 and at 16 connections. Reports per variant and round
req/s, p99 and the server's CPU time per answered request (its process tree), then the medians.
Noise on this machine is large (the same configuration's CPU a request moves by ±7-10% between
server starts): compare medians of several rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.support import ROOT, ingest, serve, shop, stop, train, wait_ready, wrk


def parse_variant(text: str) -> tuple[str, Path, str]:
    """``NAME=SETTINGS`` / ``NAME=@DIR`` / ``NAME=@DIR:SETTINGS`` -> (name, code folder, YAML)."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--variant {text!r}: expected NAME=SETTINGS or NAME=@DIR")
    code = ROOT
    if rest.startswith("@"):
        folder, _, rest = rest[1:].partition(":")
        code = Path(folder)
        if not (code / "propensity").is_dir():
            raise SystemExit(f"--variant {name}: {code} is not a checkout of this project")
    return name, code, rest


def measure(name: str, code: Path, settings: str, workdir: Path, model: Path, data: tuple,
            seconds: int) -> dict[str, Any]:
    config = workdir / f"{name}.yaml"
    config.write_text("access_log: false\n" + settings + "\n")
    home = workdir / name
    home.mkdir(exist_ok=True)
    proc, url = serve(model, home, config, code)
    users = sorted({e["user_id"] for e in data[0]})
    try:
        wait_ready(url, proc)
        ingest(url, data[1], data[0])
        wrk(url, users, 3, workdir)
        return {"c2": wrk(url, users, seconds, workdir, connections=2, server_pid=proc.pid),
                "c16": wrk(url, users, seconds, workdir, server_pid=proc.pid)}
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME=SETTINGS or NAME=@DIR[:SETTINGS]")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    workdir = Path(tempfile.mkdtemp(prefix="bench-variants-"))
    data = shop(args.users)
    model = workdir / "model.pkl"
    train(data, model)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    for r in range(args.rounds):
        for name, code, settings in variants[r % len(variants):] + variants[:r % len(variants)]:
            got = measure(name, code, settings, workdir, model, data, args.seconds)
            runs[name].append(got)
            c2, c16 = got["c2"], got["c16"]
            print(f"round {r + 1} {name:>12}: c2 {c2['requests_per_s']:7,.0f} req/s "
                  f"p99 {c2['p99_ms']:6.2f} ms | c16 {c16['requests_per_s']:7,.0f} req/s "
                  f"p99 {c16['p99_ms']:6.2f} ms, CPU {c16['server_cpu_us']:4.0f} µs/req | "
                  f"non-2xx {c2['non_2xx'] + c16['non_2xx']}", flush=True)
    medians = {name: {f"{c}_{m}": statistics.median(run[c][m] for run in rs)
                      for c in ("c2", "c16") for m in ("requests_per_s", "p99_ms", "server_cpu_us")}
               for name, rs in runs.items()}
    for name, m in medians.items():
        print(f"median {name:>12}: c2 p99 {m['c2_p99_ms']:.2f} ms | "
              f"c16 {m['c16_requests_per_s']:,.0f} req/s, p99 {m['c16_p99_ms']:.2f} ms, "
              f"CPU {m['c16_server_cpu_us']:.0f} µs/req")
    results = {"rounds": args.rounds, "seconds": args.seconds, "runs": runs, "median": medians}
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
