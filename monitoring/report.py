"""The monitoring report: ``monitor.json`` and a self-contained ``monitor_report.html``.

The page is a list of sections ``{"title", "body"}`` poured into one template string, so it can move
onto a shared templating layer unchanged; figures are PNGs embedded as base64.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

if TYPE_CHECKING:
    from monitoring.stage import MonitorResult
    from monitoring.windows import Reference

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
img{{max-width:100%}}</style></head>
<body><h1>{title}</h1><p>{summary}</p>{sections}</body></html>
"""
SECTION = "<section><h2>{title}</h2>{body}</section>"
HEATMAP_FEATURES = 30  # the features with the largest PSI shown in the heat map


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _auc_figure(docs: list[dict[str, Any]], ref_auc: float | None) -> Figure:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    x = np.arange(len(docs))
    est = [_num(d["estimated_auc"]) for d in docs]
    low = [_num(d["estimated_auc_low"]) for d in docs]
    high = [_num(d["estimated_auc_high"]) for d in docs]
    ax.fill_between(x, low, high, alpha=0.25, label="estimated AUC interval")
    ax.plot(x, est, label="estimated AUC")
    ax.plot(x, [_num(d["realized_auc"]) for d in docs], "o", label="realised AUC")
    if ref_auc is not None:
        ax.axhline(ref_auc, ls="--", c="grey", label="validation AUC")
    _dates(ax, docs)
    ax.legend(fontsize=8)
    return fig


def _calibration_figure(docs: list[dict[str, Any]]) -> Figure:
    fig, (ax, rel) = plt.subplots(1, 2, figsize=(10, 3.5), gridspec_kw={"width_ratios": [2, 1]})
    x = np.arange(len(docs))
    ax.plot(x, [d["mean_probability"] for d in docs], label="mean probability")
    ax.plot(x, [_num(d["realized_rate"]) for d in docs], "o", label="realised conversion")
    _dates(ax, docs)
    ax.legend(fontsize=8)
    labelled = [d for d in docs if d["reliability"]]
    if labelled:
        curve = labelled[-1]["reliability"]
        rel.plot([b["mean_probability"] for b in curve], [b["realized_rate"] for b in curve], "o-")
        top = max(max(b["mean_probability"], b["realized_rate"]) for b in curve)
        rel.plot([0, top], [0, top], ls="--", c="grey")
        rel.set_title(f"reliability, {labelled[-1]['start'][:10]}", fontsize=9)
        rel.set_xlabel("mean probability")
        rel.set_ylabel("realised rate")
    return fig


def _psi_figure(docs: list[dict[str, Any]]) -> Figure:
    def psi(d: dict[str, Any], name: str) -> float:
        return _num(d["drift"].get(name, {}).get("psi"))

    names = sorted({n for d in docs for n in d["drift"]},
                   key=lambda n: -np.nanmax([psi(d, n) for d in docs] + [0.0]))[:HEATMAP_FEATURES]
    grid = np.array([[psi(d, n) for d in docs] for n in names])
    fig, ax = plt.subplots(figsize=(10, 0.25 * len(names) + 1.5))
    image = ax.imshow(np.nan_to_num(grid), aspect="auto", cmap="Reds", vmin=0, vmax=max(0.3, np.nanmax(grid)))
    ax.set_yticks(range(len(names)), names, fontsize=7)
    _dates(ax, docs)
    fig.colorbar(image, ax=ax, label="PSI")
    return fig


def _volume_figure(docs: list[dict[str, Any]]) -> Figure:
    fig, ax = plt.subplots(figsize=(10, 2.5))
    ax.bar(np.arange(len(docs)), [d["predictions"] for d in docs])
    _dates(ax, docs)
    return fig


def _dates(ax: Any, docs: list[dict[str, Any]]) -> None:
    step = max(1, len(docs) // 15)
    ticks = list(range(0, len(docs), step))
    ax.set_xticks(ticks, [f"{docs[i]['start'][5:10]} v{docs[i]['model_version']}" for i in ticks],
                  rotation=45, fontsize=7, ha="right")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>none</p>"


def sections(doc: dict[str, Any], ref_auc: float | None) -> list[dict[str, str]]:
    """The report's sections, in order: alerts, performance, calibration, drift, fairness, volume."""
    docs = doc["windows"]
    fairness = [{"window": d["start"][:10], "version": d["model_version"], **d["selection_ratio"]}
                for d in docs]
    features = sorted({k for d in docs for k in d["selection_ratio"]})
    return [
        {"title": "Alerts", "body": _table(doc["alerts"], ["window_start", "model_version", "kind", "subject",
                                                            "value", "threshold"])},
        {"title": "AUC: estimated (with interval) and realised", "body": _png(_auc_figure(docs, ref_auc))},
        {"title": "Calibration", "body": _png(_calibration_figure(docs))},
        {"title": "Drift: PSI against the reference", "body": _png(_psi_figure(docs))},
        {"title": "Selection-rate ratio (min/max over groups)",
         "body": _table(fairness, ["window", "version", *features])},
        {"title": "Volume", "body": _png(_volume_figure(docs))},
        {"title": "Windows", "body": _table(docs, [
            "start", "model_version", "predictions", "mean_probability", "realized_rate", "realized_auc",
            "estimated_auc", "estimated_auc_low", "estimated_auc_high", "log_loss"])},
    ]


def render(doc: dict[str, Any], ref_auc: float | None) -> str:
    """The HTML page of a ``monitor.json`` document."""
    model = doc["model"]
    summary = (f"{len(doc['windows'])} windows, {sum(d['predictions'] for d in doc['windows'])} predictions, "
               f"{len(doc['alerts'])} alerts")
    body = "".join(SECTION.format(title=html.escape(s["title"]), body=s["body"])
                   for s in sections(doc, ref_auc))
    return PAGE.format(title=html.escape(f"Monitoring: {model['name']} v{model['version']}"),
                       summary=html.escape(summary), sections=body)


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
