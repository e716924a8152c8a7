"""The monitoring report: ``monitor.json`` and a self-contained ``monitor_report.html``.

The page is rendered by the shared reporting layer (:mod:`reports`): the title block (model, data
period, digest of the monitored inputs, generated-at), the decision (the alerts) first, then the
evidence. Plots are drawn under :func:`reports.plot_style` with the shared palette.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from reports import Decision, Figure, Header, Section, Table, plot_style, render_page  # noqa: E402
from reports.numbers import count, num  # noqa: E402
from reports.style import PALETTE, figure_png  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

    from monitoring.stage import MonitorResult
    from monitoring.windows import Reference

HEATMAP_FEATURES = 30  # the features with the largest PSI shown in the heat map


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _auc_figure(docs: list[dict[str, Any]], ref_auc: float | None) -> MplFigure:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    x = np.arange(len(docs))
    est = [_num(d["estimated_auc"]) for d in docs]
    low = [_num(d["estimated_auc_low"]) for d in docs]
    high = [_num(d["estimated_auc_high"]) for d in docs]
    ax.fill_between(x, low, high, alpha=0.25, color=PALETTE["blue"], label="estimated AUC interval")
    ax.plot(x, est, color=PALETTE["blue"], label="estimated AUC")
    ax.plot(x, [_num(d["realized_auc"]) for d in docs], "o", color=PALETTE["orange"], label="realised AUC")
    if ref_auc is not None:
        ax.axhline(ref_auc, ls="--", c=PALETTE["grey"], label="validation AUC")
    _dates(ax, docs)
    ax.legend(fontsize=8)
    return fig


def _calibration_figure(docs: list[dict[str, Any]]) -> MplFigure:
    fig, (ax, rel) = plt.subplots(1, 2, figsize=(10, 3.5), gridspec_kw={"width_ratios": [2, 1]})
    x = np.arange(len(docs))
    ax.plot(x, [d["mean_probability"] for d in docs], color=PALETTE["blue"], label="mean probability")
    ax.plot(x, [_num(d["realized_rate"]) for d in docs], "o", color=PALETTE["orange"],
            label="realised conversion")
    _dates(ax, docs)
    ax.legend(fontsize=8)
    labelled = [d for d in docs if d["reliability"]]
    if labelled:
        curve = labelled[-1]["reliability"]
        rel.plot([b["mean_probability"] for b in curve], [b["realized_rate"] for b in curve], "o-",
                 color=PALETTE["blue"])
        top = max(max(b["mean_probability"], b["realized_rate"]) for b in curve)
        rel.plot([0, top], [0, top], ls="--", c=PALETTE["grey"])
        rel.set_title(f"reliability, {labelled[-1]['start'][:10]}", fontsize=9)
        rel.set_xlabel("mean probability")
        rel.set_ylabel("realised rate")
    return fig


def _psi_figure(docs: list[dict[str, Any]]) -> MplFigure:
    def psi(d: dict[str, Any], name: str) -> float:
        return _num(d["drift"].get(name, {}).get("psi"))

    names = sorted({n for d in docs for n in d["drift"]},
                   key=lambda n: -np.nanmax([psi(d, n) for d in docs] + [0.0]))[:HEATMAP_FEATURES]
    grid = np.array([[psi(d, n) for d in docs] for n in names]) if names else np.zeros((1, len(docs)))
    fig, ax = plt.subplots(figsize=(10, 0.25 * len(names) + 1.5))
    image = ax.imshow(np.nan_to_num(grid), aspect="auto", cmap="Reds", vmin=0,
                      vmax=max(0.3, float(np.nanmax(np.nan_to_num(grid)))))
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.grid(visible=False)
    _dates(ax, docs)
    fig.colorbar(image, ax=ax, label="PSI")
    return fig


def _volume_figure(docs: list[dict[str, Any]]) -> MplFigure:
    fig, ax = plt.subplots(figsize=(10, 2.5))
    ax.bar(np.arange(len(docs)), [d["predictions"] for d in docs], color=PALETTE["blue"])
    ax.set_ylabel("predictions")
    _dates(ax, docs)
    return fig


def _dates(ax: Any, docs: list[dict[str, Any]]) -> None:
    step = max(1, len(docs) // 15)
    ticks = list(range(0, len(docs), step))
    ax.set_xticks(ticks, [f"{docs[i]['start'][5:10]} v{docs[i]['model_version']}" for i in ticks],
                  rotation=45, fontsize=7, ha="right")


def _cell(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return count(v)
    return num(v, 3) if isinstance(v, float) else str(v)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str], note: str = "") -> Table:
    def value(row: dict[str, Any], column: str) -> str:
        v = row.get(column)
        if column in ("start", "window_start") and isinstance(v, str):  # ISO time: "YYYY-MM-DD HH:MM"
            return v[:16].replace("T", " ")
        return _cell(v)

    return Table(title, [c.replace("_", " ") for c in columns],
                 [[value(r, c) for c in columns] for r in rows], note or ("" if rows else "none"))


def _figures(docs: list[dict[str, Any]], ref_auc: float | None) -> list[Figure]:
    with plot_style():
        return [
            Figure("AUC: estimated (with interval) and realised", figure_png(_auc_figure(docs, ref_auc)),
                   "Realised AUC needs the label window to have passed; until then only the estimate "
                   "(from the scores alone) is shown."),
            Figure("Calibration", figure_png(_calibration_figure(docs)),
                   "Mean predicted probability against the realised conversion rate per window."),
            Figure("Drift: PSI against the reference", figure_png(_psi_figure(docs)),
                   "Darker is more drift; above 0.2 is usually worth a look."),
            Figure("Volume", figure_png(_volume_figure(docs)), "Predictions per window."),
        ]


def _decision(doc: dict[str, Any]) -> Decision:
    docs, found = doc["windows"], doc["alerts"]
    if not found:
        return Decision(f"No alerts in {len(docs)} windows: no drift, performance, volume or fairness "
                        "rule fired.", [], "pass")
    kinds: dict[str, list[str]] = {}
    for a in found:
        kinds.setdefault(a["kind"], []).append(str(a["subject"]))
    first = min(a["window_start"] for a in found)[:10]
    lines = []
    for kind, subjects in sorted(kinds.items()):
        named = list(dict.fromkeys(subjects))
        more = ", ..." if len(named) > 5 else ""
        lines.append(f"{len(subjects)} {kind} alert(s): {', '.join(named[:5])}{more}")
    lines.append("See the alerts table for each subject, value and threshold; investigate the first "
                 "window that alerted before retraining.")
    return Decision(f"{len(found)} alert(s) in {len(docs)} windows, first on {first}.", lines, "fail")


def render(doc: dict[str, Any], ref_auc: float | None) -> str:
    """The HTML page of a ``monitor.json`` document."""
    model, docs, data = doc["model"], doc["windows"], doc.get("data") or {}
    subject = (f"model {model['uri']} ({model['name']} version {model['version']}): {len(docs)} windows, "
               f"{count(sum(d['predictions'] for d in docs))} predictions")
    facts: tuple[tuple[str, str], ...] = (("Validation AUC", num(ref_auc, 3) if ref_auc is not None
                                            else "unknown"),)
    if data.get("reference_digest"):
        facts += (("Reference digest", str(data["reference_digest"])),)
    header = Header(f"Monitoring: {model['name']} v{model['version']}", subject, data.get("period"),
                    data.get("digest"), facts=facts)
    fairness = [{"window": d["start"][:10], "version": d["model_version"], **d["selection_ratio"]}
                for d in docs]
    features = sorted({k for d in docs for k in d["selection_ratio"]})
    windows = ["start", "model_version", "predictions", "mean_probability", "realized_rate", "realized_auc",
               "estimated_auc", "estimated_auc_low", "estimated_auc_high", "log_loss"]
    figures = _figures(docs, ref_auc)
    sections = [
        Section("Alerts", tables=[_table("", doc["alerts"], ["window_start", "model_version", "kind",
                                                             "subject", "value", "threshold"])]),
        Section("Performance and drift", figures=figures),
        Section("Fairness", tables=[_table("Selection-rate ratio (min/max over groups)", fairness,
                                           ["window", "version", *features])]),
        Section("Windows", tables=[_table("", docs, windows)]),
    ]
    return render_page(header, _decision(doc), sections)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def write_report(result: MonitorResult, ref: Reference) -> None:
    """Write ``result.json_path`` (NaN as null) and ``result.report``."""
    result.report.parent.mkdir(parents=True, exist_ok=True)
    doc = _clean(result.to_json())
    result.json_path.write_text(json.dumps(doc, indent=2) + "\n")
    result.report.write_text(render(doc, ref.auc))
