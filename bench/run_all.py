"""Run every benchmark in turn (`make bench`); each prints its own table. Pass --quick for small sizes.

    .venv/bin/python -m bench.run_all [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

_LOG_ON_OFF = ["--variant", "log_on=", "--variant", "log_off=prediction_log: {enabled: false}"]
# name -> (module, full-size arguments, quick arguments)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "generate": ("bench.bench_generate", [], ["--users", "20000", "--repeat", "1"]),
    "features": ("bench.bench_features", [], ["--events", "1000000", "--users", "40000", "--repeat", "1"]),
    "online": ("bench.bench_online", [], ["--users", "500", "--events", "15000", "--repeat", "3"]),
    "segments": ("bench.bench_segments", [], ["--users", "100000"]),
    "training": ("bench.bench_training", [], ["--rows", "50000", "--search-seconds", "20", "--repeats", "1"]),
    "fairness": ("bench.bench_fairness", [], ["--rows", "5000", "--train-rows", "20000"]),
    "gate": ("bench.bench_gate", [], ["--seeds", "1-3", "--users", "2000"]),
    "serving": ("bench.bench_serving", [], ["--users", "2000", "--seconds", "5"]),
    "predlog": ("bench.bench_predlog", [], ["--rounds", "1", "--seconds", "5", "--users", "500"]),
    # issue 12: the service beside BentoML's ceilings (one same-run table), its own per-request work
    # in-process, and resident memory over a 10-minute run (quick: 2 minutes)
    "ceiling": ("bench.bench_ceiling", ["--rounds", "3", "--seconds", "10", "--soak-minutes", "10"],
                ["--rounds", "1", "--seconds", "5", "--soak-minutes", "2"]),
    # settings of the service side by side (here: the prediction log on and off)
    "variants": ("bench.bench_variants", [*_LOG_ON_OFF], [*_LOG_ON_OFF, "--rounds", "1", "--seconds", "3"]),
    "engine": ("bench.bench_engine", [], ["--requests", "4000", "--rounds", "1"]),
    "asgi": ("bench.bench_asgi", [], ["--requests", "2000", "--rounds", "1"]),
    "walk": ("bench.bench_walk", [], ["--sizes", "1", "16", "--repeats", "50"]),
    "experiments": ("bench.bench_experiments", [], ["--rows", "1000000"]),
    "content": ("bench.bench_content", ["--rounds", "4", "--seconds", "8"],
                ["--rounds", "2", "--seconds", "3"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (a smoke run, not for BENCHMARKS.md)")
    parser.add_argument("--only", nargs="*", choices=list(BENCHES), default=None)
    args = parser.parse_args()
    failed = []
    for name, (module, full, quick) in BENCHES.items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name}: python -m {module} {' '.join(quick if args.quick else full)}", flush=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", module, *(quick if args.quick else full)])
        print(f"--- {name}: exit {done.returncode} after {time.perf_counter() - started:.0f} s", flush=True)
        if done.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
