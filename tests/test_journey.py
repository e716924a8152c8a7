"""Journey stages: every transition of the table, inactivity, ordering, batch == incremental."""

from __future__ import annotations

import random
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from features.schema import EVENT_TYPES
from features.segments.config import load_segments_config
from features.segments.journey import JourneyState, journey_stages, machine_for
from propensity.errors import ConfigError

CFG = load_segments_config()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TABLE = {(src, event): dst for src, event, dst in CFG.journey.transitions}
LIMITS = {lim.stage: lim.after_days for lim in CFG.journey.inactivity}  # stage -> days


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"event_id": pl.String, "user_id": pl.String,
                                      "timestamp": pl.Datetime("us", "UTC"), "event": pl.String})


def stage_both(rows: list[dict], as_of: datetime, user: str = "u") -> tuple[str, str]:
    batch = dict(journey_stages(frame(rows), as_of, CFG).iter_rows())
    state = JourneyState.from_events(rows, CFG)
    return batch.get(user, CFG.journey.initial_stage), state.stage_at(as_of)


def events_at(names: list[str], gaps_days: list[float] | None = None) -> list[dict]:
    """Events one hour apart (or after the given gaps in days), ids in time order."""
    rows, t = [], T0
    for i, name in enumerate(names):
        if i:
            t += timedelta(days=gaps_days[i]) if gaps_days else timedelta(hours=1)
        rows.append({"event_id": f"e{i:04d}", "user_id": "u", "timestamp": t, "event": name})
    return rows


def path_to(stage: str) -> list[str]:
    """Shortest event sequence (one hour apart) reaching ``stage`` from the first event, found by
    breadth-first search over the table itself."""
    first = {}
    for event in EVENT_TYPES:
        first.setdefault(TABLE.get((CFG.journey.initial_stage, event), CFG.journey.initial_stage), [event])
    queue = deque(first.items())
    seen = dict(first)
    while queue:
        current, path = queue.popleft()
        if current == stage:
            return path
        for event in EVENT_TYPES:
            nxt = TABLE.get((current, event), TABLE.get((current, "*"), current))
            if nxt not in seen:
                seen[nxt] = path + [event]
                queue.append((nxt, seen[nxt]))
    raise AssertionError(f"stage {stage} is unreachable")


def event_for(src: str, event: str) -> str:
    """A concrete event for a table row; for '*', one without its own row from ``src``."""
    if event != "*":
        return event
    return next(e for e in EVENT_TYPES if (src, e) not in TABLE)


@pytest.mark.parametrize("src,event,dst", CFG.journey.transitions, ids=lambda v: str(v))
def test_every_transition_of_the_table(src: str, event: str, dst: str) -> None:
    name = event_for(src, event)
    if src in LIMITS:  # an inactivity stage is entered by the gap before the event
        rows = events_at(["page_view", name], [0.0, LIMITS[src] + 0.5])
    else:
        prefix = path_to(src)
        rows = events_at(prefix + [name])
        before = rows[-1]["timestamp"] - timedelta(minutes=30)
        assert stage_both(rows[:-1], before) == (src, src)
    as_of = rows[-1]["timestamp"] + timedelta(hours=1)
    assert stage_both(rows, as_of) == (dst, dst)


# Hand-written scenarios (independent of the BFS above): event names -> expected stage 1 h after.
SCENARIOS = [
    (["page_view"], "awareness"),
    (["page_view", "scroll", "video_play"], "awareness"),
    (["page_view", "product_view"], "consideration"),
    (["search", "add_to_cart"], "decision"),
    (["product_view", "add_to_cart", "remove_from_cart"], "consideration"),
    (["product_view", "add_to_cart", "purchase"], "retention"),
    (["purchase", "page_view", "product_view"], "retention"),
    (["purchase", "add_to_cart"], "decision"),
    (["page_view", "some_unknown_event"], "awareness"),
]


@pytest.mark.parametrize("names,expected", SCENARIOS)
def test_scenarios(names: list[str], expected: str) -> None:
    rows = events_at(names)
    assert stage_both(rows, rows[-1]["timestamp"] + timedelta(hours=1)) == (expected, expected)


@pytest.mark.parametrize("idle_days,expected", [(20.9, "retention"), (21.0, "at_risk"), (59.9, "at_risk"),
                                                (60.0, "lapsed"), (400.0, "lapsed")])
def test_inactivity_at_as_of_moves_to_at_risk_then_lapsed(idle_days: float, expected: str) -> None:
    rows = events_at(["product_view", "purchase"])
    assert stage_both(rows, rows[-1]["timestamp"] + timedelta(days=idle_days)) == (expected, expected)


def test_a_lapsed_customer_who_returns_restarts_at_awareness() -> None:
    rows = events_at(["product_view", "purchase", "page_view"], [0, 0.1, 90.0])
    assert stage_both(rows, rows[-1]["timestamp"] + timedelta(hours=1)) == ("awareness", "awareness")


def test_ties_in_time_are_ordered_by_event_id() -> None:
    t = T0 + timedelta(days=1)
    base = {"user_id": "u", "timestamp": t}
    # purchase (e1) before add_to_cart (e2): awareness -> retention -> decision
    rows = [{**base, "event_id": "e2", "event": "add_to_cart"},
            {**base, "event_id": "e1", "event": "purchase"}]
    assert stage_both(rows, t + timedelta(hours=1)) == ("decision", "decision")
    # add_to_cart (e1) before purchase (e2): awareness -> decision -> retention
    rows = [{**base, "event_id": "e1", "event": "add_to_cart"},
            {**base, "event_id": "e2", "event": "purchase"}]
    assert stage_both(rows, t + timedelta(hours=1)) == ("retention", "retention")


def test_events_at_or_after_as_of_are_ignored_and_no_history_is_the_initial_stage() -> None:
    rows = events_at(["page_view", "product_view", "purchase"])
    assert stage_both(rows, rows[1]["timestamp"]) == ("awareness", "awareness")
    assert stage_both(rows, rows[0]["timestamp"]) == ("awareness", "awareness")
    assert journey_stages(frame(rows), rows[0]["timestamp"], CFG).height == 0


def test_a_late_event_is_replayed_into_place() -> None:
    rows = events_at(["page_view", "product_view", "add_to_cart", "remove_from_cart", "purchase"])
    in_order = JourneyState.from_events(rows, CFG)
    late = JourneyState.from_events(rows[:2] + rows[3:], CFG)
    assert late.apply(rows[2]) is True
    assert late.apply(rows[2]) is False  # repeated event_id
    for back in range(6):
        t = rows[-1]["timestamp"] + timedelta(hours=1) - timedelta(hours=back)
        assert late.stage_at(t) == in_order.stage_at(t)


NAMES = ["page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout_start", "purchase",
         "search", "scroll", "custom_x"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 200 * 24), st.sampled_from(NAMES)),
                min_size=1, max_size=80),
       st.integers(0, 10**6), st.integers(0, 260 * 24))
def test_batch_and_incremental_stages_agree_for_any_arrival_order(raw, seed, as_of_hours) -> None:
    rows = [{"event_id": f"e{random.Random(i).randrange(100):02d}{i}", "user_id": f"u{u}",
             "timestamp": T0 + timedelta(hours=h), "event": e} for i, (u, h, e) in enumerate(raw)]
    random.Random(seed).shuffle(rows)
    as_of = T0 + timedelta(hours=as_of_hours)
    batch = dict(journey_stages(frame(rows), as_of, CFG).iter_rows())
    states: dict[str, JourneyState] = {}
    for row in rows:
        states.setdefault(row["user_id"], JourneyState(CFG)).apply(row)
    for user, state in states.items():
        assert state.stage_at(as_of) == batch.get(user, CFG.journey.initial_stage)


def test_batch_and_incremental_agree_for_many_users_of_uneven_history_length() -> None:
    # Hundreds of users, so the batch fold runs its vectorised steps and its long-tail loop.
    rng = random.Random(11)
    rows = []
    for u in range(300):
        n = rng.choice([1, 2, 5, 20, 60, 200]) if u % 50 else 1500
        for i in range(n):
            rows.append({"event_id": f"e{u}-{i}", "user_id": f"u{u}", "event": rng.choice(NAMES),
                         "timestamp": T0 + timedelta(hours=rng.randrange(0, 300 * 24))})
    as_of = T0 + timedelta(days=250)
    batch = dict(journey_stages(frame(rows), as_of, CFG).iter_rows())
    states: dict[str, JourneyState] = {}
    for row in sorted(rows, key=lambda r: (r["timestamp"], r["event_id"])):
        states.setdefault(row["user_id"], JourneyState(CFG)).apply(row)
    incremental = {user: state.stage_at(as_of) for user, state in states.items()}
    assert {u: s for u, s in incremental.items() if u in batch} == batch
    assert {incremental[u] for u in set(incremental) - set(batch)} <= {CFG.journey.initial_stage}
    assert len(set(batch.values())) >= 4


def test_batch_stages_are_exact_when_user_hashes_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch groups users by a 64-bit hash; if two users shared one, the exact order takes over."""
    import features.segments.journey as journey

    rng = random.Random(5)
    rows = [{"event_id": f"e{u}-{i}", "user_id": f"u{u}", "event": rng.choice(NAMES),
             "timestamp": T0 + timedelta(hours=rng.randrange(0, 40 * 24))}
            for u in range(40) for i in range(rng.randrange(1, 30))]
    as_of = T0 + timedelta(days=30)
    expected = journey_stages(frame(rows), as_of, CFG)
    monkeypatch.setattr(journey, "_user_hash", lambda user_id: pl.lit(7, dtype=pl.UInt64))  # all collide
    collided = journey_stages(frame(rows), as_of, CFG)
    assert collided.equals(expected)
    assert collided["user_id"].is_sorted()


def test_machine_stages_follow_the_config() -> None:
    assert machine_for(CFG).stages == ("awareness", "consideration", "decision", "retention", "at_risk",
                                       "lapsed")


def write_cfg(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(Path("configs/segments.yaml").read_text())
    mutate(data)
    path = tmp_path / "segments.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_rows_for_the_same_stage_and_event_are_a_config_error(tmp_path: Path) -> None:
    row = ["awareness", "search", "decision"]
    path = write_cfg(tmp_path, lambda d: d["journey"]["transitions"].append(row))
    with pytest.raises(ConfigError, match="second transition from 'awareness' on 'search'"):
        load_segments_config(path)


def test_a_transition_on_an_unknown_event_is_a_config_error(tmp_path: Path) -> None:
    row = ["awareness", "teleport", "decision"]
    path = write_cfg(tmp_path, lambda d: d["journey"]["transitions"].append(row))
    with pytest.raises(ConfigError, match="unknown event 'teleport'"):
        load_segments_config(path)


def test_inactivity_limits_must_be_longest_first(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, lambda d: d["journey"]["inactivity"].reverse())
    with pytest.raises(ConfigError, match="journey.inactivity"):
        load_segments_config(path)
