"""`propensity ab ...`: JSON contracts, reports and one-line errors (exit 2) on bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from experiments.simulate import simulate_units
from propensity.cli.main import main

CONTRACT_COMPARISON = {"variant", "control", "test", "statistic", "df", "p_value", "p_value_adjusted",
                       "difference",
                       "ci_low", "ci_high", "relative_lift", "relative_ci_low", "relative_ci_high"}


def _run(capsys, *args: str) -> dict:
    main(list(args))
    return json.loads(capsys.readouterr().out)


def _fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ab") / "units.parquet"
    simulate_units(6000, {"A": 0.0, "B": 0.3, "C": 0.0}, days=7, seed=3).write_parquet(path)
    return str(path)


def test_sample_size_json(capsys):
    # R power.prop.test(p1 = .10, p2 = .12, power = .8) -> 3840.85, rounded up
    out = _run(capsys, "ab", "sample-size", "--baseline", "0.10", "--mde", "0.2", "--relative", "--json")
    assert out["n_per_variant"] == 3841 and out["n_total"] == 7682


def test_sample_size_several_variants_splits_alpha(capsys):
    two = _run(capsys, "ab", "sample-size", "--baseline", "0.10", "--mde", "0.02", "--json")
    three = _run(capsys, "ab", "sample-size", "--baseline", "0.10", "--mde", "0.02", "--variants", "3",
                 "--json")
    assert three["alpha_per_comparison"] == pytest.approx(0.025)
    assert three["n_per_variant"] > two["n_per_variant"] and three["n_total"] == 3 * three["n_per_variant"]


def test_power_json_for_means(capsys):
    # R power.t.test(n = 20, delta = 1) -> power = 0.8689528
    out = _run(capsys, "ab", "power", "--metric", "mean", "--baseline", "5", "--mde", "1", "--sd", "1",
               "--n-per-variant", "20", "--json")
    assert out["power"] == pytest.approx(0.8689528, abs=1e-7)


def test_mean_without_sd_is_a_one_line_error(capsys):
    assert "--sd" in _fails(capsys, "ab", "sample-size", "--metric", "mean", "--baseline", "5", "--mde", "1")


def test_analyze_json_follows_contract(capsys, units, tmp_path):
    report = tmp_path / "r.html"
    out = _run(capsys, "ab", "analyze", "--data", units, "--control", "A", "--metric", "converted",
               "--metric", "revenue", "--covariate", "pre_revenue", "--timestamp-col", "first_exposure",
               "--segment-col", "device", "--report", str(report), "--json")
    assert set(out["srm"]) >= {"statistic", "df", "p_value", "mismatch"}
    assert out["paths"]["report_html"] == str(report) and Path(out["paths"]["report_md"]).is_file()
    assert out["seconds"] > 0
    conv = out["metrics"]["converted"]
    assert conv["type"] == "proportion" and out["metrics"]["revenue"]["type"] == "mean"
    assert [v["name"] for v in conv["variants"]] == ["A", "B", "C"]
    assert set(conv["omnibus"]) == {"test", "statistic", "df", "p_value"}
    assert all(CONTRACT_COMPARISON <= set(c) for c in conv["comparisons"])
    b = conv["comparisons"][0]
    rates = {v["name"]: v["mean"] for v in conv["variants"]}
    assert b["difference"] == pytest.approx(rates["B"] - rates["A"])
    assert b["p_value_adjusted"] >= b["p_value"]
    assert out["metrics"]["revenue"]["cuped"]["variance_reduction"] > 0
    html = report.read_text()
    assert "data:image/png;base64," in html and "after Holm" in html
    assert report.with_suffix(".md").exists()


def test_report_states_the_experiment_its_hypothesis_and_planned_effect_first(capsys, units, tmp_path):
    config = tmp_path / "checkout.yaml"
    config.write_text("name: checkout-redesign\nhypothesis: The one-page checkout raises conversion.\n"
                      "planned_mde_relative: 0.05\n")
    report = tmp_path / "r.html"
    _run(capsys, "ab", "analyze", "--data", units, "--control", "A", "--metric", "converted",
         "--timestamp-col", "first_exposure", "--config", str(config), "--planned-mde", "0.03",
         "--report", str(report), "--json")
    html = report.read_text()
    assert "<h1>Experiment report: checkout-redesign</h1>" in html
    first = [html.index(s) for s in ("The one-page checkout raises conversion.", "+3.0% relative lift",
                                     "Analysed", "Data period", "Dataset digest", "Generated",
                                     "<h2>Decision</h2>")]
    assert first == sorted(first)  # hypothesis and planned effect (the flag wins over the file) first
    digest = hashlib.sha256(Path(units).read_bytes()).hexdigest()[:16]  # the input file's sha256sum
    assert f"sha256:{digest}" in html
    md = report.with_suffix(".md").read_text()
    order = [md.index(s) for s in ("**Hypothesis**: The one-page checkout", "**Data period**", "## Decision")]
    assert order == sorted(order)


def test_a_report_without_a_hypothesis_says_how_to_give_one(capsys, units, tmp_path):
    report = tmp_path / "r.html"
    _run(capsys, "ab", "analyze", "--data", units, "--control", "A", "--metric", "converted",
         "--report", str(report), "--name", "spring test", "--json")
    html = report.read_text()
    assert "Experiment report: spring test" in html and "give --hypothesis" in html
    assert "+5.0% relative lift" in html  # the configured planned effect (configs/experiments.yaml)


def test_analyze_summary_table_matches_unit_level(capsys, units, tmp_path):
    frame = pl.read_parquet(units)
    table = frame.group_by("variant").agg(pl.len().alias("n"),
                                          pl.col("converted").sum().alias("converted_sum"))
    path = tmp_path / "summary.csv"
    table.write_csv(path)
    args = ["--control", "A", "--metric", "converted", "--json"]
    a = _run(capsys, "ab", "analyze", "--data", units, *args)
    b = _run(capsys, "ab", "analyze", "--data", str(path), *args)
    assert b["metrics"]["converted"]["comparisons"][0]["p_value"] == pytest.approx(
        a["metrics"]["converted"]["comparisons"][0]["p_value"], rel=1e-12)


def test_analyze_flags_srm(capsys, tmp_path):
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"variant": ["A"] * 1000 + ["B"] * 1200, "y": rng.integers(0, 2, 2200)})
    path = tmp_path / "srm.csv"
    frame.write_csv(path)
    out = _run(capsys, "ab", "analyze", "--data", str(path), "--control", "A", "--metric", "y", "--json")
    # Issue 6 reference: [1000, 1200] at 0.5/0.5 -> p = 0.000020079
    assert out["srm"]["p_value"] == pytest.approx(0.000020079, rel=1e-4) and out["srm"]["mismatch"]
    assert any("Sample ratio mismatch" in w for w in out["warnings"])


def test_peeking_without_sequential_warns(capsys, units):
    out = _run(capsys, "ab", "analyze", "--data", units, "--control", "A", "--metric", "converted",
               "--looks", "10", "--json")
    assert any(w.startswith("Peeking") for w in out["warnings"])
    quiet = _run(capsys, "ab", "analyze", "--data", units, "--control", "A", "--metric", "converted",
                 "--timestamp-col", "first_exposure", "--looks", "10", "--sequential", "--json")
    assert not any(w.startswith("Peeking") for w in quiet["warnings"])
    assert "sequential" in quiet["metrics"]["converted"]["comparisons"][0]


@pytest.mark.parametrize(("args", "needle"), [
    (["--metric", "nope"], "'nope'"),
    (["--metric", "converted", "--control", "Z"], "unknown control 'Z'"),
    (["--metric", "converted", "--expected-split", "0.5,0.4,0.2"], "sum to 1"),
    (["--metric", "converted", "--expected-split", "0.5,0.5"], "2 shares but there are 3"),
    (["--metric", "converted", "--expected-split", "a,b"], "--expected-split"),
])
def test_analyze_bad_input_is_one_line_error(capsys, units, args, needle):
    base = ["ab", "analyze", "--data", units]
    if "--control" not in args:
        base += ["--control", "A"]
    assert needle in _fails(capsys, *base, *args)


def test_analyze_missing_file_is_one_line_error(capsys, tmp_path):
    assert "not found" in _fails(capsys, "ab", "analyze", "--data", str(tmp_path / "x.csv"), "--control", "A",
                                 "--metric", "y")


def test_mde_json_inverts_sample_size(capsys):
    # R power.prop.test(p1 = .10, p2 = .12, power = .8) -> n = 3840.85, so the MDE at that n is +0.02
    out = _run(capsys, "ab", "mde", "--baseline", "0.10", "--n-per-variant", "3840.85", "--json")
    assert out["mde"] == pytest.approx(0.02, abs=1e-5) and out["mde_relative"] == pytest.approx(0.2, abs=1e-4)
