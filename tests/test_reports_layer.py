"""The shared reporting layer: number formatting, Wilson intervals, the plot style that cannot leak."""

from __future__ import annotations

import matplotlib.pyplot as plt
import optuna
import pytest

from reports import numbers
from reports.style import CYCLE, plot_style


def test_estimate_and_interval_share_decimals_set_by_the_interval() -> None:
    # The example: "+1.162 [0.02887, 2.294]" must read with one precision throughout.
    assert numbers.estimate(1.162, 0.02887, 2.294) == "+1.16 [0.03, 2.29]"
    assert numbers.estimate(0.01234, 0.004, 0.0207, " pp", scale=100) == "+1.23 pp [0.40, 2.07]"


def test_numbers_round_only_for_humans() -> None:
    assert numbers.num(0.12000000000000001) == "0.120"
    assert numbers.num(1234.56) == "1,235" and numbers.num(0.028871) == "0.0289"
    assert numbers.pct(0.8334) == "83.3%" and numbers.p_value(0.0004) == "< 0.001"
    assert numbers.num(float("nan")) == numbers.DASH


def test_wilson_matches_statsmodels_and_r() -> None:
    from statsmodels.stats.proportion import proportion_confint

    # R: prop.test(0, 5, correct = FALSE)$conf.int -> 0.0000000 0.4344825
    assert numbers.wilson(0, 5) == pytest.approx((0.0, 0.4344825), abs=1e-6)
    for x, n in ((8, 20), (3, 50), (49, 50)):
        assert numbers.wilson(x, n) == pytest.approx(proportion_confint(x, n, method="wilson"), abs=1e-6)


def test_optuna_plots_do_not_change_the_process_style() -> None:
    """Optuna's matplotlib plots call plt.style.use("ggplot"); drawn through training.plots, the
    process-wide style is untouched and report plots keep the palette."""
    from training.plots import optuna_figures

    before = (plt.rcParams["axes.facecolor"], plt.rcParams["axes.prop_cycle"])
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    for fig in optuna_figures(study).values():
        plt.close(fig)
    assert (plt.rcParams["axes.facecolor"], plt.rcParams["axes.prop_cycle"]) == before
    with plot_style():
        fig, ax = plt.subplots()
        (line,) = ax.plot([0, 1])
        assert line.get_color().lower() == CYCLE[0].lower()
        plt.close(fig)
