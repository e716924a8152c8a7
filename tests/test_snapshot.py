"""Point-in-time snapshots: hand-computed cases per feature group, a brute-force reference, leakage."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from features.batch.snapshot import SNAPSHOT_SCHEMA, build_snapshot, build_snapshots, snapshot_times
from features.ingest.tables import EVENT_SCHEMA, USER_SCHEMA
from features.registry import FEATURE_NAMES, KEY_COLUMNS, WINDOWS_DAYS
from features.schema import DEVICES, EVENT_TYPES, SOURCES, age_band

AS_OF = datetime(2024, 3, 10, tzinfo=UTC)
WEEK = timedelta(days=7)


def _ev(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Clean events from partial dicts: ``t`` is hours relative to AS_OF (negative = before)."""
    full = []
    for i, r in enumerate(rows):
        row: dict[str, Any] = {c: None for c in EVENT_SCHEMA}
        row.update(event_id=f"e{i}", user_id="u1", event="page_view")
        row.update({k: v for k, v in r.items() if k != "t"})
        row["timestamp"] = AS_OF + timedelta(hours=r["t"])
        full.append(row)
    return pl.DataFrame(full, schema=EVENT_SCHEMA)


def _users(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame([{**{c: None for c in USER_SCHEMA}, **r} for r in rows], schema=USER_SCHEMA)


def _row(frame: pl.DataFrame, user: str = "u1") -> dict[str, Any]:
    rows = frame.filter(pl.col("user_id") == user).to_dicts()
    assert len(rows) == 1
    return rows[0]


# --- contract --------------------------------------------------------------------------------------


def test_snapshot_has_exactly_the_registry_columns_and_dtypes() -> None:
    snap = build_snapshot(_ev([{"t": -1}]), None, AS_OF, WEEK)
    assert snap.columns == [*KEY_COLUMNS, *FEATURE_NAMES, "label"]
    assert dict(snap.schema) == SNAPSHOT_SCHEMA
    assert snap["as_of"].to_list() == [AS_OF]


def test_rows_are_users_with_an_event_before_as_of() -> None:
    events = _ev([{"t": -5, "user_id": "a"}, {"t": 0, "user_id": "b"}, {"t": 3, "user_id": "c"},
                  {"t": -0.001, "user_id": "d"}])
    assert build_snapshot(events, None, AS_OF, WEEK)["user_id"].to_list() == ["a", "d"]


def test_naive_as_of_means_utc() -> None:
    events = _ev([{"t": -1}])
    naive = build_snapshot(events, None, AS_OF.replace(tzinfo=None), WEEK)
    assert naive.equals(build_snapshot(events, None, AS_OF, WEEK))


# --- hand-computed cases, one per feature group ----------------------------------------------------


def test_counts_respect_window_boundaries() -> None:
    # Windows are [as_of - W, as_of): an event exactly 24 h before counts in 1d, one at as_of never.
    events = _ev([
        {"t": -24, "event": "search"},          # 1d, 7d, 30d
        {"t": -24.001, "event": "search"},      # 7d, 30d
        {"t": -7 * 24, "event": "add_to_cart"},  # 7d, 30d (boundary)
        {"t": -30 * 24 - 0.5, "event": "add_to_cart"},  # history only
        {"t": -2, "event": "my_custom_event"},  # counts only in events_*
        {"t": 0, "event": "search"},            # at as_of: excluded
    ])
    row = _row(build_snapshot(events, None, AS_OF, WEEK))
    assert (row["search_1d"], row["search_7d"], row["search_30d"]) == (1.0, 2.0, 2.0)
    assert (row["add_to_cart_1d"], row["add_to_cart_7d"], row["add_to_cart_30d"]) == (0.0, 1.0, 1.0)
    assert (row["events_1d"], row["events_7d"], row["events_30d"]) == (2.0, 4.0, 4.0)
    assert row["purchase_30d"] == 0.0


def test_sessions_count_distinct_ids_with_an_event_in_the_window() -> None:
    events = _ev([
        {"t": -1, "session_id": "s1"}, {"t": -2, "session_id": "s1"},
        {"t": -30, "session_id": "s2"}, {"t": -3, "session_id": None},
        {"t": -200, "session_id": "s3"}, {"t": -20, "session_id": "s3"},  # s3 still active inside 1d
    ])
    row = _row(build_snapshot(events, None, AS_OF, WEEK))
    assert (row["sessions_1d"], row["sessions_7d"], row["sessions_30d"]) == (2.0, 3.0, 3.0)


def test_recency_in_days() -> None:
    events = _ev([
        {"t": -36, "event": "add_to_cart"}, {"t": -6, "event": "page_view"},
        {"t": -24 * 40, "event": "purchase", "value": 10.0},
    ])
    row = _row(build_snapshot(events, None, AS_OF, WEEK))
    assert row["days_since_last_event"] == 0.25
    assert row["days_since_last_add_to_cart"] == 1.5
    assert row["days_since_last_purchase"] == 40.0
    assert row["days_since_first_event"] == 40.0


def test_recency_is_null_when_it_never_happened() -> None:
    row = _row(build_snapshot(_ev([{"t": -1}]), None, AS_OF, WEEK))
    assert row["days_since_last_add_to_cart"] is None
    assert row["days_since_last_purchase"] is None
    assert row["hours_since_cart_abandoned"] is None
    assert row["cart_abandon_rate_30d"] is None
    assert row["avg_duration_s_30d"] is None
    assert row["device_share_mobile_30d"] is None


def test_engagement_time_on_product_pages_and_scroll_depth() -> None:
    events = _ev([
        {"t": -1, "page_type": "product", "duration_s": 30.0, "scroll_depth": 0.5},
        {"t": -2, "page_type": "product", "duration_s": 12.5, "scroll_depth": None},
        {"t": -3, "page_type": "home", "duration_s": 7.5, "scroll_depth": 0.2},
        {"t": -24 * 31, "page_type": "product", "duration_s": 1000.0, "scroll_depth": 1.0},  # outside 30d
    ])
    row = _row(build_snapshot(events, None, AS_OF, WEEK))
    assert row["product_time_s_30d"] == 42.5
    assert row["avg_duration_s_30d"] == pytest.approx(50.0 / 3)
    assert row["avg_scroll_depth_30d"] == pytest.approx(0.35)


def test_cart_and_purchase_values() -> None:
    events = _ev([
        {"t": -5, "event": "add_to_cart", "value": 19.99},
        {"t": -4, "event": "add_to_cart", "value": 5.01},
        {"t": -3, "event": "purchase", "value": 25.0},
        {"t": -24 * 45, "event": "purchase", "value": 100.0},
        {"t": -2, "event": "purchase", "value": None},
    ])
    row = _row(build_snapshot(events, None, AS_OF, WEEK))
    assert row["cart_value_30d"] == 25.0
    assert row["purchase_value_30d"] == 25.0
    assert row["purchases_total"] == 3.0
    assert row["purchase_value_total"] == 125.0


def test_open_cart_and_abandonment_rate() -> None:
    events = _ev([
        {"t": -50, "event": "add_to_cart", "session_id": "s1"},
        {"t": -49, "event": "purchase", "session_id": "s1"},      # s1: cart bought
        {"t": -30, "event": "add_to_cart", "session_id": "s2"},   # s2: abandoned
        {"t": -10, "event": "add_to_cart", "session_id": "s3"},   # s3: abandoned, latest cart
        {"t": -5, "event": "page_view", "session_id": "s4"},      # s4: no cart
    ])
    row = _row(build_snapshot(events, None, AS_OF, WEEK))
    assert row["cart_open"] == 1.0
    assert row["hours_since_cart_abandoned"] == 10.0
    assert row["cart_abandon_rate_30d"] == pytest.approx(2 / 3)


def test_cart_is_closed_by_a_later_purchase() -> None:
    events = _ev([{"t": -10, "event": "add_to_cart"}, {"t": -9, "event": "purchase"}])
    row = _row(build_snapshot(events, None, AS_OF, WEEK))
    assert (row["cart_open"], row["hours_since_cart_abandoned"]) == (0.0, None)


def test_device_and_source_mix_are_shares_of_known_values() -> None:
    events = _ev([
        {"t": -1, "device": "mobile", "source": "email"},
        {"t": -2, "device": "mobile", "source": None},
        {"t": -3, "device": "tv", "source": "ads"},
        {"t": -4, "device": None, "source": "ads"},
        {"t": -24 * 60, "device": "desktop", "source": "direct"},  # outside 30d
    ])
    row = _row(build_snapshot(events, None, AS_OF, WEEK))
    assert row["device_share_mobile_30d"] == pytest.approx(2 / 3)
    assert row["device_share_desktop_30d"] == 0.0
    assert row["source_share_ads_30d"] == pytest.approx(2 / 3)
    assert row["source_share_email_30d"] == pytest.approx(1 / 3)
    assert row["source_share_direct_30d"] == 0.0


def test_profile_attributes_band_and_tenure() -> None:
    events = _ev([{"t": -1, "user_id": u} for u in ("a", "b", "c")])
    users = _users([
        {"user_id": "a", "age": 44, "gender": "female", "country": "de", "loyalty_tier": "gold",
         "signup_date": date(2024, 2, 9), "consent": True},
        {"user_id": "b", "age": 65, "signup_date": date(2024, 3, 11)},  # signed up after as_of
    ])
    snap = build_snapshot(events, users, AS_OF, WEEK)
    a, b, c = (_row(snap, u) for u in ("a", "b", "c"))
    assert (a["age"], a["age_band"], a["gender"], a["country"], a["loyalty_tier"]) == (
        44.0, "35-44", "female", "de", "gold")
    assert a["tenure_days"] == 30.0
    assert (b["age_band"], b["tenure_days"]) == ("65+", None)
    assert (c["age"], c["age_band"], c["tenure_days"]) == (None, None, None)


def test_label_is_a_purchase_in_the_horizon() -> None:
    events = _ev([
        {"t": -1, "user_id": "at_start"}, {"t": 0, "user_id": "at_start", "event": "purchase"},
        {"t": -1, "user_id": "at_end"}, {"t": 7 * 24, "user_id": "at_end", "event": "purchase"},
        {"t": -1, "user_id": "inside"}, {"t": 7 * 24 - 0.01, "user_id": "inside", "event": "purchase"},
        {"t": -1, "user_id": "before", "event": "purchase"},
        {"t": -1, "user_id": "cart_only"}, {"t": 2, "user_id": "cart_only", "event": "add_to_cart"},
    ])
    labels = dict(build_snapshot(events, None, AS_OF, WEEK).select("user_id", "label").iter_rows())
    assert labels == {"at_start": 1, "at_end": 0, "inside": 1, "before": 0, "cart_only": 0}


# --- privacy filters -------------------------------------------------------------------------------


def test_users_without_consent_are_left_out() -> None:
    events = _ev([{"t": -1, "user_id": u} for u in ("yes", "no", "unknown", "no_row")])
    users = _users([{"user_id": "yes", "consent": True}, {"user_id": "no", "consent": False},
                    {"user_id": "unknown", "consent": None}])
    assert build_snapshot(events, users, AS_OF, WEEK)["user_id"].to_list() == ["no_row", "unknown", "yes"]
    strict = build_snapshot(events, users, AS_OF, WEEK, consent_default=False)
    assert strict["user_id"].to_list() == ["yes"]


def test_excluded_users_are_left_out() -> None:
    events = _ev([{"t": -1, "user_id": u} for u in ("a", "b", "c")])
    assert build_snapshot(events, None, AS_OF, WEEK, exclude_users={"b"})["user_id"].to_list() == ["a", "c"]


# --- stacked snapshots -----------------------------------------------------------------------------


def test_snapshot_times_are_spaced_oldest_first() -> None:
    assert snapshot_times(AS_OF, 3, WEEK) == [AS_OF - 2 * WEEK, AS_OF - WEEK, AS_OF]
    with pytest.raises(ValueError, match=">= 1"):
        snapshot_times(AS_OF, 0, WEEK)


def test_stacked_snapshots_equal_the_single_snapshots() -> None:
    events = _random_events(random.Random(3), n=300)
    stacked = build_snapshots(events, None, AS_OF, WEEK, k=3, every=timedelta(days=5))
    singles = [build_snapshot(events, None, t, WEEK) for t in snapshot_times(AS_OF, 3, timedelta(days=5))]
    assert stacked.equals(pl.concat(singles))
    assert stacked["as_of"].unique().len() == 3


# --- brute-force reference and leakage -------------------------------------------------------------


def _random_events(rng: random.Random, n: int) -> pl.DataFrame:
    types = [*EVENT_TYPES, "custom"]
    rows = []
    for _ in range(n):
        offset = rng.choice([rng.uniform(-40 * 24, 10 * 24), -24.0, -7 * 24.0, -30 * 24.0, 0.0, 7 * 24.0])
        rows.append({
            "t": round(offset, 3), "user_id": f"u{rng.randrange(12)}", "event": rng.choice(types),
            "session_id": rng.choice([None, *[f"s{k}" for k in range(8)]]),
            "page_type": rng.choice([None, "product", "home", "cart"]),
            "value": rng.choice([None, round(rng.uniform(0, 200), 2)]),
            "duration_s": rng.choice([None, round(rng.uniform(0, 300), 1)]),
            "scroll_depth": rng.choice([None, round(rng.random(), 3)]),
            "device": rng.choice([None, *DEVICES, "tv"]), "source": rng.choice([None, *SOURCES, "partner"]),
        })
    return _ev(rows).with_columns(pl.format("{}-{}", "user_id", "session_id").alias("session_id"))


def _reference(events: pl.DataFrame, users: pl.DataFrame, as_of: datetime, horizon: timedelta,
               ) -> dict[str, dict[str, Any]]:
    """The registry's definitions, written out row by row in plain Python."""
    crm = {u["user_id"]: u for u in users.to_dicts()}
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events.to_dicts():
        by_user[e["user_id"]].append(e)
    out = {}
    for uid, evs in by_user.items():
        hist = [e for e in evs if e["timestamp"] < as_of]
        profile = crm.get(uid, {})
        if not hist or profile.get("consent") is False:
            continue
        f: dict[str, Any] = {}

        def window(days: int, hist: list[dict[str, Any]] = hist) -> list[dict[str, Any]]:
            return [e for e in hist if e["timestamp"] >= as_of - timedelta(days=days)]

        def days_before(t: datetime | None) -> float | None:
            return None if t is None else (as_of - t) / timedelta(days=1)

        def mean(xs: list[float]) -> float | None:
            return sum(xs) / len(xs) if xs else None

        for w in WINDOWS_DAYS:
            for t in EVENT_TYPES:
                f[f"{t}_{w}d"] = float(sum(e["event"] == t for e in window(w)))
            f[f"events_{w}d"] = float(len(window(w)))
            f[f"sessions_{w}d"] = float(len({e["session_id"] for e in window(w) if e["session_id"]}))
        last = {t: max((e["timestamp"] for e in hist if e["event"] == t), default=None)
                for t in ("add_to_cart", "purchase")}
        f["days_since_last_event"] = days_before(max(e["timestamp"] for e in hist))
        f["days_since_last_add_to_cart"] = days_before(last["add_to_cart"])
        f["days_since_last_purchase"] = days_before(last["purchase"])
        f["days_since_first_event"] = days_before(min(e["timestamp"] for e in hist))
        w30 = window(30)
        f["product_time_s_30d"] = sum(e["duration_s"] or 0 for e in w30 if e["page_type"] == "product")
        f["avg_duration_s_30d"] = mean([e["duration_s"] for e in w30 if e["duration_s"] is not None])
        f["avg_scroll_depth_30d"] = mean([e["scroll_depth"] for e in w30 if e["scroll_depth"] is not None])
        f["cart_value_30d"] = sum(e["value"] or 0 for e in w30 if e["event"] == "add_to_cart")
        f["purchase_value_30d"] = sum(e["value"] or 0 for e in w30 if e["event"] == "purchase")
        f["purchases_total"] = float(sum(e["event"] == "purchase" for e in hist))
        f["purchase_value_total"] = sum(e["value"] or 0 for e in hist if e["event"] == "purchase")
        cart, bought_at = last["add_to_cart"], last["purchase"]
        is_open = cart is not None and (bought_at is None or cart > bought_at)
        f["cart_open"] = float(is_open)
        hours_open = (as_of - cart) / timedelta(hours=1) if cart is not None and is_open else None
        f["hours_since_cart_abandoned"] = hours_open
        carts = {e["session_id"] for e in w30 if e["session_id"] and e["event"] == "add_to_cart"}
        bought = {e["session_id"] for e in w30 if e["session_id"] and e["event"] == "purchase"}
        f["cart_abandon_rate_30d"] = len(carts - bought) / len(carts) if carts else None
        for col, values, name in (("device", DEVICES, "device"), ("source", SOURCES, "source")):
            known = [e[col] for e in w30 if e[col] is not None]
            for v in values:
                f[f"{name}_share_{v}_30d"] = known.count(v) / len(known) if known else None
        age = profile.get("age")
        f["age"] = None if age is None else float(age)
        f["age_band"] = age_band(age)
        for k in ("gender", "country", "loyalty_tier"):
            f[k] = profile.get(k)
        signup = profile.get("signup_date")
        signup_at = None if signup is None else datetime(signup.year, signup.month, signup.day, tzinfo=UTC)
        f["tenure_days"] = days_before(signup_at) if signup_at and signup_at <= as_of else None
        f["label"] = int(any(e["event"] == "purchase" and as_of <= e["timestamp"] < as_of + horizon
                             for e in evs))
        out[uid] = f
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_snapshot_matches_a_brute_force_reference(seed: int) -> None:
    rng = random.Random(seed)
    events = _random_events(rng, n=600)
    users = _users([{"user_id": f"u{i}", "age": rng.randrange(15, 90), "gender": rng.choice(["f", "m"]),
                     "signup_date": date(2024, rng.randrange(1, 5), 1),
                     "consent": rng.choice([True, True, True, False, None])} for i in range(10)])
    expected = _reference(events, users, AS_OF, WEEK)
    snap = build_snapshot(events, users, AS_OF, WEEK)
    assert sorted(snap["user_id"]) == sorted(expected)
    for row in snap.to_dicts():
        for name in (*FEATURE_NAMES, "label"):
            want, got = expected[row["user_id"]][name], row[name]
            if isinstance(want, float):
                assert got == pytest.approx(want, rel=1e-12, abs=1e-9), (row["user_id"], name)
            else:
                assert got == want, (row["user_id"], name)


def test_events_at_or_after_as_of_change_no_feature_only_the_label() -> None:
    rng = random.Random(7)
    past = _random_events(rng, n=400).filter(pl.col("timestamp") < AS_OF)
    future = _random_events(rng, n=400).filter(pl.col("timestamp") >= AS_OF).with_columns(
        pl.format("f{}", "event_id").alias("event_id"))
    planted = _ev([{"t": 0, "user_id": "u1", "event": "purchase", "value": 999.0},
                   {"t": 1, "user_id": "newcomer", "event": "add_to_cart"}])
    before = build_snapshot(past, None, AS_OF, WEEK)
    after = build_snapshot(pl.concat([past, future, planted]), None, AS_OF, WEEK)
    assert after["user_id"].to_list() == before["user_id"].to_list()
    features = [*KEY_COLUMNS, *FEATURE_NAMES]
    assert after.select(features).equals(before.select(features))
    assert after["label"].sum() > before["label"].sum() == 0
