"""Funnel per variant: each step's rate among exposed units with a CI and a test against control."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from experiments.stats.corrections import adjust_p_values
from experiments.stats.proportions import proportion_ci, two_proportion_test
from experiments.stats.summaries import ProportionSummary


def funnel_by_variant(units: pl.DataFrame, control: str, steps: Sequence[str], variant_col: str = "variant",
                      alpha: float = 0.05, correction: str = "holm") -> pl.DataFrame:
    """Rows (step, variant, n, reached, rate, ci_low, ci_high, step_conversion, difference, p_value,
    p_value_adjusted) for the 0/1 columns ``reached_<step>``; rates are shares of all exposed units,
    ``step_conversion`` is reached / reached at the previous step. Tests are two-proportion z-tests
    against ``control``, corrected over steps x variants."""
    cols = [f"reached_{s}" for s in steps]
    sums = (units.group_by(pl.col(variant_col).cast(pl.String))
            .agg(pl.len().alias("n"), *[pl.col(c).sum() for c in cols]).sort(variant_col))
    by_variant = {r[variant_col]: r for r in sums.to_dicts()}
    rows = []
    for i, (step, col) in enumerate(zip(steps, cols, strict=True)):
        for variant, r in by_variant.items():
            s = ProportionSummary(int(r["n"]), float(r[col]))
            lo, hi = proportion_ci(s, alpha)
            prev = float(r[cols[i - 1]]) if i else float(r["n"])
            row = {"step": step, "variant": variant, "n": s.n, "reached": int(s.successes), "rate": s.rate,
                   "ci_low": lo, "ci_high": hi, "step_conversion": s.successes / prev if prev else None,
                   "difference": None, "p_value": None}
            if variant != control and control in by_variant:
                c = by_variant[control]
                test = two_proportion_test(s, ProportionSummary(int(c["n"]), float(c[col])), alpha)
                row.update(difference=test.difference, p_value=test.p_value)
            rows.append(row)
    tested = [i for i, r in enumerate(rows) if r["p_value"] is not None]
    adjusted = adjust_p_values([rows[i]["p_value"] for i in tested], correction)  # type: ignore[arg-type]
    for r in rows:
        r["p_value_adjusted"] = None
    for i, p in zip(tested, adjusted, strict=True):
        rows[i]["p_value_adjusted"] = p
    return pl.DataFrame(rows, infer_schema_length=None)
