"""One suite for every live profile store backend (in-process and Redis): the guarantees of ProfileStore.

Feature values are checked against a brute-force Polars reference written independently of
features/live/profile.py, straight from the registry's wording (windows [as_of - W, as_of)).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from features.live.profile import normalize_event, online_features, to_epoch_us
from features.live.store import ForgottenUser, InProcessProfileStore, ProfileStore
from features.registry import FEATURE_NAMES
from propensity.errors import DataError

T0 = datetime(2026, 3, 1, tzinfo=UTC)
EVENTS = ["page_view", "product_view", "add_to_cart", "purchase", "search", "custom_thing", "checkout_start"]


@pytest.fixture(params=["inprocess", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator:
    """A factory of stores of one backend; Redis stores share one test-unique key prefix."""
    made: list[ProfileStore] = []

    def factory(retention_days: float = 90.0) -> ProfileStore:
        if request.param == "inprocess":
            if made:  # in-process stores are not shared: a second client is the same object
                return made[0]
            store: ProfileStore = InProcessProfileStore(retention_days=retention_days)
        else:
            from features.live.redis_store import RedisProfileStore

            url = request.getfixturevalue("redis_url")
            prefix = request.getfixturevalue("redis_prefix")
            store = RedisProfileStore(url, prefix, retention_days=retention_days)
        made.append(store)
        return store

    yield factory
    for store in made:
        if hasattr(store, "clear"):
            store.clear()
        store.close()


def random_events(rng: random.Random, user: str, n: int, days: float = 70.0) -> list[dict]:
    out = []
    for i in range(n):
        ev = rng.choice(EVENTS)
        out.append({
            "event_id": f"{user}-e{i}",
            "user_id": user,
            "timestamp": (T0 + timedelta(seconds=rng.uniform(0, days * 86400))).isoformat(),
            "event": ev,
            "session_id": rng.choice([None, f"{user}-s{rng.randrange(8)}"]),
            "page_type": rng.choice([None, "product", "home", "cart"]),
            "value": round(rng.uniform(1, 90), 2) if ev in ("add_to_cart", "purchase") else None,
            "duration_s": rng.choice([None, round(rng.uniform(0, 300), 1)]),
            "scroll_depth": rng.choice([None, round(rng.random(), 3)]),
            "device": rng.choice([None, "mobile", "desktop", "tablet", "tv"]),
            "source": rng.choice([None, "direct", "search", "ads", "email", "social"]),
        })
    return out


def reference_features(events: list[dict], as_of: datetime) -> dict[str, float]:
    """Brute force with Polars, from the registry's definitions."""
    df = pl.DataFrame(events, infer_schema_length=None).with_columns(
        pl.col("timestamp").str.to_datetime(time_zone="UTC"))
    df = df.filter(pl.col("timestamp") < as_of)
    out: dict[str, float] = {}

    def days(t: datetime | None) -> float:
        return (as_of - t).total_seconds() / 86400 if t is not None else math.nan

    for w in (1, 7, 30):
        win = df.filter(pl.col("timestamp") >= as_of - timedelta(days=w))
        out[f"events_{w}d"] = float(win.height)
        out[f"purchase_{w}d"] = float(win.filter(pl.col("event") == "purchase").height)
        out[f"page_view_{w}d"] = float(win.filter(pl.col("event") == "page_view").height)
        out[f"sessions_{w}d"] = float(win["session_id"].drop_nulls().n_unique())
    w30 = df.filter(pl.col("timestamp") >= as_of - timedelta(days=30))
    atc = df.filter(pl.col("event") == "add_to_cart")["timestamp"].max()
    buy = df.filter(pl.col("event") == "purchase")["timestamp"].max()
    out["days_since_last_event"] = days(df["timestamp"].max())
    out["days_since_first_event"] = days(df["timestamp"].min())
    out["days_since_last_purchase"] = days(buy)
    out["cart_open"] = float(atc is not None and (buy is None or atc > buy))
    out["hours_since_cart_abandoned"] = days(atc) * 24 if out["cart_open"] else math.nan
    out["purchases_total"] = float(df.filter(pl.col("event") == "purchase").height)
    out["purchase_value_total"] = float(df.filter(pl.col("event") == "purchase")["value"].sum())
    out["product_time_s_30d"] = float(w30.filter(pl.col("page_type") == "product")["duration_s"].sum())
    mean_dur = w30["duration_s"].mean()
    out["avg_duration_s_30d"] = math.nan if mean_dur is None else float(mean_dur)  # type: ignore[arg-type]
    dev = w30["device"].drop_nulls()
    out["device_share_mobile_30d"] = (dev == "mobile").sum() / dev.len() if dev.len() else math.nan
    carts = w30.filter(pl.col("session_id").is_not_null()).group_by("session_id").agg(
        (pl.col("event") == "add_to_cart").any().alias("atc"),
        (pl.col("event") == "purchase").any().alias("buy"))
    carts = carts.filter(pl.col("atc"))
    out["cart_abandon_rate_30d"] = (float((~carts["buy"]).sum() / carts.height) if carts.height else math.nan)
    return out


def assert_close(got: dict, want: dict) -> None:
    for name, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(got[name], float) and math.isnan(got[name]), name
        elif value is None or isinstance(value, str):
            assert got[name] == value, name
        else:
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name


def apply(store: ProfileStore, events: list[dict]) -> None:
    store.add_events(normalize_event(e) for e in events)


def test_features_match_brute_force_at_any_as_of(make_store) -> None:
    store = make_store()
    rng = random.Random(1)
    events = random_events(rng, "u1", 300)
    apply(store, events)
    for _ in range(6):
        as_of = T0 + timedelta(seconds=rng.uniform(20 * 86400, 75 * 86400))
        got = online_features(store.get_profile("u1"), to_epoch_us(as_of))
        assert list(got) == list(FEATURE_NAMES)
        assert_close(got, reference_features(events, as_of))


def test_a_redelivered_event_counts_once(make_store) -> None:
    store = make_store()
    events = random_events(random.Random(2), "u2", 40)
    apply(store, events)
    result = store.add_events(normalize_event(e) for e in events[:10] + events[:10])
    assert (result.applied, result.duplicates) == (0, 20)
    assert len(store.get_profile("u2").events) == 40


def test_shuffled_delivery_gives_the_same_features(make_store) -> None:
    store = make_store()
    rng = random.Random(3)
    events = random_events(rng, "a", 150)
    shuffled = [{**e, "user_id": "b", "event_id": "b" + e["event_id"]} for e in events]
    rng.shuffle(shuffled)
    apply(store, sorted(events, key=lambda e: e["timestamp"]))
    for i in range(0, len(shuffled), 7):  # many small out-of-order batches
        apply(store, shuffled[i:i + 7])
    as_of = to_epoch_us(T0 + timedelta(days=71))
    fa = online_features(store.get_profile("a"), as_of)
    fb = online_features(store.get_profile("b"), as_of)
    assert_close(fb, fa)


def test_compaction_changes_no_feature_after_the_exact_horizon(make_store) -> None:
    full = InProcessProfileStore(retention_days=1000)
    store = make_store(retention_days=35)
    rng = random.Random(4)
    events = random_events(rng, "c", 400, days=120)
    late = [e for e in events if e["timestamp"] < (T0 + timedelta(days=40)).isoformat()]
    on_time = [e for e in events if e not in late]
    apply(full, events)
    apply(store, on_time)
    apply(store, late)  # late events far behind the watermark are folded straight into the scalars
    profile = store.get_profile("c")
    assert profile.compacted.n_events > 0
    assert len(profile.events) + profile.compacted.n_events == len(events)
    for offset_days in (0.01, 1.0, 4.5):
        as_of = to_epoch_us(T0 + timedelta(days=120 + offset_days))
        assert_close(online_features(profile, as_of), online_features(full.get_profile("c"), as_of))


def test_read_your_writes_across_clients(make_store) -> None:
    writer, reader = make_store(), make_store()
    apply(writer, random_events(random.Random(5), "r", 5))
    writer.upsert_user("r", {"country": " DE ", "consent": True})
    profile = reader.get_profile("r")
    assert len(profile.events) == 5
    assert profile.attributes == {"country": "de", "consent": True}
    assert reader.version("r") == profile.version > 0


def test_concurrent_writers_lose_and_double_nothing(make_store) -> None:
    store = make_store()
    events = random_events(random.Random(6), "t", 400)
    chunks = [events[i::4] + events[: 50] for i in range(4)]  # overlapping redeliveries too

    def work(chunk: list[dict]) -> None:
        for i in range(0, len(chunk), 10):
            apply(store, chunk[i:i + 10])

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.event_id for r in store.get_profile("t").events) == sorted(e["event_id"] for e in events)


def test_deletion_forgets_and_blocks_later_events(make_store) -> None:
    store = make_store()
    apply(store, random_events(random.Random(7), "d", 10))
    store.upsert_user("d", {"age": 40})
    before = store.version("d")
    assert store.delete_user("d") is True
    profile = store.get_profile("d")
    assert profile.deleted and not profile.events and not profile.attributes
    assert store.version("d") > before
    result = store.add_events([normalize_event({"event_id": "new", "user_id": "d", "event": "page_view",
                                                "timestamp": "2026-03-02T00:00:00Z"})])
    assert result.dropped_deleted == 1
    with pytest.raises(ForgottenUser):  # a plain upsert does not bring a deleted user back
        store.upsert_user("d", {"loyalty_tier": "gold"})
    assert store.get_profile("d").deleted and not store.get_profile("d").attributes
    assert store.upsert_users([{"user_id": "d", "age": 41}]) == 0  # a preload skips the user too
    store.upsert_user("d", {"consent": True}, reconsent=True)
    assert not store.get_profile("d").deleted


def test_upsert_merges_attributes_and_counts_users(make_store) -> None:
    store = make_store()
    store.upsert_user("m", {"age": 30, "gender": "F"})
    store.upsert_user("m", {"loyalty_tier": "Gold", "signup_date": "2025-01-15"})
    assert store.get_profile("m").attributes == {"age": 30, "gender": "f", "loyalty_tier": "gold",
                                                 "signup_date": "2025-01-15"}
    assert store.count_users() == 1


def test_static_features_from_crm_attributes(make_store) -> None:
    store = make_store()
    store.upsert_user("s", {"age": 29, "country": "FR", "signup_date": "2026-02-01"})
    got = online_features(store.get_profile("s"), to_epoch_us(datetime(2026, 3, 1, 12, tzinfo=UTC)))
    assert got["age_band"] == "25-34" and got["country"] == "fr" and got["age"] == 29.0
    assert got["tenure_days"] == pytest.approx(28.5)  # 28 days from Feb 1 to Mar 1 (2026), plus 12 h
    assert got["events_30d"] == 0.0 and math.isnan(got["days_since_last_event"])


@pytest.mark.parametrize("bad, field", [
    ({"value": -1.0}, "value"), ({"scroll_depth": 1.5}, "scroll_depth"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"event_id": None}, "event_id"), ({"duration_s": "long"}, "duration_s"),
])
def test_bad_events_name_the_field(bad: dict, field: str) -> None:
    event = {"event_id": "x", "user_id": "u", "event": "page_view", "timestamp": "2026-03-01T10:00:00+02:00"}
    with pytest.raises(DataError, match=field):
        normalize_event({**event, **bad})


def test_offsets_and_naive_times_are_utc() -> None:
    base = {"event_id": "x", "user_id": "u", "event": " Page_View "}
    _, a = normalize_event({**base, "timestamp": "2026-03-01T10:00:00+02:00"})
    _, b = normalize_event({**base, "timestamp": "2026-03-01T08:00:00"})
    assert a.ts == b.ts and a.event == "page_view"


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)) or x == y
        for x, y in zip(a.values(), b.values(), strict=True))


def test_serving_reuses_the_fold_only_while_no_event_enters_or_leaves_a_window() -> None:
    """The served state keeps its fold over the events between requests; at every later as_of,
    also one µs either side of each event and of each window edge of each event (where a count
    changes), its features are a fresh evaluation's, and they match the brute force."""
    from features.segments.config import load_segments_config
    from features.segments.journey import machine_for
    from serving.scoring import ProfileState

    store = InProcessProfileStore(retention_days=90.0)
    rng = random.Random(7)
    events = random_events(rng, "u1", 120, days=40.0)
    apply(store, events)
    profile = store.get_profile("u1")
    seg = load_segments_config()
    state = ProfileState.build(profile, seg, machine_for(seg))
    stamps = sorted(to_epoch_us(datetime.fromisoformat(e["timestamp"])) for e in events)
    edges = {t + d for t in stamps[::7] for w in (0, 1, 7, 30) for d in (w * 86_400_000_000 - 1,
                                                                         w * 86_400_000_000,
                                                                         w * 86_400_000_000 + 1)}
    moments = sorted(edges | {stamps[0] + int(rng.uniform(0, 75 * 86400e6)) for _ in range(40)})
    reused = 0
    for as_of in moments:
        before = state._memo
        got = state.features(as_of)
        reused += state._memo is before
        fresh = online_features(profile, as_of)
        assert _same({k: got[k] for k in fresh}, fresh), as_of
    assert reused > len(moments) // 10  # the fold was kept between some requests
    as_of = datetime(2026, 3, 20, 12, tzinfo=UTC)
    assert_close(state.features(to_epoch_us(as_of)), reference_features(events, as_of))
