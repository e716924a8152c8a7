"""Engagement score: weights, decay, abandoned carts, thresholds, batch == incremental, config checks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from features.segments.config import load_segments_config
from features.segments.engagement import EngagementState, engagement_scores, segment_expr, segment_for
from propensity.errors import ConfigError

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
CFG = load_segments_config()


def cfg_with(**engagement: object):
    data = CFG.model_dump()
    data["engagement"].update(engagement)
    return type(CFG).model_validate(data)


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"event_id": pl.String, "user_id": pl.String,
                                      "timestamp": pl.Datetime("us", "UTC"), "event": pl.String})


def ev(i: int, user: str, when: datetime, event: str) -> dict:
    return {"event_id": f"e{i:05d}", "user_id": user, "timestamp": when, "event": event}


def both(rows: list[dict], as_of: datetime, cfg) -> tuple[dict[str, float], dict[str, float]]:
    batch = dict(engagement_scores(frame(rows), as_of, cfg).iter_rows())
    states: dict[str, EngagementState] = {}
    for row in rows:
        states.setdefault(row["user_id"], EngagementState(cfg)).add(row)
    return batch, {u: s.score_at(as_of) for u, s in states.items()}


def test_one_half_life_halves_the_weight() -> None:
    # By hand: newsletter_signup weight 2 at exactly 14 days (one half-life) -> 1.0; whitepaper_download
    # weight 3 at 28 days (two half-lives) -> 0.75.
    cfg = cfg_with(half_life_days=14.0)
    rows = [ev(1, "u", AS_OF - timedelta(days=14), "newsletter_signup"),
            ev(2, "u", AS_OF - timedelta(days=28), "whitepaper_download")]
    batch, incr = both(rows, AS_OF, cfg)
    assert batch["u"] == pytest.approx(1.75, abs=1e-12)
    assert incr["u"] == pytest.approx(1.75, abs=1e-12)


def test_without_decay_the_score_is_the_plain_sum_of_weights() -> None:
    cfg = cfg_with(half_life_days=None)
    rows = [ev(i, "u", AS_OF - timedelta(days=100 + i), e)
            for i, e in enumerate(["product_view", "product_view", "search", "remove_from_cart"])]
    batch, incr = both(rows, AS_OF, cfg)
    assert batch["u"] == pytest.approx(0.5 + 0.5 + 0.3 - 0.5)
    assert incr["u"] == pytest.approx(batch["u"], abs=1e-12)


def test_events_at_or_after_as_of_do_not_count() -> None:
    cfg = cfg_with(half_life_days=None)
    rows = [ev(1, "u", AS_OF - timedelta(seconds=1), "purchase"), ev(2, "u", AS_OF, "purchase"),
            ev(3, "v", AS_OF + timedelta(days=1), "purchase")]
    batch, incr = both(rows, AS_OF, cfg)
    assert batch == {"u": 4.0}
    assert incr["u"] == 4.0 and incr["v"] == 0.0


def test_a_cart_without_purchase_within_the_wait_counts_as_abandoned_once_the_wait_is_over() -> None:
    cfg = cfg_with(half_life_days=None, abandoned_cart_after_hours=24.0)
    cart = AS_OF - timedelta(hours=30)
    rows = [ev(1, "u", cart, "add_to_cart")]
    # add_to_cart +1, abandoned_cart -2 (dated cart + 24 h, before as_of)
    assert both(rows, AS_OF, cfg)[0]["u"] == pytest.approx(-1.0)
    # at cart + 10 h the wait is not over: no abandonment yet
    assert both(rows, cart + timedelta(hours=10), cfg)[0]["u"] == pytest.approx(1.0)
    bought = rows + [ev(2, "u", cart + timedelta(hours=2), "purchase")]
    assert both(bought, AS_OF, cfg)[0]["u"] == pytest.approx(5.0)
    late = rows + [ev(2, "u", cart + timedelta(hours=25), "purchase")]
    assert both(late, AS_OF, cfg)[0]["u"] == pytest.approx(1.0 - 2.0 + 4.0)


def test_every_abandoned_cart_counts_without_decay() -> None:
    # Regression: without decay the batch sum counted the abandoned_cart weight once per user, not
    # once per cart. Two carts at the same instant + one a day earlier: 3 * (+1) + 3 * (-2) = -3.
    cfg = cfg_with(half_life_days=None, abandoned_cart_after_hours=24.0)
    cart = AS_OF - timedelta(hours=24, seconds=1)
    rows = [ev(1, "u", cart, "add_to_cart"), ev(2, "u", cart, "add_to_cart"),
            ev(3, "u", cart - timedelta(days=1), "add_to_cart")]
    batch, incr = both(rows, AS_OF, cfg)
    assert batch["u"] == pytest.approx(-3.0)
    assert incr["u"] == pytest.approx(-3.0)


def test_a_purchase_at_the_cart_instant_or_at_the_end_of_the_wait_saves_the_cart() -> None:
    # [t, t + wait] is closed on both ends, for batch and incremental alike.
    cfg = cfg_with(half_life_days=None, abandoned_cart_after_hours=24.0)
    cart = AS_OF - timedelta(hours=30)
    for bought in (cart, cart + timedelta(hours=24)):
        rows = [ev(1, "u", cart, "add_to_cart"), ev(2, "u", cart, "add_to_cart"),
                ev(3, "u", bought, "purchase")]
        batch, incr = both(rows, AS_OF, cfg)
        assert batch["u"] == pytest.approx(1.0 + 1.0 + 4.0)
        assert incr["u"] == pytest.approx(batch["u"])
    late = [ev(1, "u", cart, "add_to_cart"),
            ev(3, "u", cart + timedelta(hours=24, microseconds=1), "purchase")]
    batch, incr = both(late, AS_OF, cfg)
    assert batch["u"] == pytest.approx(1.0 - 2.0 + 4.0)
    assert incr["u"] == pytest.approx(batch["u"])


def test_abandoned_cart_decays_from_the_moment_it_was_abandoned() -> None:
    cfg = cfg_with(half_life_days=1.0, abandoned_cart_after_hours=24.0,
                   weights={"add_to_cart": 0.0, "abandoned_cart": -2.0})
    rows = [ev(1, "u", AS_OF - timedelta(days=2), "add_to_cart")]
    batch, incr = both(rows, AS_OF, cfg)
    assert batch["u"] == pytest.approx(-1.0)  # abandoned 1 day (one half-life) before as_of
    assert incr["u"] == pytest.approx(-1.0)


EVENTS = ["page_view", "product_view", "add_to_cart", "purchase", "newsletter_signup", "search",
          "remove_from_cart", "my_custom_event"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-90 * 86400, 5 * 86400), st.sampled_from(EVENTS)),
                min_size=1, max_size=60),
       st.sampled_from([None, 0.5, 14.0]), st.integers(0, 10**6))
@example(raw=[(0, -86401, "add_to_cart"), (0, -86401, "add_to_cart")], half_life=None, seed=0)
@example(raw=[(0, -86401, "add_to_cart"), (0, -86401, "purchase"), (0, -86401, "add_to_cart")],
         half_life=None, seed=1)
def test_batch_and_incremental_scores_agree_for_any_arrival_order(raw, half_life, seed) -> None:
    cfg = cfg_with(half_life_days=half_life)
    rows = [ev(i, f"u{u}", AS_OF + timedelta(seconds=s), e) for i, (u, s, e) in enumerate(raw)]
    random.Random(seed).shuffle(rows)
    batch, incr = both(rows, AS_OF, cfg)
    assert set(batch) <= set(incr)
    for user, score in incr.items():
        assert score == pytest.approx(batch.get(user, 0.0), abs=1e-9)


def test_incremental_score_at_an_earlier_time_leaves_later_events_out() -> None:
    rng = random.Random(3)
    rows = [ev(i, "u", AS_OF - timedelta(hours=rng.randrange(0, 2000)), rng.choice(EVENTS))
            for i in range(300)]
    state = EngagementState(CFG)
    for row in rows:
        state.add(row)
    for back in (0, 10, 200, 1000):
        t = AS_OF - timedelta(hours=back)
        expected = dict(engagement_scores(frame(rows), t, CFG).iter_rows()).get("u", 0.0)
        assert state.score_at(t) == pytest.approx(expected, abs=1e-9)


def test_a_history_spanning_many_half_lives_stays_exact() -> None:
    cfg = cfg_with(half_life_days=0.01)  # 10 days of events = 1000 half-lives: the anchor is rebased
    rows = [ev(i, "u", AS_OF - timedelta(hours=240 - i), "purchase") for i in range(240)]
    batch, incr = both(rows, AS_OF, cfg)
    assert incr["u"] == pytest.approx(batch["u"], abs=1e-9)


def test_a_repeated_event_id_counts_once() -> None:
    state = EngagementState(cfg_with(half_life_days=None))
    row = ev(1, "u", AS_OF - timedelta(days=1), "purchase")
    assert state.add(row) is True
    assert state.add(row) is False
    assert state.score_at(AS_OF) == 4.0 and state.n_events == 1


def test_thresholds_map_scores_to_segments_with_inclusive_lower_bounds() -> None:
    cuts = {t.segment: t.min_score for t in CFG.engagement.thresholds}
    assert segment_for(cuts["high_intent"], CFG) == "high_intent"
    assert segment_for(cuts["high_intent"] - 1e-9, CFG) == "loyal"
    assert segment_for(cuts["engaged"], CFG) == "engaged"
    assert segment_for(-5.0, CFG) == "dormant"
    assert segment_for(None, CFG) == "dormant"
    scores = [-1.0, 0.0, 0.3, 1.9, 2.0, 6.0, 11.99, 12.0, 40.0, None]
    batch = pl.DataFrame({"s": scores}, schema={"s": pl.Float64}).select(segment_expr(pl.col("s"), CFG))
    assert batch.to_series().to_list() == [segment_for(s, CFG) for s in scores]


def test_segment_at_without_history_is_the_lowest_segment() -> None:
    state = EngagementState(CFG)
    state.add(ev(1, "u", AS_OF, "purchase"))
    assert state.segment_at(AS_OF) == "dormant"
    assert state.segment_at(AS_OF + timedelta(seconds=1)) == segment_for(4.0, CFG)


def write_cfg(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(Path("configs/segments.yaml").read_text())
    mutate(data)
    path = tmp_path / "segments.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_weight_for_an_unknown_behaviour_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, lambda d: d["engagement"]["weights"].update({"teleport": 1.0}))
    with pytest.raises(ConfigError, match="engagement.*teleport"):
        load_segments_config(path)


def test_a_custom_event_may_carry_a_weight(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        d["engagement"]["weights"]["webinar_join"] = 2.5
        d["engagement"]["custom_events"] = ["webinar_join"]
    assert load_segments_config(write_cfg(tmp_path, mutate)).engagement.weights["webinar_join"] == 2.5


def test_unsorted_thresholds_are_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, lambda d: d["engagement"]["thresholds"].reverse())
    with pytest.raises(ConfigError, match="engagement.thresholds.*decreasing"):
        load_segments_config(path)


def test_a_non_positive_half_life_is_a_config_error(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, lambda d: d["engagement"].update({"half_life_days": 0}))
    with pytest.raises(ConfigError, match="engagement.half_life_days"):
        load_segments_config(path)


def test_an_unknown_key_is_a_config_error(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, lambda d: d["engagement"].update({"halflife": 3}))
    with pytest.raises(ConfigError, match="unknown key 'engagement.halflife'"):
        load_segments_config(path)
