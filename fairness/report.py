"""The audit report: the ``--json`` document and one self-contained HTML file (plots as base64 PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fairness.audit import METRICS, Audit
from fairness.gate import GateVerdict

GROUP_KEYS = ("group", "count", "selection_rate", "tpr", "fpr", "auc")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def audit_json(audit: Audit, verdict: GateVerdict) -> dict[str, Any]:
    """The ``propensity audit --json`` document (the issue's shape; NaN becomes null)."""
    return _clean({
        "verdict": verdict.verdict,
        "threshold": audit.threshold,
        "groups": {f: [{k: g[k] for k in GROUP_KEYS} for g in fa.groups] for f, fa in audit.features.items()},
        "metrics": audit.metric_table(),
        "failing": verdict.failing,
        "undecided": verdict.undecided,
        "checks": verdict.checks,
        "intervals": {f: {m: list(ci) for m, ci in fa.intervals.items()} for f, fa in audit.features.items()},
    })


def full_json(audit: Audit, verdict: GateVerdict, extra: dict[str, Any]) -> dict[str, Any]:
    """The report's JSON: the ``--json`` document plus full group rows (status, precision, calibration),
    overall numbers, the selection rule and ``extra`` (model, SHAP ranking, mitigation)."""
    doc = audit_json(audit, verdict)
    doc["group_details"] = _clean({f: fa.groups for f, fa in audit.features.items()})
    doc["overall"] = _clean(audit.overall)
    doc["selection"] = _clean({"threshold": audit.threshold, "top_share": audit.top_share,
                               "rows": audit.n_rows})
    doc.update(_clean(extra))
    return doc


def figure_png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG string (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(doc: dict[str, Any], images: dict[str, str]) -> str:
    """One self-contained HTML page from :func:`full_json`'s document and base64 PNG ``images``."""
    verdict = doc["verdict"]
    parts = [f"<h1>Fairness audit: <span class='{verdict}'>{verdict.upper()}</span></h1>"]
    model = doc.get("model") or {}
    parts.append(f"<p>Model {_fmt(model.get('uri'))} ({_fmt(model.get('family'))}); "
                 f"{doc['selection']['rows']} rows; "
                 f"selection threshold {_fmt(doc['selection']['threshold'])} "
                 f"(top share {_fmt(doc['selection']['top_share'])}).</p>")
    if doc["failing"]:
        parts.append("<h2>Failing checks</h2>" + _table(
            [{**f, "groups": ", ".join(f.get("groups", []))} for f in doc["failing"]],
            ["metric", "feature", "value", "limit", "groups"]))
    if doc.get("checks"):
        parts.append("<h2>Checks with confidence intervals</h2>" + _table(
            [{**c, "interval": "-" if not c["interval"] else " .. ".join(_fmt(v) for v in c["interval"])}
             for c in doc["checks"]], ["metric", "feature", "value", "interval", "limit", "verdict"]))
    metric_rows = [{"metric": m, **doc["metrics"][m]} for m in METRICS]
    parts.append("<h2>Disparity metrics</h2>" + _table(metric_rows, ["metric", *doc["groups"].keys()]))
    keys = ["group", "status", "count", "selection_rate", "tpr", "fpr", "precision", "auc", "mean_predicted",
            "observed_rate"]
    for feature, rows in doc["group_details"].items():
        parts.append(f"<h2>Groups by {html.escape(feature)}</h2>" + _table(rows, keys))
    mitigation = doc.get("mitigation")
    if mitigation:
        parts.append(f"<h2>Mitigation: {html.escape(mitigation['method'])} "
                     f"({html.escape(mitigation['constraint'])} on {html.escape(mitigation['feature'])}), "
                     f"verdict after: {mitigation['verdict_after']}</h2>")
        parts.append(_table(mitigation["comparison"], list(mitigation["comparison"][0])))
    shap_rank = doc.get("shap_importance")
    if shap_rank:
        parts.append("<h2>SHAP: mean |contribution| (log-odds) per feature</h2>"
                     + _table(shap_rank[:20], ["feature", "mean_abs_shap"]))
    for name, png in images.items():
        title = html.escape(name)
        parts.append(f"<h3>{title}</h3><img alt='{title}' src='data:image/png;base64,{png}'>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             ".pass{color:#080}.fail{color:#c00}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Fairness audit</title><style>{style}"
            f"</style></head><body>{''.join(parts)}</body></html>")


def write_report(doc: dict[str, Any], images: dict[str, str], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``fairness_report.html`` and ``fairness_report.json`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "fairness_report.html", out / "fairness_report.json"
    html_path.write_text(render_html(doc, images))
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    return html_path, json_path
