"""Journey stages: a state machine driven by a transition table, in batch and incrementally.

Semantics (the same in both paths):
- a user's events before ``as_of`` are taken in order of ``timestamp``, ties by ``event_id``;
- the first event starts from ``journey.initial_stage``;
- before each later event, the gap since the previous event is checked against the inactivity
  limits: reaching one (``gap >= after_days``) moves the user to that limit's stage (the longest
  limit reached wins); then the event's row ``[stage, event, to]`` of the table applies (``*``
  matches any event without its own row; no row leaves the stage unchanged);
- at ``as_of`` the same inactivity check runs on the time since the last event.

Every event therefore acts as a fixed map stages -> stages (a row of a small table). The batch path
folds all users at once, one numpy step per event position, never a Python loop over events;
:class:`JourneyState` folds one event at a time and replays only the tail when an event arrives
out of order.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from features.ingest.eventtime import US_PER_DAY, epoch_us
from features.segments.config import ANY_EVENT, JourneyConfig, SegmentsConfig, default_segments_config


@dataclass(frozen=True)
class JourneyMachine:
    """The transition table compiled to integer arrays.

    ``step[code][gap_class][stage]`` is the stage after an event of ``code`` arriving ``gap_class``
    after the previous event; ``idle[gap_class][stage]`` applies the inactivity limits alone.
    """

    stages: tuple[str, ...]
    event_codes: dict[str, int]  # named events; any other event has code len(event_codes)
    limits_us: tuple[int, ...]  # longest first; gap class j + 1 means limits_us[j] was reached
    initial: int
    step: tuple[tuple[tuple[int, ...], ...], ...]
    idle: tuple[tuple[int, ...], ...]

    @classmethod
    def from_config(cls, cfg: JourneyConfig) -> JourneyMachine:
        stages = tuple(cfg.stages)
        index = {name: i for i, name in enumerate(stages)}
        named = sorted({event for _, event, _ in cfg.transitions if event != ANY_EVENT})
        codes = {name: i for i, name in enumerate(named)}
        other = len(codes)
        table = {(src, event): dst for src, event, dst in cfg.transitions}
        moves = []
        for name in [*named, None]:
            row = []
            for stage in stages:
                dst = table.get((stage, name)) if name is not None else None
                if dst is None:
                    dst = table.get((stage, ANY_EVENT), stage)
                row.append(index[dst])
            moves.append(row)
        limits = tuple(round(lim.after_days * US_PER_DAY) for lim in cfg.inactivity)
        idle = [list(range(len(stages)))] + [[index[lim.stage]] * len(stages) for lim in cfg.inactivity]
        step = tuple(tuple(tuple(moves[code][idle[g][s]] for s in range(len(stages)))
                           for g in range(len(idle))) for code in range(other + 1))
        return cls(stages, codes, limits, index[cfg.initial_stage], step, tuple(tuple(r) for r in idle))

    def gap_class(self, gap_us: int) -> int:
        """0 when no inactivity limit is reached, else 1 + index of the longest limit reached."""
        for j, limit in enumerate(self.limits_us):
            if gap_us >= limit:
                return j + 1
        return 0

    def code(self, event: str) -> int:
        return self.event_codes.get(event, len(self.event_codes))


_MACHINES: dict[int, tuple[object, JourneyMachine]] = {}


def machine_for(cfg: SegmentsConfig | JourneyConfig | JourneyMachine | None = None) -> JourneyMachine:
    """The compiled machine of a config, cached by config object (configs are treated as immutable)."""
    if isinstance(cfg, JourneyMachine):
        return cfg
    hit = _MACHINES.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    jcfg = (default_segments_config().journey if cfg is None
            else cfg.journey if isinstance(cfg, SegmentsConfig) else cfg)
    machine = JourneyMachine.from_config(jcfg)
    _MACHINES[id(cfg)] = (cfg, machine)  # keeps cfg alive, so its id is not reused
    return machine


_TAIL_USERS = 16  # below this many users still folding, a plain loop beats numpy's per-call overhead


def _fold_users(step_base: np.ndarray, first: np.ndarray, flat_step: np.ndarray, initial: int) -> np.ndarray:
    """Final stage of each user after folding their events in order.

    ``step_base[i]`` is the offset into ``flat_step`` of row i's map (users contiguous, in time order;
    ``first[i]`` marks a user's first row), so the next stage is ``flat_step[step_base[i] + stage]``.
    Step k updates, in one numpy operation, every user with more than k events: the work is
    O(events) and the number of numpy calls is the longest history (a long tail is finished in a
    plain loop over the few users left).
    """
    starts = np.flatnonzero(first)
    lengths = np.diff(np.append(starts, len(step_base)))
    order = np.argsort(-lengths, kind="stable")
    begin, length = starts[order], lengths[order]
    ascending = length[::-1]
    state = np.full(len(starts), initial, dtype=np.int64)
    k = 0
    while True:
        active = len(length) - int(np.searchsorted(ascending, k, side="right"))
        if active == 0:
            break
        if active <= _TAIL_USERS:
            table = flat_step.tolist()
            for i in range(active):
                stage = int(state[i])
                for offset in step_base[begin[i] + k:begin[i] + length[i]].tolist():
                    stage = table[offset + stage]
                state[i] = stage
            break
        state[:active] = flat_step[step_base[begin[:active] + k] + state[:active]]
        k += 1
    out = np.empty_like(state)
    out[order] = state
    return out


def _user_hash(user_id: pl.Expr) -> pl.Expr:
    """64-bit hash that groups a user's events in the batch sort (collisions are detected)."""
    return user_id.hash(seed=0)


def journey_stages(events: pl.DataFrame | pl.LazyFrame, as_of: datetime,
                   cfg: SegmentsConfig | JourneyConfig | JourneyMachine | None = None) -> pl.DataFrame:
    """Journey stage at ``as_of`` of every user with at least one event before ``as_of``.

    ``events`` needs ``user_id``, ``timestamp`` (UTC datetime), ``event`` and ``event_id``.
    Returns ``[user_id, journey_stage]`` sorted by ``user_id``; users without events are absent
    (their stage is the initial stage, see :meth:`JourneyState.stage_at`).
    """
    machine = machine_for(cfg)
    as_of_us = epoch_us(as_of)
    ev = (events.lazy()
          .select("user_id", "event_id", "event", pl.col("timestamp").dt.epoch("us").alias("t"))
          .filter(pl.col("t") < as_of_us)
          # codes before sorting: the sort then moves an int instead of the event name
          .with_columns(pl.col("event").replace_strict(machine.event_codes, default=len(machine.event_codes),
                                                       return_dtype=pl.Int32).alias("code"),
                        # users are grouped by a 64-bit hash: sorting integers is ~4x faster than strings
                        _user_hash(pl.col("user_id")).alias("h"))
          .select("user_id", "h", "t", "code", "event_id")
          .collect()
          .sort(["h", "t", "event_id"]))  # eager: the lazy sort of these columns took twice as long
    n_stages = len(machine.stages)
    if ev.height == 0:
        return pl.DataFrame(schema={"user_id": pl.String, "journey_stage": pl.String})
    starts = (ev["user_id"] != ev["user_id"].shift(1)).fill_null(True)
    if (starts & (ev["h"] == ev["h"].shift(1)).fill_null(False)).any():
        # two users share a hash (about 1e-9 for 200k users): fall back to the exact order
        ev = ev.sort(["user_id", "t", "event_id"])
        starts = (ev["user_id"] != ev["user_id"].shift(1)).fill_null(True)
    users = ev["user_id"]
    first = starts.to_numpy()
    t = ev["t"].to_numpy()
    gap = np.diff(t, prepend=t[0])
    gap_class = np.zeros(len(t), dtype=np.intp)
    for j in range(len(machine.limits_us) - 1, -1, -1):  # shortest first so the longest wins
        gap_class[gap >= machine.limits_us[j]] = j + 1
    gap_class[first] = 0
    flat_step = np.asarray(machine.step, dtype=np.int64).reshape(-1)
    step_base = (ev["code"].to_numpy().astype(np.int64) * len(machine.idle) + gap_class) * n_stages
    state = _fold_users(step_base, first, flat_step, machine.initial)
    last_idx = np.append(np.flatnonzero(first)[1:] - 1, len(t) - 1)
    idle_gap = as_of_us - t[last_idx]
    idle_class = np.zeros(len(state), dtype=np.intp)
    for j in range(len(machine.limits_us) - 1, -1, -1):
        idle_class[idle_gap >= machine.limits_us[j]] = j + 1
    final = np.asarray(machine.idle, dtype=np.intp)[idle_class, state]
    names = np.asarray(machine.stages, dtype=object)[final]
    return pl.DataFrame({"user_id": users.filter(pl.Series(first)),
                         "journey_stage": pl.Series(names, dtype=pl.String)}).sort("user_id")


class JourneyState:
    """The journey stage of one user, fed one event at a time (``apply``), queried at any time.

    Events normally arrive in time order (O(1) per event). An event older than the latest one is
    inserted in place and only the events after it are re-folded, so a late event costs
    O(events after it). A repeated ``event_id`` is ignored.
    """

    __slots__ = ("_m", "_keys", "_times", "_stages", "_codes", "_seen")

    def __init__(self, cfg: SegmentsConfig | JourneyConfig | JourneyMachine | None = None) -> None:
        self._m = machine_for(cfg)
        self._keys: list[tuple[int, str]] = []
        self._times: list[int] = []
        self._codes: list[int] = []
        self._stages: list[int] = []  # stage after each event
        self._seen: set[str] = set()

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]],
                    cfg: SegmentsConfig | JourneyConfig | JourneyMachine | None = None) -> JourneyState:
        """A state with ``events`` applied (any order)."""
        state = cls(cfg)
        for event in events:
            state.apply(event)
        return state

    @property
    def n_events(self) -> int:
        return len(self._keys)

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Apply one event (``timestamp``, ``event``, ``event_id``); False for a repeated id."""
        event_id = event.get("event_id")
        eid = "" if event_id is None else str(event_id)
        if event_id is not None:
            if eid in self._seen:
                return False
            self._seen.add(eid)
        key = (epoch_us(event["timestamp"]), eid)
        code = self._m.code(event["event"])
        if not self._keys or key > self._keys[-1]:
            self._keys.append(key)
            self._times.append(key[0])
            self._codes.append(code)
            self._stages.append(self._next(len(self._keys) - 1))
            return True
        i = bisect_right(self._keys, key)
        self._keys.insert(i, key)
        self._times.insert(i, key[0])
        self._codes.insert(i, code)
        self._stages.insert(i, 0)
        for j in range(i, len(self._keys)):
            self._stages[j] = self._next(j)
        return True

    def _next(self, j: int) -> int:
        m = self._m
        if j == 0:
            return m.step[self._codes[0]][0][m.initial]
        return m.step[self._codes[j]][m.gap_class(self._times[j] - self._times[j - 1])][self._stages[j - 1]]

    def stage_at(self, as_of: datetime | str | int) -> str:
        """The stage at ``as_of``: events before ``as_of`` only, then the inactivity limits.

        Without any event before ``as_of`` the stage is ``journey.initial_stage``.
        """
        now = epoch_us(as_of)
        i = bisect_left(self._times, now)
        m = self._m
        if i == 0:
            return m.stages[m.initial]
        return m.stages[m.idle[m.gap_class(now - self._times[i - 1])][self._stages[i - 1]]]
