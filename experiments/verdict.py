"""Plain-language verdict lines from an ExperimentResult (text only, no I/O)."""

from __future__ import annotations

from experiments.results import ExperimentResult
from experiments.stats.corrections import LABELS
from reports.numbers import estimate, p_value


def _unit(kind: str) -> tuple[float, str]:
    return (100.0, " pp") if kind == "proportion" else (1.0, "")


def _significant(result: ExperimentResult) -> list[tuple[str, str, float]]:
    """(variant, metric, difference) of every significant comparison."""
    out = []
    for name, metric in result.metrics.items():
        for c in metric.comparisons:
            p = (metric.sequential_adjusted.get(c.variant) if result.sequential_decision
                 and c.variant in metric.sequential else c.p_value_adjusted)
            if p is not None and p < result.alpha:
                out.append((c.variant, name, c.difference))
    return out


def decision_headline(result: ExperimentResult) -> str:
    """The decision in one sentence: distrust (SRM), which variants win or lose, or no difference."""
    if result.srm.mismatch:
        return ("Do not decide: the sample ratio does not match the planned split, so assignment or "
                "logging is broken. Find the cause first.")
    found = _significant(result)
    if not found:
        return (f"No variant differs detectably from {result.control} on any metric at alpha "
                f"{result.alpha:g}: keep {result.control}, or run longer if the planned effect is not yet "
                "reachable (see the power warnings).")
    wins = [f"{v} raises {m}" for v, m, d in found if d > 0]
    losses = [f"{v} lowers {m}" for v, m, d in found if d <= 0]
    text = "; ".join(wins + losses)
    return (f"Significant differences against {result.control}: {text}. "
            "Everything else shows no detectable change.")


def verdict_lines(result: ExperimentResult) -> list[str]:
    """One line per treatment x metric, e.g. "B lifts conversion by +1.20 pp [0.40, 2.00] (+12% relative),
    p = 0.003 after Holm: significant"; a non-significant comparison reads "C vs A on revenue: no
    detectable difference, +0.0083 [-0.51, 0.53] ...: not significant", never as a lift. Uses
    always-valid p-values and confidence sequences when the result is a sequential decision."""
    label = LABELS[result.correction]
    after = "uncorrected" if result.correction == "none" else f"after {label}"
    lines = []
    for name, metric in result.metrics.items():
        k, unit = _unit(metric.type)
        for c in metric.comparisons:
            diff, lo, hi, p = c.difference, c.ci_low, c.ci_high, c.p_value_adjusted
            kind_p = "p"
            if result.sequential_decision and c.variant in metric.sequential:
                s = metric.sequential[c.variant]
                lo, hi, kind_p = s.ci_low, s.ci_high, "always-valid p"
                p = metric.sequential_adjusted[c.variant]
            significant = p is not None and p < result.alpha
            shown = estimate(diff, lo, hi, unit, scale=k)
            p_text = f"{kind_p} = {p_value(p)}" if p is not None and p >= 0.001 else f"{kind_p} {p_value(p)}"
            tail = (f"({c.relative_lift:+.1%} relative), {p_text} {after} "
                    f"(alpha {result.alpha:g}): {'significant' if significant else 'not significant'}")
            if significant:
                verb = "lifts" if diff > 0 else "lowers"
                line = f"{c.variant} {verb} {name} by {shown} {tail}"
            else:
                line = f"{c.variant} vs {result.control} on {name}: no detectable difference, {shown} {tail}"
            if result.srm.mismatch:
                line += " (but sample ratio mismatch: not trustworthy)"
            lines.append(line)
    return lines
