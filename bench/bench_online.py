"""Benchmark: the online feature vector of one user (:func:`features.live.profile.online_features`).

Profiles come from the random clickstream of :mod:`bench.bench_features` (60 days, log-normal
activity), normalised with :func:`features.live.profile.normalize_event` and held as live profiles. The
step computes every registry feature of each profile at the snapshot time; the reported cost is
CPU microseconds per user vector (median of ``--repeat`` rounds over all profiles), for the typical
profile and for the heaviest ones (the 1% with the most events).

    .venv/bin/python -m bench.bench_online --users 2000 --events 60000 --repeat 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def _profiles(n_events: int, n_users: int) -> list[Any]:
    from bench.bench_features import make_events
    from features.live.profile import UserProfile, normalize_event

    frame = make_events(n_events, n_users, seed=1)
    profiles: dict[str, Any] = {}
    for row in frame.to_dicts():
        user_id, record = normalize_event(row)
        profiles.setdefault(user_id, UserProfile(user_id)).events.append(record)
    return list(profiles.values())


def _per_user_us(profiles: list[Any], as_of_us: int, repeat: int) -> float:
    """Median over rounds of the mean CPU microseconds per user vector (CPU time of this process:
    steadier than wall time when other processes share the cores)."""
    from features.live.profile import online_features

    rounds = []
    for _ in range(repeat):
        started = time.process_time()
        for profile in profiles:
            online_features(profile, as_of_us)
        rounds.append((time.process_time() - started) / len(profiles) * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from bench.bench_features import AS_OF
    from features.live.profile import to_epoch_us

    profiles = _profiles(args.events, args.users)
    as_of_us = to_epoch_us(AS_OF)
    heavy = sorted(profiles, key=lambda p: -len(p.events))[:max(1, len(profiles) // 100)]
    report = {
        "users": len(profiles),
        "events_per_user_median": statistics.median(len(p.events) for p in profiles),
        "events_per_user_heavy": statistics.mean(len(p.events) for p in heavy),
        "us_per_user": _per_user_us(profiles, as_of_us, args.repeat),
        "us_per_heavy_user": _per_user_us(heavy, as_of_us, args.repeat * 5),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['users']} profiles, median {report['events_per_user_median']:.0f} events "
          f"(heaviest 1%: {report['events_per_user_heavy']:.0f})")
    print(f"online feature vector: {report['us_per_user']:.1f} µs/user, "
          f"heaviest 1%: {report['us_per_heavy_user']:.1f} µs/user")


if __name__ == "__main__":
    main()
