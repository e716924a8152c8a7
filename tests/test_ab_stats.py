"""Reference tests of experiments.stats; each number names its independent source."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.proportion import power_proportions_2indep, samplesize_proportions_2indep_onetail

from experiments.stats import MeanSummary, ProportionSummary, RegressionSummary
from experiments.stats.bayes import beta_binomial_compare
from experiments.stats.corrections import adjust_p_values
from experiments.stats.cuped import cuped_adjust
from experiments.stats.errors import StatsInputError
from experiments.stats.means import one_way_anova, t_test
from experiments.stats.power import Design, minimum_detectable_effect, power_for, sample_size
from experiments.stats.proportions import chi_square_independence, two_proportion_test
from experiments.stats.srm import sample_ratio_mismatch


def test_two_proportion_test_matches_r_prop_test():
    # Issue 6 reference, R prop.test(c(500, 42), c(1009, 104), correct = FALSE)
    c = two_proportion_test(ProportionSummary(1009, 500), ProportionSummary(104, 42))
    assert c.difference == pytest.approx(0.091694, abs=1e-6)
    assert c.ci_low == pytest.approx(-0.0075254, abs=1e-7)
    assert c.ci_high == pytest.approx(0.190913, abs=1e-6)
    assert c.p_value == pytest.approx(0.074866, abs=1e-6)


def test_omnibus_chi_square_matches_scipy_contingency():
    groups = [ProportionSummary(1000, 100), ProportionSummary(1010, 130), ProportionSummary(990, 95)]
    table = [[g.successes, g.n - g.successes] for g in groups]
    ref = stats.chi2_contingency(table, correction=False)  # scipy, independent implementation
    got = chi_square_independence(groups)
    assert got.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert got.df == 2


def test_srm_matches_issue_reference_values():
    # Issue 6 references (R chisq.test)
    assert sample_ratio_mismatch([1000, 1200], [0.5, 0.5]).p_value == pytest.approx(0.000020079, rel=1e-4)
    r = sample_ratio_mismatch([500, 500, 600], [0.34, 0.33, 0.33])
    assert r.p_value == pytest.approx(0.000592638, rel=1e-5)
    assert r.mismatch


@pytest.mark.parametrize("split", [[0.5, 0.4], [0.5, 0.5, 0.0], [0.6, 0.6]])
def test_srm_rejects_bad_split(split):
    with pytest.raises(StatsInputError):
        sample_ratio_mismatch([100, 100], split)


def test_holm_matches_issue_reference():
    # Issue 6 reference (R p.adjust(method = "holm"))
    got = adjust_p_values([0.01, 0.04, 0.03, 0.005, 0.55, 0.6], "holm")
    assert got == pytest.approx([0.05, 0.12, 0.12, 0.03, 1, 1])


@pytest.mark.parametrize(("ours", "theirs"),
                         [("holm", "holm"), ("bh", "fdr_bh"), ("bonferroni", "bonferroni")])
def test_corrections_match_statsmodels(ours, theirs):
    p = np.random.default_rng(3).uniform(0, 0.2, 15)
    assert adjust_p_values(p, ours) == pytest.approx(multipletests(p, method=theirs)[1].tolist())


def test_welch_and_student_match_scipy_on_raw_data():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 3, 200), rng.normal(10.8, 5, 150)
    sa, sb = (MeanSummary(len(x), x.sum(), (x * x).sum()) for x in (a, b))
    for equal_var in (False, True):
        ref = stats.ttest_ind(b, a, equal_var=equal_var)  # scipy on the raw values
        got = t_test(sb, sa, equal_var=equal_var)
        assert got.statistic == pytest.approx(ref.statistic, rel=1e-9)
        assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        ci = ref.confidence_interval(0.95)
        assert (got.ci_low, got.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_anova_matches_scipy_f_oneway():
    rng = np.random.default_rng(1)
    xs = [rng.normal(m, s, n) for m, s, n in ((1, 1, 50), (1.3, 2, 80), (0.8, 1.5, 60))]
    sums = [MeanSummary(len(x), x.sum(), (x * x).sum()) for x in xs]
    for equal_var in (True, False):
        ref = stats.f_oneway(*xs, equal_var=equal_var)  # scipy (Welch ANOVA when equal_var=False)
        got = one_way_anova(sums, equal_var)
        assert got.statistic == pytest.approx(ref.statistic, rel=1e-9)
        assert got.p_value == pytest.approx(ref.pvalue, rel=1e-8)


def test_relative_lift_interval_covers_delta_method_by_simulation():
    # The delta-method SE of pt/pc - 1 agrees with the spread of simulated ratios (large n).
    t, c = ProportionSummary(20000, 2400), ProportionSummary(20000, 2000)
    got = two_proportion_test(t, c)
    rng = np.random.default_rng(5)
    sims = rng.binomial(20000, 0.12, 200_000) / rng.binomial(20000, 0.10, 200_000) - 1
    se_sim = sims.std()
    assert (got.relative_ci_high - got.relative_ci_low) / (2 * 1.959964) == pytest.approx(se_sim, rel=0.02)


def test_sample_size_matches_r_power_prop_test():
    # Issue 6 reference: R power.prop.test(p1 = .10, p2 = .12, power = .8) -> n = 3840.85
    plan = sample_size(Design("proportion", 0.10, 0.02), 0.8)
    assert plan.n_control_exact == pytest.approx(3840.85, abs=0.01)
    assert plan.n_per_variant == 3841 and plan.n_total == 7682


def test_power_matches_r_documentation_examples():
    # R ?power.prop.test and ?power.t.test examples:
    # power.prop.test(n = 50, p1 = .50, p2 = .75) -> power = 0.7401659
    assert power_for(Design("proportion", 0.5, 0.25), 50) == pytest.approx(0.7401659, abs=1e-7)
    # power.t.test(n = 20, delta = 1) -> power = 0.8689528
    assert power_for(Design("mean", 0, 1, sd=1), 20) == pytest.approx(0.8689528, abs=1e-7)
    # power.t.test(power = .90, delta = 1) -> n = 22.02110
    assert sample_size(Design("mean", 0, 1, sd=1), 0.9).n_control_exact == pytest.approx(22.02110, abs=1e-5)


def test_unequal_allocation_proportions_match_statsmodels():
    # statsmodels: prop1 = control (nobs1), prop2 = treatment (nobs2 = ratio * nobs1)
    ref_n = samplesize_proportions_2indep_onetail(-0.02, 0.12, 0.8, ratio=2, alpha=0.05)
    plan = sample_size(Design("proportion", 0.10, 0.02, ratio=2))
    assert plan.n_control_exact == pytest.approx(ref_n, rel=1e-9)
    ref_p = power_proportions_2indep(-0.02, 0.12, 3000, ratio=2, alpha=0.05).power  # counts both tails
    assert power_for(Design("proportion", 0.10, 0.02, ratio=2), 3000) == pytest.approx(ref_p, abs=1e-5)


def test_means_with_ratio_and_variants_match_statsmodels():
    # statsmodels TTestIndPower (noncentral t, df = n1 + n2 - 2); 3 variants -> alpha / 2
    ref_n = TTestIndPower().solve_power(effect_size=0.3, power=0.8, alpha=0.05, ratio=1.5)
    got = sample_size(Design("mean", 10, 3, sd=10, ratio=1.5)).n_control_exact
    assert got == pytest.approx(ref_n, rel=1e-4)
    ref_p = TTestIndPower().power(effect_size=0.3, nobs1=100, alpha=0.025, ratio=1.5)
    design = Design("mean", 10, 3, sd=10, ratio=1.5, variants=3)
    assert power_for(design, 100) == pytest.approx(ref_p, abs=1e-5)


def test_means_sample_size_for_tiny_effect_uses_normal_limit():
    # Normal approximation n = 2 (z_a + z_b)^2 sd^2 / delta^2 is exact in the limit of huge n.
    plan = sample_size(Design("mean", 0, 1e-4, sd=1), 0.8)
    z = stats.norm.isf(0.025) + stats.norm.isf(0.2)
    assert plan.n_control_exact == pytest.approx(2 * z**2 / 1e-8, rel=1e-6)


def test_mde_inverts_power():
    mde = minimum_detectable_effect(Design("proportion", 0.10, 0.01), 3840.85, 0.8)
    assert mde == pytest.approx(0.02, abs=1e-5)


def test_bayes_chance_to_beat_matches_closed_form():
    # Evan Miller's closed form for P(p_B > p_A) with Beta posteriors (integer parameters).
    t, c = ProportionSummary(1000, 130), ProportionSummary(1000, 110)
    a_b, b_b, a_a, b_a = 1 + 130, 1 + 870, 1 + 110, 1 + 890
    i = np.arange(a_b)
    exact = np.sum(np.exp(special.betaln(a_a + i, b_a + b_b) - np.log(b_b + i) - special.betaln(1 + i, b_b)
                          - special.betaln(a_a, b_a)))
    got = beta_binomial_compare(t, c, draws=400_000)
    assert got.chance_to_beat == pytest.approx(exact, abs=0.003)


def test_cuped_matches_explicit_adjustment_and_keeps_difference_unbiased():
    rng = np.random.default_rng(2)
    n = 5000
    x = rng.normal(50, 10, 2 * n)
    y = 0.8 * x + rng.normal(0, 5, 2 * n) + np.r_[np.zeros(n), np.full(n, 1.0)]
    groups = [RegressionSummary(n, s.sum(), (s * s).sum(), r.sum(), (r * r).sum(), (s * r).sum())
              for s, r in ((y[:n], x[:n]), (y[n:], x[n:]))]
    res = cuped_adjust(groups)
    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    adj = y - theta * (x - x.mean())  # explicit per-unit CUPED, then scipy's Welch test
    ref = stats.ttest_ind(adj[n:], adj[:n], equal_var=False)
    got = t_test(res.adjusted[1], res.adjusted[0])
    assert res.theta == pytest.approx(theta, rel=1e-9)
    assert got.statistic == pytest.approx(ref.statistic, rel=1e-6)
    assert res.variance_reduction == pytest.approx(np.corrcoef(x[:n], y[:n])[0, 1] ** 2, abs=0.02)


def test_design_rejects_rate_outside_unit_interval():
    with pytest.raises(StatsInputError):
        Design("proportion", 0.95, 0.1)
