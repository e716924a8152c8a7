"""Every HTML report, rendered in headless Chromium: no console error, no broken image, no
horizontal overflow at 1,280 px and 400 px. Screenshots are kept as test artefacts under pytest's
temporary folder (``--basetemp`` to choose it), never in the checkout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from browser_support import assert_renders_cleanly
from test_clusters import CFG, shop_snapshot, write_snapshot

from fairness.audit import audit_arrays
from fairness.config import GateConfig
from fairness.gate import evaluate_gate
from fairness.plots import dependence
from fairness.report import audit_json, figure_png, full_json, write_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report-screenshots")


def test_experiment_report_renders_cleanly(tmp_path: Path, shots: Path) -> None:
    from experiments.pipeline import demo_experiment

    cfg = tmp_path / "experiments.yaml"
    cfg.write_text("demo:\n  users: 3000\n  days: 21\n")
    out = demo_experiment(tmp_path / "exp", cfg)
    html = Path(out["html"]).read_text()
    assert "Dataset digest" in html and "Data period" in html and "Generated" in html
    assert html.index("Hypothesis") < html.index("Planned effect") < html.index("Analysed")  # purpose first
    assert html.index("Decision") < html.index("Tables")  # the decision comes before the evidence
    assert_renders_cleanly(Path(out["html"]), shots, "experiment", min_images=6)


def _audit_doc(rng: np.random.Generator) -> tuple[dict, dict[str, str]]:
    """A real audit of scores that under-select group 'fr', with a 60-row group 'be' (judged, few
    positives), a mitigation comparison and one SHAP-style figure."""
    n = 3000
    country = rng.choice(["de", "fr", "nl"], size=n, p=[0.5, 0.3, 0.2]).astype(object)
    country[:60] = "be"
    y = rng.random(n) < 0.15
    score = np.clip(0.15 + 0.3 * y + rng.normal(0, 0.15, n) - 0.12 * (country == "fr"), 0, 1)
    gate = GateConfig()
    audit = audit_arrays(y, score, {"country": country}, min_group_size=50, intervals="wilson")
    verdict = evaluate_gate(audit, gate)
    after = audit_arrays(y, score, {"country": country}, y_pred=(score > np.quantile(score, 0.3)).astype(int))
    rows = [{"model": label, **{k: a.overall[k] for k in ("auc", "accuracy", "selection_rate")},
             **a.features["country"].metrics} for label, a in (("before", audit), ("after", after))]
    mitigation = {"method": "threshold_optimizer", "constraint": "demographic_parity", "feature": "country",
                  "rows_fit": n // 2, "rows_compared": n // 2, "comparison": rows, "verdict_before": "fail",
                  "verdict_after": evaluate_gate(after, gate).verdict}
    extra = {"model": {"uri": "models:/propensity-conversion/3", "family": "xgboost",
                       "registered": ["propensity-conversion", "3"]},
             "data": {"digest": "sha256:0123456789abcdef", "as_of": ["2026-10-22"], "rows": n,
                      "min_group_size": 50},
             "mitigation": mitigation, "units": "log-odds",
             "shap_importance": [{"feature": "events_30d", "mean_abs_shap": 0.41}]}
    images = {"SHAP dependence: events_30d": figure_png(dependence("events_30d", rng.poisson(5, 500),
                                                                   rng.normal(0, 1, 500), "log-odds"))}
    return full_json(audit, verdict, extra), images


def test_fairness_report_renders_cleanly_and_shows_limits_and_intervals(tmp_path: Path, shots: Path) -> None:
    doc, images = _audit_doc(np.random.default_rng(0))
    html_path, json_path = write_report(doc, images, tmp_path)
    html = html_path.read_text()
    saved = json.loads(json_path.read_text())
    ratio = next(c for c in saved["checks"] if c["metric"] == "demographic_parity_ratio")
    assert ratio["limit"] == 0.8  # the gate's limit sits in the JSON next to the value
    assert "Selection-rate ratio" in html and "≥ 0.8" in html  # human name, limit beside it
    low, high = ratio["interval"]  # the interval the gate judged, its verdict beside the value
    assert low <= ratio["value"] <= high and ratio["verdict"] in ("fail", "insufficient_evidence")
    mark = "✗ fails" if ratio["verdict"] == "fail" else "? insufficient evidence"
    assert mark in html
    boxes = saved["group_intervals"]["country"]["demographic_parity_ratio"]
    assert set(boxes) == {"de", "fr", "nl", "be"}  # the per-group intervals behind it
    assert all(b["selection_rate"][0] <= b["selection_rate"][1] for b in boxes.values())
    be = next(g for g in saved["group_details"]["country"] if g["group"] == "be")
    low, high = be["intervals"]["tpr"]
    assert low <= be["tpr"] <= high and high - low > 0.3  # a 60-row group's TPR is uncertain
    assert "too uncertain to judge" in html and "instead of" in html  # small group and trade-off explained
    assert_renders_cleanly(html_path, shots, "fairness", min_images=1)


def test_audit_json_keeps_its_documented_keys() -> None:
    rng = np.random.default_rng(1)
    y, score = rng.random(500) < 0.2, rng.random(500)
    audit = audit_arrays(y, score, {"g": rng.choice(["a", "b"], 500)})
    doc = audit_json(audit, evaluate_gate(audit, GateConfig()))
    assert set(doc) == {"verdict", "threshold", "groups", "metrics", "checks", "failing", "undecided",
                        "intervals"}


def test_segments_report_renders_cleanly(tmp_path: Path, shots: Path) -> None:
    from features.segments.stage import segment_snapshot

    result = segment_snapshot(write_snapshot(tmp_path, shop_snapshot()), tmp_path / "out", CFG)
    assert result.report_html is not None and result.report_html.exists()
    html = result.report_html.read_text()
    assert "Behavioural clusters" in html and "<script" not in html
    assert_renders_cleanly(result.report_html, shots, "segments", min_images=1)


def _monitor_doc(days: int = 12) -> dict:
    """A monitor.json document: labelled windows, then windows waiting for their labels, one alert."""
    rng = np.random.default_rng(4)
    windows = []
    for i in range(days):
        labelled = i < days - 4
        windows.append({
            "start": f"2026-10-{i + 1:02d}T00:00:00+00:00", "end": f"2026-10-{i + 2:02d}T00:00:00+00:00",
            "model_version": "1" if i < 8 else "2", "predictions": int(rng.integers(1400, 1600)),
            "mean_probability": 0.1 + 0.002 * i, "labelled": labelled,
            "realized_rate": 0.1 if labelled else None, "realized_auc": 0.8 if labelled else None,
            "log_loss": 0.31 if labelled else None, "ece": 0.01 if labelled else None,
            "reliability": [{"mean_probability": 0.1, "realized_rate": 0.11},
                            {"mean_probability": 0.3, "realized_rate": 0.27}] if labelled else None,
            "estimated_auc": 0.79, "estimated_auc_low": 0.77, "estimated_auc_high": 0.81,
            "estimated_log_loss": 0.3, "drift_week_over_week": {}, "volume_ratio": None,
            "drift": {f"feature_{k}": {"psi": 0.01 * i * k, "p_value": 0.5} for k in range(12)},
            "selection_ratio": {"country": 0.9}, "selection_ratio_high": {"country": 0.95}})
    alert = {"window_start": windows[9]["start"], "model_version": "2", "kind": "drift",
             "subject": "feature_11", "value": 0.99, "threshold": 0.2}
    return {"model": {"uri": "models:/propensity-conversion@champion", "name": "propensity-conversion",
                      "version": "2"},
            "data": {"period": "2026-10-01 00:00 to 2026-10-13 00:00 UTC (12 windows)",
                     "digest": "sha256:0123456789abcdef", "reference_digest": "sha256:fedcba9876543210"},
            "windows": windows, "alerts": [alert], "report": "monitor_report.html", "run_id": None}


def test_monitoring_report_renders_cleanly_with_its_title_block(tmp_path: Path, shots: Path) -> None:
    from monitoring.report import render

    page = tmp_path / "monitor_report.html"
    page.write_text(render(_monitor_doc(), 0.81))
    html = page.read_text()
    for fact in ("Monitoring: propensity-conversion v2", "Data period", "2026-10-01 00:00 to 2026-10-13",
                 "Dataset digest", "sha256:0123456789abcdef", "Generated"):
        assert fact in html
    assert html.index("1 alert(s) in 12 windows, first on 2026-10-10") < html.index("Performance and drift")
    assert "<script" not in html
    assert_renders_cleanly(page, shots, "monitoring", min_images=4)


def test_disparity_intervals_cover_the_point_estimate_and_shrink_with_rows() -> None:
    from fairness.audit import disparity_metrics, metric_intervals

    def spread(n: int) -> tuple[float, float, float]:
        rng = np.random.default_rng(3)
        groups = rng.choice(["a", "b"], size=n)
        y = (rng.random(n) < 0.3).astype(int)
        pred = (rng.random(n) < np.where(groups == "a", 0.3, 0.2)).astype(int)
        rates = [{"selection_rate": pred[groups == g].mean(), "tpr": pred[(groups == g) & (y == 1)].mean(),
                  "fpr": pred[(groups == g) & (y == 0)].mean()} for g in ("a", "b")]
        value = disparity_metrics(rates)["demographic_parity_ratio"]
        low, high = metric_intervals(y, pred, groups, ["a", "b"], n_boot=200)["demographic_parity_ratio"]
        return low, value, high

    low, value, high = spread(2000)
    assert low <= value <= high
    small, large = spread(400), spread(8000)
    assert large[2] - large[0] < small[2] - small[0]  # more rows, narrower interval
