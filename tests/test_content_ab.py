"""Outcomes of shown products, `propensity ab analyze` on a content exposure log, simulated visitors
(an A/A at the expected false-positive rate) and the demo's recommender A/B on a generated shop."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from content.serve import ContentExposureLog
from experiments.content_outcomes import content_outcomes
from experiments.visitor_sim import VisitorModel, aa_significance_rate, respond
from propensity.cli.main import main

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _log(path: Path) -> Path:
    log = ContentExposureLog(path)
    log.record("a", "recs", "A", "carousel", "recommended_products", ["p1", "p2"], at=T0)
    log.record("b", "recs", "B", "carousel", "recommended_products", ["p3"], at=T0)
    log.record("c", "recs", "A", "carousel", "recommended_products", ["p5"], at=T0)
    log.record("c", "recs", "A", "hero", "cart_reminder_discount", ["p6"], at=T0 + timedelta(hours=36))
    log.record("d", "recs", "B", "carousel", "recommended_products", ["p7"], at=T0)
    log.record("e", "recs", "B", "carousel", "recommended_products", ["p8"], at=T0)
    log.record("x", "other", "B", "carousel", "recommended_products", ["p1"], at=T0)
    log.close()
    return path


def _events() -> pl.DataFrame:
    h = timedelta(hours=1)
    rows = [  # (event_id, user, time, event, product, value)
        ("1", "a", T0 + h, "product_view", "p1", None),      # click
        ("2", "a", T0 + 2 * h, "add_to_cart", "p1", None),   # cart after the click
        ("3", "a", T0 + 3 * h, "purchase", "p1", 20.0),      # purchase after the click
        ("3", "a", T0 + 3 * h, "purchase", "p1", 20.0),      # the same event again: counted once
        ("4", "a", T0 + 4 * h, "purchase", "p9", 99.0),      # a product never shown: not counted
        ("5", "b", T0 - h, "product_view", "p3", None),      # before it was shown
        ("6", "b", T0 + h, "purchase", "p3", 15.0),          # bought without a click after showing
        ("7", "c", T0 + 30 * h, "product_view", "p5", None),  # outside p5's 1-day window
        ("8", "c", T0 + 40 * h, "product_view", "p6", None),  # inside p6's window (shown at +36 h)
        ("9", "d", T0 + h, "add_to_cart", "p7", None),       # cart before the click: not counted
        ("10", "d", T0 + 2 * h, "product_view", "p7", None),  # click
        ("11", "d", T0 + 3 * h, "purchase", "p7", 12.5),     # purchase after the click
        ("12", "x", T0 + h, "product_view", "p1", None),     # another experiment
    ]
    return pl.DataFrame(rows, schema=["event_id", "user_id", "timestamp", "event", "product_id", "value"],
                        orient="row")


def test_outcomes_count_clicks_carts_and_purchases_of_shown_products_in_their_window(tmp_path) -> None:
    log = pl.read_ndjson(_log(tmp_path / "log.jsonl"))
    out = content_outcomes(log, _events(), window_days=1.0, experiment="recs").sort("user_id")
    rows = {r["user_id"]: r for r in out.to_dicts()}
    assert set(rows) == {"a", "b", "c", "d", "e"}
    expected = {"a": (1, 1, 1, 20.0, 2), "b": (0, 0, 0, 0.0, 1), "c": (1, 0, 0, 0.0, 2),
                "d": (1, 0, 1, 12.5, 1), "e": (0, 0, 0, 0.0, 1)}
    for user, (clicked, carted, converted, revenue, shown) in expected.items():
        r = rows[user]
        assert (r["clicked"], r["carted"], r["converted"], r["revenue"], r["shown"]) == (
            clicked, carted, converted, revenue, shown), user
    assert rows["c"]["first_exposure"] == T0 and rows["a"]["variant"] == "A"


def test_ab_analyze_reads_a_content_exposure_log(tmp_path) -> None:
    log = _log(tmp_path / "log.jsonl")
    events = tmp_path / "events.parquet"
    _events().write_parquet(events)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(["ab", "analyze", "--exposures", str(log), "--events", str(events), "--experiment", "recs",
              "--control", "A", "--json"])
    result = json.loads(buffer.getvalue())
    assert set(result["metrics"]) == {"clicked", "converted", "revenue"}
    means = {v["name"]: v["mean"] for v in result["metrics"]["clicked"]["variants"]}
    assert means == pytest.approx({"A": 2 / 2, "B": 1 / 3})  # a, c clicked; d of b, d, e
    revenue = {v["name"]: v["mean"] for v in result["metrics"]["revenue"]["variants"]}
    assert revenue == pytest.approx({"A": 10.0, "B": 12.5 / 3})


def test_visitors_click_at_the_rate_of_their_tastes() -> None:
    p = np.full((200_000, 1), 0.2)
    clicked = respond(p, np.random.default_rng(1), VisitorModel(click_scale=2.0)).clicked
    expected = 1 - np.exp(-0.4)
    assert abs(clicked.mean() - expected) < 4 * np.sqrt(expected * (1 - expected) / p.size)


def test_an_aa_between_identical_recommenders_is_significant_at_the_rate_alpha() -> None:
    # 200 A/As of 4,000 visitors shown 8 products each, with long-tailed true tastes
    rng = np.random.default_rng(3)
    p_shown = rng.dirichlet(np.full(50, 0.3), size=4000)[:, :8]
    n_sims, alpha = 200, 0.05
    rate = aa_significance_rate(p_shown, n_sims, alpha, seed=7)
    sd = np.sqrt(alpha * (1 - alpha) / n_sims)
    assert abs(rate - alpha) <= 3 * sd, rate


@pytest.mark.slow
def test_the_better_recommender_wins_the_demo_ab(tmp_path) -> None:
    from content.ab_demo import fit_on_shop, recommender_ab
    from experiments.config import load_experiments_config
    from features.shop.config import load_generate_config
    from features.shop.generate import generate

    generate(tmp_path / "shop", load_generate_config(None, users=5000, days=45, seed=9))
    settings = load_experiments_config()
    demo = settings.recommendations.demo
    shop = fit_on_shop(tmp_path / "shop", ["popularity", demo.control, demo.treatment])
    ab = recommender_ab(shop, tmp_path / "ab", settings)
    assert ab.recall[demo.treatment] >= 2 * ab.recall["popularity"]
    assert ab.recall["oracle"] >= max(ab.recall.values())
    wins = [v for v in ab.verdicts if v.startswith(f"{demo.treatment} lifts clicked")]
    assert wins and wins[0].endswith("significant") and "not significant" not in wins[0]
    assert ab.per_variant[demo.treatment]["clicked"] > ab.per_variant[demo.control]["clicked"]
    assert Path(ab.files["recommender_report"]).is_file()
