"""analyze_experiment and its inputs: exposure joins, funnel, segments, factorial, timeline, demo."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import polars as pl
import pytest
from statsmodels.stats.multitest import multipletests

from experiments import analyze_experiment, demo_experiment
from experiments.config import ExperimentsConfig
from experiments.exposure import outcomes_from_exposures
from experiments.funnel import funnel_by_variant
from experiments.simulate import simulate_units
from experiments.verdict import verdict_lines
from propensity.errors import DataError

T0 = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)


def _events(rows):
    return pl.DataFrame(rows, schema=["event_id", "user_id", "timestamp", "event", "value"], orient="row")


def test_conversion_counts_only_purchases_inside_the_window_once():
    exposures = pl.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "variant": ["A", "A", "B", "B"],
                              "first_exposure": [T0] * 4})
    day = dt.timedelta(days=1)
    events = _events([
        ("e1", "u1", T0 - day, "purchase", 10.0),        # before exposure: ignored
        ("e2", "u2", T0 + day, "purchase", 20.0),        # inside
        ("e2", "u2", T0 + day, "purchase", 20.0),        # duplicate delivery: counts once
        ("e3", "u3", T0 + 8 * day, "purchase", 30.0),    # after the 7-day window: ignored
        ("e4", "u4", T0 + 2 * day, "add_to_cart", 5.0),  # not a purchase
    ])
    out = outcomes_from_exposures(exposures, events, window_days=7).sort("user_id")
    assert out["converted"].to_list() == [0, 1, 0, 0]
    assert out["revenue"].to_list() == [0.0, 20.0, 0.0, 0.0]
    assert out["reached_add_to_cart"].to_list() == [0, 0, 0, 1]


def test_user_in_two_variants_is_an_error():
    exposures = pl.DataFrame({"user_id": ["u1", "u1"], "variant": ["A", "B"], "first_exposure": [T0, T0]})
    with pytest.raises(DataError, match="more than one variant"):
        outcomes_from_exposures(exposures, _events([("e1", "u1", T0, "purchase", 1.0)]))


def test_funnel_rates_are_shares_of_exposed_units():
    units = pl.DataFrame({"variant": ["A"] * 4 + ["B"] * 4,
                          "reached_view": [1, 1, 1, 0, 1, 1, 1, 1], "reached_buy": [1, 0, 0, 0, 1, 1, 0, 0]})
    f = funnel_by_variant(units, "A", ["view", "buy"])
    buy_b = f.filter((pl.col("step") == "buy") & (pl.col("variant") == "B")).row(0, named=True)
    assert buy_b["rate"] == 0.5 and buy_b["step_conversion"] == 0.5 and buy_b["difference"] == 0.25


def test_segment_results_equal_the_subset_analysis_and_are_corrected_together():
    frame = simulate_units(6000, {"A": 0.0, "B": 0.2}, seed=5)
    result = analyze_experiment(frame, "variant", "A", ["converted"], segment_col="device")
    mobile = analyze_experiment(frame.filter(pl.col("device") == "mobile"), "variant", "A", ["converted"])
    seg = result.segments["mobile"]["converted"].comparisons[0]
    assert seg.p_value == pytest.approx(mobile.metrics["converted"].comparisons[0].p_value, rel=1e-12)
    segments = sorted(result.segments)
    comps = [result.segments[s]["converted"].comparisons[0] for s in segments]
    expected = multipletests([c.p_value for c in comps], method="holm")[1]  # statsmodels, one family
    assert [c.p_value_adjusted for c in comps] == pytest.approx(expected.tolist())
    assert len(segments) == 3


def test_factorial_estimates_equal_cell_mean_contrasts_in_a_balanced_design():
    rng = np.random.default_rng(0)
    rows = []
    for h, c in itertools.product("ab", "xy"):
        mu = 10 + 2 * (h == "b") + 1 * (c == "y") + 1.5 * (h == "b") * (c == "y")
        rows += [(h, c, v) for v in rng.normal(mu, 1, 250)]
    frame = pl.DataFrame(rows, schema=["headline", "cta", "y"], orient="row")
    res = analyze_experiment(frame.with_columns(variant=pl.col("headline") + pl.col("cta")), "variant", "ax",
                             ["y"], factors=["headline", "cta"]).factorial[0]
    cell = {k: frame.filter((pl.col("headline") == k[0]) & (pl.col("cta") == k[1]))["y"].mean()
            for k in ("ax", "ay", "bx", "by")}
    terms = {t.term: t for t in res.terms}
    # Hand-computed contrasts of cell means (balanced 2x2: additive OLS = marginal difference).
    main_h = (cell["bx"] + cell["by"] - cell["ax"] - cell["ay"]) / 2
    assert terms["headline=b"].estimate == pytest.approx(main_h)
    assert terms["headline=b x cta=y"].estimate == pytest.approx(
        cell["by"] - cell["bx"] - cell["ay"] + cell["ax"])
    assert res.model == "ols" and terms["headline=b"].p_value < 1e-6


def test_timeline_last_look_equals_the_overall_difference():
    frame = simulate_units(4000, {"A": 0.0, "B": 0.2}, days=5, seed=2)
    result = analyze_experiment(frame, "variant", "A", ["converted"], timestamp_col="first_exposure")
    last = result.timeline.filter(pl.col("variant") == "B").row(-1, named=True)
    assert last["difference"] == pytest.approx(result.metrics["converted"].comparisons[0].difference)
    seq = result.metrics["converted"].sequential["B"]
    assert seq.ci_low <= last["difference"] <= seq.ci_high


def test_sequential_decision_changes_the_verdict_wording():
    frame = simulate_units(4000, {"A": 0.0, "B": 0.2}, days=5, seed=2)
    settings = ExperimentsConfig()
    settings.sequential.enabled = True
    result = analyze_experiment(frame, "variant", "A", ["converted"], timestamp_col="first_exposure",
                                settings=settings)
    assert "always-valid p" in verdict_lines(result)[0]


def test_demo_writes_report_and_verdicts(tmp_path):
    cfg = tmp_path / "experiments.yaml"
    cfg.write_text("demo:\n  users: 4000\n  days: 7\n")
    out = demo_experiment(tmp_path / "demo", cfg)
    html = (tmp_path / "demo" / "experiment_report.html").read_text()
    assert out["html"].endswith("experiment_report.html") and html.count("data:image/png;base64,") >= 6
    assert len(out["verdicts"]) == 4 and all("after Holm" in v for v in out["verdicts"])
