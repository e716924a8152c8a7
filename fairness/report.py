"""The audit report: the ``--json`` document and one self-contained HTML file (plots as base64 PNG).

The HTML page is rendered by the shared reporting layer (:mod:`reports`): the gate's decision
first, every judged value next to its limit, group rates with 95% Wilson intervals (a small group
is judged with its uncertainty in view), and the mitigation's trade-off spelled out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fairness.audit import METRICS, Audit
from fairness.gate import GateVerdict
from reports import Decision, Header, Section, Table, figure_base64, render_page
from reports.numbers import count, estimate, num, pct, share_interval, wilson
from reports.page import Figure

GROUP_KEYS = ("group", "count", "selection_rate", "tpr", "fpr", "auc")

# Human names of the metrics and group columns; the raw name stays next to it for searching.
METRIC_NAMES: dict[str, str] = {
    "demographic_parity_ratio": "Selection-rate ratio (lowest / highest group)",
    "demographic_parity_difference": "Selection-rate gap (highest - lowest group)",
    "equalized_odds_difference": "Error-rate gap (larger of the TPR and FPR gaps)",
    "equal_opportunity_difference": "True-positive-rate gap (highest - lowest group)",
    "selection_rate": "selected", "tpr": "true positive rate", "fpr": "false positive rate",
    "auc": "ROC AUC", "accuracy": "accuracy", "precision": "precision",
}
# A judged group whose TPR interval is wider than this (0..1) is flagged as too uncertain to judge.
WIDE_INTERVAL = 0.3


def human(metric: str) -> str:
    """The reader's name of a metric or rate column."""
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


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
    """The ``propensity audit --json`` document (NaN becomes null). ``checks`` lists every enabled
    gate check with its value, its limit and whether it passed, whatever the verdict."""
    return _clean({
        "verdict": verdict.verdict,
        "threshold": audit.threshold,
        "groups": {f: [{k: g[k] for k in GROUP_KEYS} for g in fa.groups] for f, fa in audit.features.items()},
        "metrics": audit.metric_table(),
        "checks": verdict.checks,
        "failing": verdict.failing,
        "undecided": verdict.undecided,
        "intervals": {f: {m: list(ci) for m, ci in fa.intervals.items()} for f, fa in audit.features.items()},
    })


def group_intervals(group: dict[str, Any]) -> dict[str, list[float]]:
    """95% Wilson intervals (0..1) of a group's selection rate, TPR and FPR, from its count and rates
    (positives = observed rate x count; the rates are exact ratios, so the counts are recovered)."""
    n = int(group["count"])
    positives = round(float(group.get("observed_rate", math.nan)) * n) if n else 0
    negatives = n - positives
    out: dict[str, list[float]] = {}
    for key, base in (("selection_rate", n), ("tpr", positives), ("fpr", negatives)):
        rate = group.get(key)
        if rate is None or not math.isfinite(float(rate)) or base <= 0:
            continue
        out[key] = list(wilson(round(float(rate) * base), base))
    return out


def full_json(audit: Audit, verdict: GateVerdict, extra: dict[str, Any]) -> dict[str, Any]:
    """The report's JSON: the ``--json`` document plus full group rows (status, precision,
    calibration, 95% Wilson intervals of each rate on its own), the intervals of the disparity
    metrics the gate judged, the simultaneous per-group intervals they were built from
    (``group_intervals[feature][metric][group][rate]``), overall numbers, the selection rule and
    ``extra`` (model, data, SHAP, mitigation)."""
    doc = audit_json(audit, verdict)
    details = {f: [{**g, "intervals": group_intervals(g)} for g in fa.groups]
               for f, fa in audit.features.items()}
    doc["group_details"] = _clean(details)
    doc["metric_intervals"] = _clean({m: {f: fa.intervals.get(m) for f, fa in audit.features.items()}
                                      for m in METRICS})
    doc["group_intervals"] = _clean({f: fa.group_intervals for f, fa in audit.features.items()})
    doc["overall"] = _clean(audit.overall)
    doc["selection"] = _clean({"threshold": audit.threshold, "top_share": audit.top_share,
                               "rows": audit.n_rows})
    doc.update(_clean(extra))
    return doc


def figure_png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG string (the figure is closed)."""
    return figure_base64(fig)


def _limit(check: dict[str, Any]) -> str:
    return f"{'≥' if check['kind'] == 'min' else '≤'} {check['limit']:g}"


def _with_interval(check: dict[str, Any]) -> str:
    low, high = check.get("interval") or (None, None)
    return estimate(check["value"], low, high, sign=False)


_MARKS = {"pass": " ✓", "fail": " ✗ fails", "insufficient_evidence": " ? insufficient evidence"}
_STATES = {
    "pass": "within the limit, with its whole 95% interval",
    "fail": "OUTSIDE the limit, with its whole 95% interval",
    "insufficient_evidence": ("insufficient evidence: the 95% interval straddles the limit; audit more rows "
                              "before relying on it"),
    None: "not computable (< 2 judged groups)",
}


def _check_line(check: dict[str, Any]) -> str:
    return (f"{human(check['metric'])} on {check['feature']}: {_with_interval(check)} "
            f"(limit {_limit(check)}): {_STATES[check.get('verdict')]}")


def _culprits(items: list[dict[str, Any]]) -> str:
    return "; ".join(f"{human(f['metric'])} on {f['feature']} is {_with_interval(f)} (limit {_limit(f)}), "
                     f"groups {', '.join(f.get('groups', []))}" for f in items)


def _decision(doc: dict[str, Any]) -> Decision:
    checks = doc.get("checks", [])
    lines = [_check_line(c) for c in checks]
    if doc["verdict"] == "pass":
        headline = ("PASS: every judged disparity is within its limit; the model may be promoted."
                    if checks else "PASS: no gate check is enabled (configs/fairness.yaml).")
        return Decision(headline, lines, "pass")
    if doc["verdict"] == "insufficient_evidence":
        headline = ("INSUFFICIENT EVIDENCE: no check fails with confidence, but "
                    f"{_culprits(doc['undecided'])}. The model may be promoted (the version is tagged); "
                    "audit more rows to decide.")
        return Decision(headline, lines, "neutral")
    headline = (f"FAIL: do not promote this model. {_culprits(doc['failing'])}. Fix the data or the model, "
                "or use the mitigation below if its cost is acceptable.")
    return Decision(headline, lines, "fail")


def _metrics_table(doc: dict[str, Any]) -> Table:
    limits = {(c["metric"], c["feature"]): c for c in doc.get("checks", [])}
    features = list(doc["groups"])
    rows = []
    for metric in METRICS:
        cells = [f"{human(metric)} ({metric})"]
        limit = next((c for (m, _), c in limits.items() if m == metric), None)
        cells.append(_limit(limit) if limit else "not checked")
        for feature in features:
            value = doc["metrics"][metric].get(feature)
            check = limits.get((metric, feature))
            mark = _MARKS.get(str(check.get("verdict")), "") if check is not None else ""
            interval = doc.get("metric_intervals", {}).get(metric, {}).get(feature)
            shown = num(value) if value is None else _with_interval({"value": value, "interval": interval})
            cells.append(shown + mark)
        rows.append(cells)
    return Table("Disparity metrics", ["metric", "limit", *features], rows,
                 "✓ pass: the whole interval is within the limit; ✗ fail: the whole interval is beyond it; "
                 "? insufficient evidence: the interval straddles the limit. [interval covering the metric "
                 "with 95% confidence, from simultaneous per-group intervals; it always contains the value]. "
                 "Metrics compare only the groups large enough to be judged.")


def _groups_table(feature: str, rows: list[dict[str, Any]], min_size: int | None) -> tuple[Table, list[str]]:
    out, warnings = [], []
    for g in rows:
        iv = g.get("intervals", {})
        cells = [str(g["group"]), g["status"], count(g["count"])]
        for key in ("selection_rate", "tpr", "fpr"):
            low, high = iv.get(key, [None, None])
            cells.append(share_interval(g.get(key), low, high))
        cells += [num(g.get("precision"), 3), num(g.get("auc"), 3), pct(g.get("mean_predicted")),
                  pct(g.get("observed_rate"))]
        out.append(cells)
        low, high = iv.get("tpr", [None, None])
        if g["status"] == "ok" and low is not None and high is not None and high - low > WIDE_INTERVAL:
            warnings.append(f"{feature} = {g['group']}: only {count(g['count'])} rows; its true positive "
                            f"rate {share_interval(g.get('tpr'), low, high)} is too uncertain to judge on "
                            "its own. "
                            "Audit on more rows (snapshots: all in configs/fairness.yaml) or raise "
                            "min_group_size.")
    note = ("Rates with 95% Wilson intervals. Groups marked 'insufficient data'"
            + (f" (fewer than {min_size} rows)" if min_size else "") + " are shown but not judged.")
    header = ["group", "status", "rows", "selected", "true positive rate", "false positive rate", "precision",
              "ROC AUC", "mean predicted", "observed rate"]
    return Table(f"Groups by {feature}", header, out, note), warnings


def mitigation_comment(section: dict[str, Any]) -> str:
    """What the mitigation buys and what it costs, in words (before/after rows of the comparison)."""
    before, after = section["comparison"][0], section["comparison"][1]
    parts = []
    for key in ("auc", "accuracy"):
        if before.get(key) is not None and after.get(key) is not None:
            parts.append(f"{human(key)} {num(before[key], 3)} → {num(after[key], 3)}")
    sel_before, sel_after = before.get("selection_rate"), after.get("selection_rate")
    text = (f"The {section['method']} mitigation ({section['constraint']} on {section['feature']}) changes "
            + ", ".join(parts))
    if sel_before is not None and sel_after is not None:
        text += f" and selects {pct(sel_after, 2)} of users instead of {pct(sel_before, 2)}"
        if sel_after > 1.5 * sel_before:
            text += (": much of the parity comes from targeting far more users, which a fixed campaign "
                     "budget may not allow")
    verdict = section.get("verdict_after")
    text += f". Gate after mitigation: {str(verdict).upper()}."
    if verdict == "pass":
        text += " Use it only if the lower accuracy and the new selection share are acceptable."
    return text


def _sections(doc: dict[str, Any], images: dict[str, str], min_size: int | None) -> list[Section]:
    sections = [Section("Gate checks", tables=[_metrics_table(doc)])]
    tables, warnings = [], []
    for feature, rows in doc["group_details"].items():
        table, found = _groups_table(feature, rows, min_size)
        tables.append(table)
        warnings += found
    sections.append(Section("Groups", warnings=warnings, tables=tables))
    mitigation = doc.get("mitigation")
    if mitigation:
        keys = list(mitigation["comparison"][0])
        rows = [[str(r[k]) if k == "model" else num(r[k], 3) for k in keys] for r in mitigation["comparison"]]
        title = f"Before and after ({mitigation['method']}, {mitigation['constraint']})"
        note = (f"Compared on {count(mitigation.get('rows_compared'))} held-out rows the mitigation was "
                "not fitted on.")
        sections.append(Section("Mitigation", intro=mitigation_comment(mitigation),
                                tables=[Table(title, [human(k) for k in keys], rows, note)]))
    shap_rank = doc.get("shap_importance")
    figures = [Figure(name, _decode(png)) for name, png in images.items()]
    if shap_rank or figures:
        rows = [[str(r["feature"]), num(r["mean_abs_shap"], 3)] for r in shap_rank[:20]] if shap_rank else []
        units = doc.get("units", "log-odds")
        sections.append(Section("Explanations (SHAP)",
                                tables=[Table(f"Mean |contribution| per feature ({units})", ["feature",
                                              "mean |SHAP|"], rows)] if rows else [], figures=figures))
    return sections


def _decode(png: str) -> bytes:
    import base64

    return base64.b64decode(png)


def render_html(doc: dict[str, Any], images: dict[str, str]) -> str:
    """One self-contained HTML page from :func:`full_json`'s document and base64 PNG ``images``."""
    model = doc.get("model") or {}
    data = doc.get("data") or {}
    registered = model.get("registered")
    subject = f"model {model.get('uri', 'unknown')}"
    if model.get("family"):
        subject += f" ({model['family']})"
    if registered:
        subject += f", registered as {registered[0]} version {registered[1]}"
    as_of = data.get("as_of") or []
    period = (f"snapshot cut-off {', '.join(as_of)}" if as_of else None)
    sel = doc["selection"]
    rule = (f"top {pct(sel['top_share'], 2)} of scores" if sel.get("top_share") is not None
            else "fixed probability")
    facts = (("Rows", count(sel["rows"])), ("Selection", f"{rule}, threshold {num(sel['threshold'], 3)}"))
    header = Header(f"Fairness audit: {model.get('uri', 'model')}", subject, period, data.get("digest"),
                    facts=facts)
    return render_page(header, _decision(doc), _sections(doc, images, data.get("min_group_size")))


def write_report(doc: dict[str, Any], images: dict[str, str], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``fairness_report.html`` and ``fairness_report.json`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "fairness_report.html", out / "fairness_report.json"
    html_path.write_text(render_html(doc, images))
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    return html_path, json_path
