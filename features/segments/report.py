"""Segment profile tables, human-readable cluster descriptions and the PCA scatter plot."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.segments.clusters import NOISE, cluster_label, feature_matrix
from features.segments.segmenter import Segmenter

# (phrase when the cluster is above average, phrase when below) for columns with a natural wording.
_PHRASES: dict[str, tuple[str, str]] = {
    "cart_open": ("open carts", "no open cart"),
    "days_since_last_event": ("long inactive", "recently active"),
    "days_since_last_purchase": ("no recent purchase", "recent buyers"),
    "days_since_last_add_to_cart": ("no recent cart", "recent carts"),
    "days_since_first_event": ("long-known users", "new users"),
    "engagement_score": ("highly engaged", "low engagement"),
    "avg_scroll_depth_30d": ("deep scrollers", "shallow scrollers"),
    "avg_duration_s_30d": ("long page visits", "short page visits"),
    "purchases_total": ("repeat buyers", "few purchases"),
    "purchase_value_total": ("high lifetime spend", "low lifetime spend"),
    "product_time_s_30d": ("long product-page time", "little product-page time"),
    "cart_value_30d": ("large carts", "small carts"),
    "hours_since_cart_abandoned": ("old abandoned carts", "fresh abandoned carts"),
}
# Plural nouns of the count columns' event names.
_NOUNS: dict[str, str] = {
    "page_view": "page views", "product_view": "product views", "add_to_cart": "add-to-carts",
    "remove_from_cart": "cart removals", "checkout_start": "checkout starts", "purchase": "purchases",
    "newsletter_signup": "newsletter sign-ups", "whitepaper_download": "whitepaper downloads",
    "video_play": "video plays", "search": "searches", "scroll": "scrolls", "events": "events",
    "sessions": "sessions",
}
_COUNT = re.compile(r"^(?P<what>[a-z_]+?)_(?P<w>\d+)d$")


def feature_phrase(name: str, above: bool) -> str:
    """A short human wording of 'this cluster is above/below average on ``name``'."""
    if name in _PHRASES:
        return _PHRASES[name][0 if above else 1]
    match = _COUNT.match(name)
    if match:
        what = _NOUNS.get(match["what"], match["what"].replace("_", " "))
        return f"{'many' if above else 'few'} {what} ({match['w']}d)"
    return f"{'high' if above else 'low'} {name}"


def describe_cluster(top: list[tuple[str, float]], lift: float | None) -> str:
    """Description from the top distinguishing features ``(name, standardised difference)`` and the
    conversion lift (cluster rate / overall rate), e.g. "many product views (30d), open carts;
    converts 3.1× the average"."""
    text = ", ".join(feature_phrase(name, diff > 0) for name, diff in top) or "average behaviour"
    if lift is not None and np.isfinite(lift):
        text += "; never converts" if lift == 0 else f"; converts {lift:.2g}× the average"
    return text


def cluster_profile(frame: pl.DataFrame, segmenter: Segmenter, label: str = "label") -> pl.DataFrame:
    """One row per cluster (largest first, noise last): size, share 0..1, conversion rate and lift
    (when ``label`` is a column), the top distinguishing features with cluster vs overall means,
    a description, and ``mean_<feature>`` of every clustered feature. ``frame`` must carry ``cluster``.
    """
    model = segmenter.cluster_model_
    raw = feature_matrix(frame, model.features)
    z = model.standardise(raw)
    filled = np.where(np.isnan(raw), model.fill, raw)
    names = frame["cluster"].to_numpy()
    has_label = label in frame.columns
    y = frame[label].cast(pl.Float64).to_numpy() if has_label else None
    overall_rate = float(np.nanmean(y)) if y is not None and len(y) else None
    top_n = segmenter.config_.clustering.top_features
    order = [cluster_label(c) for c in range(segmenter.n_clusters_)] + [cluster_label(NOISE)]
    rows = []
    for name in order:
        mask = names == name
        size = int(mask.sum())
        if size == 0:
            continue
        diff = z[mask].mean(axis=0) - z.mean(axis=0)
        top_idx = list(np.argsort(-np.abs(diff), kind="stable")[:top_n])
        top = [(model.features[j], float(diff[j])) for j in top_idx]
        rate = float(np.nanmean(y[mask])) if y is not None else None
        lift = rate / overall_rate if rate is not None and overall_rate else None
        row: dict[str, object] = {
            "cluster": name, "size": size, "share": size / len(names),
            "conversion_rate": rate, "lift": lift,
            "top_features": "; ".join(f"{model.features[j]} {filled[mask, j].mean():.3g} "
                                      f"(all {filled[:, j].mean():.3g})" for j in top_idx),
            "description": ("noise: points in no dense region" if name == "noise"
                            else describe_cluster(top, lift)),
        }
        for j, feature in enumerate(model.features):
            row[f"mean_{feature}"] = float(filled[mask, j].mean())
        rows.append(row)
    out = pl.DataFrame(rows)
    return out if has_label else out.drop("conversion_rate", "lift")


def group_profile(frame: pl.DataFrame, column: str, label: str = "label") -> pl.DataFrame:
    """Size, share 0..1 and (with ``label``) conversion rate per value of ``column``, largest first."""
    aggs = [pl.len().alias("size"), (pl.len() / frame.height).alias("share")]
    if label in frame.columns:
        aggs.append(pl.col(label).cast(pl.Float64).mean().alias("conversion_rate"))
    return frame.group_by(column).agg(aggs).sort(["size", column], descending=[True, False])


def markdown_table(frame: pl.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``frame`` (floats with 3 significant digits, shares as percentages)."""
    cols = list(columns) if columns else frame.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.select(cols).iter_rows(named=True):
        cells = []
        for col in cols:
            value = row[col]
            if value is None:
                cells.append("")
            elif col in ("share", "conversion_rate") and isinstance(value, float):
                cells.append(f"{100 * value:.1f}%")
            elif isinstance(value, float):
                cells.append(f"{value:.3g}")
            else:
                cells.append(str(value).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pca_plot(frame: pl.DataFrame, segmenter: Segmenter, path: str | Path, sample: int = 5000,
             seed: int = 0) -> Path:
    """Scatter of the first two principal components of the standardised features, one colour per
    cluster (noise grey), at most ``sample`` points. Writes a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    rows = np.arange(frame.height) if frame.height <= sample else np.sort(
        rng.choice(frame.height, size=sample, replace=False))
    sub = frame[rows]
    z = segmenter.cluster_model_.standardise(feature_matrix(sub, segmenter.cluster_model_.features))
    n_comp = min(2, z.shape[1], len(z))
    pca = PCA(n_components=n_comp, random_state=seed).fit(z)
    xy = pca.transform(z)
    if n_comp == 1:
        xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    names = sub["cluster"].to_numpy()
    rates: dict[str, float] = {}
    if "label" in frame.columns:
        rates = dict(frame.group_by("cluster").agg(pl.col("label").cast(pl.Float64).mean()).iter_rows())
    from reports.style import PALETTE, color, plot_style

    with plot_style():
        fig, ax = plt.subplots(figsize=(8, 6))
        for i, name in enumerate(segmenter.cluster_names_ + ["noise"]):
            mask = names == name
            if not mask.any():
                continue
            text = f"cluster {name}" if name != "noise" else "noise"
            if name in rates:
                text += f", converts {100 * rates[name]:.1f}%"
            ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.6, label=text,
                       color=PALETTE["grey"] if name == "noise" else color(i))
        ratio = list(pca.explained_variance_ratio_) + [0.0]
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% of variance)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% of variance)")
        ax.set_title(f"Behavioural clusters ({segmenter.cluster_model_.method}, {len(rows)} users shown)")
        ax.legend(markerscale=3, loc="best")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        plt.close(fig)
    return path


def html_report(result: Any, path: str | Path) -> Path:
    """The segments report (one self-contained HTML file) of a :class:`SegmentResult`: what was
    segmented, the clusters in words first, then the profile tables and the PCA plot."""
    from reports import Decision, Figure, Header, Section, Table, render_page
    from reports.numbers import count, num, pct

    def table(title: str, frame: pl.DataFrame, columns: list[str]) -> Table:
        rows = []
        for row in frame.select(columns).iter_rows(named=True):
            rows.append([pct(v) if c in ("share", "conversion_rate") and isinstance(v, float)
                         else count(v) if c == "size" else num(v, 3) if isinstance(v, float)
                         else "" if v is None else str(v) for c, v in row.items()])
        return Table(title, [c.replace("_", " ") for c in columns], rows)

    profile = result.profile
    wanted = ("cluster", "size", "share", "conversion_rate", "lift", "description", "top_features")
    columns = [c for c in wanted if c in profile.columns]
    lines = [f"cluster {r['cluster']} ({pct(r['share'], 2)} of users): {r['description']}"
             for r in profile.iter_rows(named=True)]
    header = Header(f"Segments: {Path(result.source).name if result.source else 'snapshot'}",
                    f"{count(result.n_rows)} snapshot rows, {result.method}, {result.n_clusters} clusters",
                    result.period, result.digest)
    decision = Decision(f"{result.n_clusters} behavioural clusters, largest first.", lines)
    tables = [table("Behavioural clusters", profile, columns)]
    for title, frame, column in (("Engagement segments", result.segment_summary, "segment"),
                                 ("Journey stages", result.stage_summary, "journey_stage")):
        if frame is not None:
            tables.append(table(title, frame, [column, *frame.columns[1:]]))
    figure = Figure("Clusters on the first two principal components", Path(result.plot_path).read_bytes(),
                    "Each dot is one user (a sample); colours match the legend; grey is noise.")
    sections = [Section("Profiles", warnings=list(result.notes), tables=tables, figures=[figure])]
    out = Path(path)
    out.write_text(render_page(header, decision, sections))
    return out
