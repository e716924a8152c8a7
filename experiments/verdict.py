"""Plain-language verdict lines from an ExperimentResult (text only, no I/O)."""

from __future__ import annotations

from experiments.results import ExperimentResult
from experiments.stats.corrections import LABELS


def _fmt(value: float, kind: str) -> str:
    return f"{value * 100:+.2f} pp" if kind == "proportion" else f"{value:+.4g}"


def _bound(value: float, kind: str) -> str:
    return f"{value * 100:.2f}" if kind == "proportion" else f"{value:.4g}"


def verdict_lines(result: ExperimentResult) -> list[str]:
    """One line per treatment x metric, e.g. "B lifts conversion by +1.20 pp [0.40, 2.00] (+12.0%),
    p = 0.003 after Holm: significant". Uses always-valid p-values and confidence sequences when
    the result is a sequential decision."""
    label = LABELS[result.correction]
    after = "uncorrected" if result.correction == "none" else f"after {label}"
    lines = []
    for name, metric in result.metrics.items():
        for c in metric.comparisons:
            diff, lo, hi, p = c.difference, c.ci_low, c.ci_high, c.p_value_adjusted
            kind_p = "p"
            if result.sequential_decision and c.variant in metric.sequential:
                s = metric.sequential[c.variant]
                lo, hi, kind_p = s.ci_low, s.ci_high, "always-valid p"
                p = metric.sequential_adjusted[c.variant]
            verb = "lifts" if diff > 0 else "lowers"
            significant = p is not None and p < result.alpha
            interval = f"[{_bound(lo, metric.type)}, {_bound(hi, metric.type)}]"
            line = (f"{c.variant} {verb} {name} by {_fmt(diff, metric.type)} {interval} "
                    f"({c.relative_lift:+.1%} relative), {kind_p} = {p:.3g} {after}: "
                    f"{'significant' if significant else 'not significant'}")
            if result.srm.mismatch:
                line += " (but sample ratio mismatch: not trustworthy)"
            lines.append(line)
    return lines
