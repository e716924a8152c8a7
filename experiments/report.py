"""HTML (one self-contained file, plots as base64 PNG) and Markdown reports of an ExperimentResult.

The HTML page is rendered by the shared reporting layer (:mod:`reports`): the decision first,
then the evidence. Plots are drawn under :func:`reports.plot_style`, so their colours are the
palette's whatever style another library set process-wide, and every legend names its colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from experiments.report_tables import censored_weeks, report_tables  # noqa: E402
from experiments.results import ExperimentResult, MetricResult  # noqa: E402
from experiments.verdict import decision_headline, verdict_lines  # noqa: E402
from reports import Decision, Figure, Header, Section, plot_style, render_page  # noqa: E402
from reports import Table as PageTable  # noqa: E402
from reports.style import PALETTE, color, figure_png  # noqa: E402

SIGNIFICANT, NOT_SIGNIFICANT = PALETTE["blue"], PALETTE["grey"]


@dataclass(frozen=True)
class ReportMeta:
    """What the report is about: the experiment's name, its data period, the input's digest, the
    hypothesis and the planned effect (the relative lift the test was sized for, a share)."""

    name: str = "experiment"
    period: str | None = None
    digest: str | None = None
    units: int | None = None
    hypothesis: str | None = None
    planned_mde_relative: float | None = None

    def purpose(self) -> tuple[tuple[str, str], ...]:
        """The report's first facts: what the experiment set out to show."""
        planned = (f"{self.planned_mde_relative:+.1%} relative lift (the minimum detectable effect the "
                   "test was sized for)" if self.planned_mde_relative is not None else "not stated")
        return (("Hypothesis", self.hypothesis or "not stated (give --hypothesis or 'hypothesis' in the "
                 "config)"), ("Planned effect", planned))


def _scale(metric: MetricResult) -> tuple[float, str]:
    return (100.0, " (%)") if metric.type == "proportion" else (1.0, "")


def rates_plot(name: str, metric: MetricResult) -> bytes:
    """Per-variant mean (rate) with its confidence interval."""
    k, unit = _scale(metric)
    with plot_style():
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.55 * len(metric.variants)))
        for i, v in enumerate(metric.variants):
            ax.errorbar(v.mean * k, i, xerr=[[(v.mean - v.ci_low) * k], [(v.ci_high - v.mean) * k]], fmt="o",
                        color=color(i), capsize=4)
        ax.set_yticks(range(len(metric.variants)), [v.name for v in metric.variants])
        ax.invert_yaxis()
        ax.set_xlabel(f"{name}{unit}, dot = mean, bar = interval" if metric.type == "proportion"
                      else f"mean {name} per unit, bar = interval")
        ax.set_title(f"{name} by variant")
        ax.grid(axis="y", visible=False)
        return figure_png(fig)


def forest_plot(result: ExperimentResult) -> bytes:
    """Relative lift of every treatment x metric against the control, with its interval."""
    rows = [(f"{c.variant} · {name}", c) for name, m in result.metrics.items() for c in m.comparisons]
    with plot_style():
        fig, ax = plt.subplots(figsize=(8, 1.4 + 0.5 * len(rows)))
        for i, (_, c) in enumerate(rows):
            sig = c.p_value_adjusted is not None and c.p_value_adjusted < result.alpha
            ax.errorbar(c.relative_lift * 100, i, fmt="o", color=SIGNIFICANT if sig else NOT_SIGNIFICANT,
                        capsize=4, xerr=[[(c.relative_lift - c.relative_ci_low) * 100],
                                         [(c.relative_ci_high - c.relative_lift) * 100]])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel(f"relative lift vs {result.control} (%), unadjusted {1 - result.alpha:.0%} interval")
        ax.set_title("Lift of each variant against the control")
        handles = [Line2D([], [], color=SIGNIFICANT, marker="o", label="significant after correction"),
                   Line2D([], [], color=NOT_SIGNIFICANT, marker="o", label="not significant")]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2)
        ax.grid(axis="y", visible=False)
        return figure_png(fig)


def timeline_plot(result: ExperimentResult, name: str) -> bytes | None:
    """Cumulative difference by day with the fixed interval and the confidence sequence."""
    if result.timeline is None:
        return None
    part = result.timeline.filter(pl.col("metric") == name)
    if part.is_empty():
        return None
    k, unit = _scale(result.metrics[name])
    with plot_style():
        fig, ax = plt.subplots(figsize=(8, 3.8))
        for i, (variant,) in enumerate(part.select("variant").unique(maintain_order=True).iter_rows()):
            rows = part.filter(pl.col("variant") == variant)
            x = list(range(rows.height))
            c = color(i + 1)
            ax.plot(x, rows["difference"] * k, color=c, label=f"{variant} - {result.control}")
            ax.fill_between(x, rows["ci_low"] * k, rows["ci_high"] * k, color=c, alpha=0.15)
            ax.plot(x, rows["cs_low"] * k, color=c, ls="--", lw=0.8)
            ax.plot(x, rows["cs_high"] * k, color=c, ls="--", lw=0.8)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel("day of first exposure")
        ax.set_ylabel(f"cumulative difference{' (pp)' if unit else ''}")
        ax.set_title(f"{name}: cumulative difference over time")
        ax.legend()
        return figure_png(fig)


def funnel_plot(funnel: pl.DataFrame) -> bytes:
    """Share of exposed units reaching each funnel step, per variant, with intervals."""
    steps = funnel["step"].unique(maintain_order=True).to_list()
    variants = funnel["variant"].unique(maintain_order=True).to_list()
    with plot_style():
        fig, ax = plt.subplots(figsize=(8, 3.8))
        width = 0.8 / len(variants)
        for j, v in enumerate(variants):
            part = funnel.filter(pl.col("variant") == v)
            x = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(steps))]
            rate = part["rate"].to_numpy() * 100
            err = [rate - part["ci_low"].to_numpy() * 100, part["ci_high"].to_numpy() * 100 - rate]
            ax.bar(x, rate, width, yerr=err, capsize=3, label=v, color=color(j))
        ax.set_xticks(range(len(steps)), steps)
        ax.set_ylabel("% of exposed units")
        ax.set_title("Funnel after first exposure")
        ax.legend()
        ax.grid(axis="x", visible=False)
        return figure_png(fig)


def cohort_plot(cohorts: pl.DataFrame) -> bytes:
    """Share returning and share purchasing in each week after first exposure, per variant; weeks
    that the data does not cover for every user (censored) are drawn hollow and shaded."""
    censored = censored_weeks(cohorts)
    with plot_style():
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for j, v in enumerate(cohorts["variant"].unique(maintain_order=True).to_list()):
            part = cohorts.filter(pl.col("variant") == v)
            for ax, col in zip(axes, ("returning_share", "purchasing_share"), strict=True):
                ax.plot(part["week"], part[col] * 100, marker="o", color=color(j), label=v)
                cut = part.filter(pl.col("week").is_in(censored))
                ax.plot(cut["week"], cut[col] * 100, ls="", marker="o", mfc="white", color=color(j))
        for ax, title in zip(axes, ("returning (any event)", "purchasing"), strict=True):
            for week in censored:
                ax.axvspan(week - 0.5, week + 0.5, color=PALETTE["grey"], alpha=0.15, lw=0)
            ax.set_title(f"% {title}")
            ax.set_xlabel("week after first exposure")
        handles = axes[0].get_legend_handles_labels()[0]
        if censored:
            handles.append(plt.Rectangle((0, 0), 1, 1, color=PALETTE["grey"], alpha=0.3,
                                         label="censored: data ends within the week"))
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles))
        return figure_png(fig)


def _images(result: ExperimentResult) -> dict[str, tuple[bytes, str]]:
    """Plot name -> (PNG, how to read it)."""
    images = {"lifts": (forest_plot(result), "Dots are the relative lift, bars its interval; a bar "
                        "crossing 0 means no detectable difference.")}
    for name, metric in result.metrics.items():
        images[f"{name} by variant"] = (rates_plot(name, metric), "")
        timeline = timeline_plot(result, name)
        if timeline is not None:
            images[f"{name} over time"] = (timeline, "Shaded: fixed-horizon interval; dashed: confidence "
                                                     "sequence (valid at any look).")
    if result.funnel is not None:
        images["funnel"] = (funnel_plot(result.funnel), "Bars are shares of exposed units with intervals.")
    if result.cohorts is not None:
        images["weekly cohorts"] = (cohort_plot(result.cohorts), "Hollow points in the grey band are "
                                    "censored weeks: a low value there is missing data, not behaviour.")
    return images


def _markdown(result: ExperimentResult, header: Header, images: dict[str, str]) -> str:
    facts = [*header.purpose, ("Analysed", header.subject), ("Data period", header.period or "unknown"),
             ("Dataset digest", f"`{header.digest or 'unknown'}`"), *header.facts,
             ("Generated", header.generated_at)]
    out = [f"# {header.title}", ""] + [f"- **{name}**: {value}" for name, value in facts]
    out += ["", "## Decision", "", decision_headline(result), ""]
    out += [f"- {line}" for line in verdict_lines(result)]
    if result.warnings:
        out += ["", "## Warnings", ""] + [f"- **{w}**" for w in result.warnings]
    out += ["", _srm_line(result)]
    for t in report_tables(result):
        out += ["", f"## {t.title}", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
        out += ["| " + " | ".join(r) + " |" for r in t.rows]
        if t.note:
            out += ["", t.note]
    out += ["", "## Plots", ""] + [f"![{name}]({path})" for name, path in images.items()]
    return "\n".join(out) + "\n"


def _srm_line(result: ExperimentResult) -> str:
    srm = result.srm
    state = "MISMATCH: do not trust the results" if srm.mismatch else "ok"
    return (f"Sample ratio check: chi-square {srm.statistic:.3g}, df {srm.df}, p = {srm.p_value:.2g} "
            f"(mismatch below {srm.threshold:g}): {state}.")


def report_header(result: ExperimentResult, title: str, meta: ReportMeta) -> Header:
    """The title block: purpose (hypothesis, planned effect) first, then what was analysed."""
    subject = (f"{meta.name}: variants {', '.join(result.variants)} (control {result.control}); "
               f"metrics {', '.join(result.metrics)}")
    facts = [("Units", f"{meta.units:,}")] if meta.units is not None else []
    facts += [("Decision rule", f"alpha {result.alpha:g}, {result.correction} correction"
               + (", sequential (always-valid)" if result.sequential_decision else ""))]
    return Header(title, subject, meta.period, meta.digest, facts=tuple(facts), purpose=meta.purpose())


def render_html(result: ExperimentResult, header: Header, images: dict[str, tuple[bytes, str]]) -> str:
    """The self-contained HTML page of ``result``."""
    decision = Decision(decision_headline(result), verdict_lines(result),
                        "fail" if result.srm.mismatch else "neutral")
    figures = [Figure(name, png, caption) for name, (png, caption) in images.items()]
    sections = []
    if result.warnings:
        sections.append(Section("Warnings", warnings=list(result.warnings)))
    sections.append(Section("Evidence", intro=_srm_line(result), figures=figures[:1]))
    tables = [PageTable(t.title, t.header, t.rows, t.note) for t in report_tables(result)]
    sections.append(Section("Tables", tables=tables))
    sections.append(Section("Plots", figures=figures[1:]))
    return render_page(header, decision, sections)


def write_report(result: ExperimentResult, path: str | Path, title: str = "Experiment report",
                 meta: ReportMeta | None = None) -> dict[str, str]:
    """Write ``path`` (self-contained HTML), ``path`` with ``.md`` and the PNGs in ``<stem>_files/``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = _images(result)
    assets = path.parent / f"{path.stem}_files"
    assets.mkdir(exist_ok=True)
    links = {}
    for i, (name, (png, _)) in enumerate(images.items()):
        file = assets / f"plot_{i}.png"
        file.write_bytes(png)
        links[name] = f"{assets.name}/{file.name}"
    header = report_header(result, title, meta or ReportMeta())
    path.write_text(render_html(result, header, images))
    md = path.with_suffix(".md")
    md.write_text(_markdown(result, header, links))
    return {"html": str(path), "markdown": str(md), "plots": str(assets)}
