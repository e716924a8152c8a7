"""Keep Python's cyclic garbage collector out of the request path.

Measured on this service: its tail latency was the collector walking the worker's heap (BentoML,
MLflow, pandas, the model, the per-user caches), not the requests' own work. The policy:

1. at start-up, collect once and freeze the heap (``gc.freeze``): those objects are never scanned
   again (they are still freed by reference counting when they die);
2. turn the automatic collector off, so no request pays for a collection it did not cause;
3. every ``every_s`` seconds, between requests on the event loop, collect what was allocated since
   the last round (cheap: only the survivors of a few seconds) and freeze the survivors.

Cyclic garbage made by requests is therefore collected within ``every_s``. What could leak is only
a reference cycle among objects that were alive at a round and die later; the service's caches hold
acyclic data (profiles, answers), and the 10-minute memory run in bench/bench_serving.py checks it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class GcStats:
    """Rounds run and the time they took (seconds), for the benchmark and tests."""

    rounds: int = 0
    collected: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0


STATS = GcStats()


def freeze_startup_heap() -> None:
    """Collect, freeze everything alive, and turn the automatic collector off (see the module doc)."""
    gc.collect()
    gc.freeze()
    gc.disable()


def collect_round() -> int:
    """Collect the objects allocated since the last round, freeze the survivors; returns the number
    of unreachable objects found."""
    started = time.perf_counter()
    found = gc.collect()
    gc.freeze()
    took = time.perf_counter() - started
    STATS.rounds += 1
    STATS.collected += found
    STATS.seconds += took
    STATS.slowest_s = max(STATS.slowest_s, took)
    return found


def schedule_collection(every_s: float) -> None:
    """Run :func:`collect_round` every ``every_s`` seconds on the running event loop.

    ``every_s`` <= 0 leaves Python's automatic collector in charge instead (re-enabled here).
    """
    if every_s <= 0:
        gc.enable()
        return
    call_every(every_s, collect_round)


def call_every(every_s: float, round_: Callable[[], object]) -> None:
    """Run ``round_`` every ``every_s`` seconds on the running event loop, between requests (the
    next round is scheduled even when one raises)."""
    loop = asyncio.get_running_loop()

    def tick() -> None:
        try:
            round_()
        finally:
            loop.call_later(every_s, tick)

    loop.call_later(every_s, tick)
