"""HTML (self-contained, plots as base64 PNG) and Markdown reports of an ExperimentResult."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from experiments.report_tables import report_tables  # noqa: E402
from experiments.results import ExperimentResult, MetricResult  # noqa: E402
from experiments.verdict import verdict_lines  # noqa: E402


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _scale(metric: MetricResult) -> tuple[float, str]:
    return (100.0, " (%)") if metric.type == "proportion" else (1.0, "")


def rates_plot(name: str, metric: MetricResult) -> bytes:
    """Per-variant mean (rate) with its confidence interval."""
    k, unit = _scale(metric)
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.5 * len(metric.variants)))
    for i, v in enumerate(metric.variants):
        ax.errorbar(v.mean * k, i, xerr=[[(v.mean - v.ci_low) * k], [(v.ci_high - v.mean) * k]], fmt="o",
                    color="C0" if i == 0 else "C1", capsize=4)
    ax.set_yticks(range(len(metric.variants)), [v.name for v in metric.variants])
    ax.invert_yaxis()
    ax.set_xlabel(f"{name}{unit} with its interval" if metric.type == "proportion" else f"mean {name}")
    ax.set_title(f"{name} by variant")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def forest_plot(result: ExperimentResult) -> bytes:
    """Relative lift of every treatment x metric against the control, with its interval."""
    rows = [(f"{c.variant} · {name}", c) for name, m in result.metrics.items() for c in m.comparisons]
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.45 * len(rows)))
    for i, (_, c) in enumerate(rows):
        sig = c.p_value_adjusted is not None and c.p_value_adjusted < result.alpha
        ax.errorbar(c.relative_lift * 100, i, fmt="o", color="C2" if sig else "grey", capsize=4,
                    xerr=[[(c.relative_lift - c.relative_ci_low) * 100],
                          [(c.relative_ci_high - c.relative_lift) * 100]])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"relative lift vs {result.control} (%), unadjusted {1 - result.alpha:.0%} interval")
    ax.set_title("Lifts (green: significant after correction)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def timeline_plot(result: ExperimentResult, name: str) -> bytes | None:
    """Cumulative difference by day with the fixed interval and the confidence sequence."""
    if result.timeline is None:
        return None
    part = result.timeline.filter(pl.col("metric") == name)
    if part.is_empty():
        return None
    k, unit = _scale(result.metrics[name])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, (variant,) in enumerate(part.select("variant").unique(maintain_order=True).iter_rows()):
        rows = part.filter(pl.col("variant") == variant)
        x = list(range(rows.height))
        color = f"C{i + 1}"
        ax.plot(x, rows["difference"] * k, color=color, label=f"{variant} - {result.control}")
        ax.fill_between(x, rows["ci_low"] * k, rows["ci_high"] * k, color=color, alpha=0.15)
        ax.plot(x, rows["cs_low"] * k, color=color, ls="--", lw=0.8)
        ax.plot(x, rows["cs_high"] * k, color=color, ls="--", lw=0.8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("day of first exposure")
    ax.set_ylabel(f"cumulative difference{' (pp)' if unit else ''}")
    ax.set_title(f"{name}: shaded = fixed interval, dashed = confidence sequence")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def funnel_plot(funnel: pl.DataFrame) -> bytes:
    """Share of exposed units reaching each funnel step, per variant, with intervals."""
    steps = funnel["step"].unique(maintain_order=True).to_list()
    variants = funnel["variant"].unique(maintain_order=True).to_list()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / len(variants)
    for j, v in enumerate(variants):
        part = funnel.filter(pl.col("variant") == v)
        x = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(steps))]
        rate = part["rate"].to_numpy() * 100
        err = [rate - part["ci_low"].to_numpy() * 100, part["ci_high"].to_numpy() * 100 - rate]
        ax.bar(x, rate, width, yerr=err, capsize=3, label=v, color=f"C{j}")
    ax.set_xticks(range(len(steps)), steps)
    ax.set_ylabel("% of exposed units")
    ax.set_title("Funnel after first exposure")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def cohort_plot(cohorts: pl.DataFrame) -> bytes:
    """Share returning and share purchasing in each week after first exposure, per variant."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for j, v in enumerate(cohorts["variant"].unique(maintain_order=True).to_list()):
        part = cohorts.filter(pl.col("variant") == v)
        for ax, col in zip(axes, ("returning_share", "purchasing_share"), strict=True):
            ax.plot(part["week"], part[col] * 100, marker="o", color=f"C{j}", label=v)
    for ax, title in zip(axes, ("returning (any event)", "purchasing"), strict=True):
        ax.set_title(f"% {title}")
        ax.set_xlabel("week after first exposure")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _png(fig)


def _markdown(result: ExperimentResult, title: str, images: dict[str, str]) -> str:
    out = [f"# {title}", "", "## Verdict", ""] + [f"- {line}" for line in verdict_lines(result)]
    if result.warnings:
        out += ["", "## Warnings", ""] + [f"- **{w}**" for w in result.warnings]
    srm = result.srm
    out += ["", f"SRM check: chi-square {srm.statistic:.3f}, df {srm.df}, p = {srm.p_value:.3g} "
                f"({'MISMATCH' if srm.mismatch else 'ok'})."]
    for t in report_tables(result):
        out += ["", f"## {t.title}", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
        out += ["| " + " | ".join(r) + " |" for r in t.rows]
        if t.note:
            out += ["", t.note]
    out += ["", "## Plots", ""] + [f"![{name}]({path})" for name, path in images.items()]
    return "\n".join(out) + "\n"


def _html(result: ExperimentResult, title: str, images: dict[str, bytes]) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
             "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 7px;font-size:85%}"
             ".warn{background:#fff3cd;padding:8px;border-left:4px solid #e0a800;margin:6px 0}"
             ".note{color:#555;font-size:85%}img{max-width:100%}</style></head><body>",
             f"<h1>{esc(title)}</h1><h2>Verdict</h2><ul>"]
    parts += [f"<li>{esc(line)}</li>" for line in verdict_lines(result)] + ["</ul>"]
    parts += [f"<div class='warn'>{esc(w)}</div>" for w in result.warnings]
    srm = result.srm
    parts.append(f"<p>SRM check: chi-square {srm.statistic:.3f}, df {srm.df}, p = {srm.p_value:.3g} "
                 f"({'MISMATCH' if srm.mismatch else 'ok'}).</p>")
    for name, png in images.items():
        parts.append(f"<h3>{esc(name)}</h3><img alt='{esc(name)}' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    for t in report_tables(result):
        parts.append(f"<h2>{esc(t.title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in t.header)
                     + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in t.rows]
        parts.append(f"</table><p class='note'>{esc(t.note)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: ExperimentResult, path: str | Path,
                 title: str = "Experiment report") -> dict[str, str]:
    """Write ``path`` (self-contained HTML), ``path`` with ``.md`` and the PNGs in ``<stem>_files/``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {"lifts": forest_plot(result)}
    for name, metric in result.metrics.items():
        images[f"{name} by variant"] = rates_plot(name, metric)
        timeline = timeline_plot(result, name)
        if timeline is not None:
            images[f"{name} over time"] = timeline
    if result.funnel is not None:
        images["funnel"] = funnel_plot(result.funnel)
    if result.cohorts is not None:
        images["weekly cohorts"] = cohort_plot(result.cohorts)
    assets = path.parent / f"{path.stem}_files"
    assets.mkdir(exist_ok=True)
    links = {}
    for i, (name, png) in enumerate(images.items()):
        file = assets / f"plot_{i}.png"
        file.write_bytes(png)
        links[name] = f"{assets.name}/{file.name}"
    path.write_text(_html(result, title, images))
    md = path.with_suffix(".md")
    md.write_text(_markdown(result, title, links))
    return {"html": str(path), "markdown": str(md), "plots": str(assets)}
