"""Behavioural clusters, the Segmenter contract, the profile table and the segment stage / CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from click.testing import CliRunner
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from features.segments.clusters import fit_cluster_model, knee_index
from features.segments.config import ClusteringConfig, load_segments_config
from features.segments.report import cluster_profile, describe_cluster
from features.segments.segmenter import Segmenter
from features.segments.stage import segment_snapshot
from propensity.cli.segment import segment
from propensity.errors import DataError

CFG = load_segments_config()
BEHAVIOUR = ["product_view_30d", "add_to_cart_30d", "purchase_30d", "events_30d", "days_since_last_event",
             "avg_scroll_depth_30d"]


def planted_groups(seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Four well-separated Gaussian groups (sklearn make_blobs) in log space, mapped onto behaviour
    columns with expm1 so that they look like heavy-tailed counts."""
    centers = 1.0 + 6.0 * np.eye(4, len(BEHAVIOUR))
    x, y = make_blobs(n_samples=[200, 150, 100, 50], centers=centers, cluster_std=0.5, random_state=seed)
    x = np.expm1(np.maximum(x, 0.0))
    return pl.DataFrame({name: x[:, j] for j, name in enumerate(BEHAVIOUR)}), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_with_k_by_silhouette_recovers_planted_groups(seed: int) -> None:
    frame, truth = planted_groups(seed)
    model = fit_cluster_model(frame, ClusteringConfig(method="kmeans", k_range=(2, 8)), BEHAVIOUR)
    assert model.k == 4
    assert max(model.silhouette, key=model.silhouette.get) == 4
    assert adjusted_rand_score(truth, model.assign_frame(frame)) >= 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dbscan_with_eps_from_the_k_distance_knee_recovers_planted_groups(seed: int) -> None:
    frame, truth = planted_groups(seed)
    model = fit_cluster_model(frame, ClusteringConfig(method="dbscan", eps=None, min_samples=10), BEHAVIOUR)
    labels = model.assign_frame(frame)
    assert model.k == 4
    assert adjusted_rand_score(truth, labels) >= 0.9


def test_dbscan_reports_far_away_points_as_noise() -> None:
    frame, _ = planted_groups(0)
    outliers = pl.DataFrame({name: [1e6 * (j + 1)] for j, name in enumerate(BEHAVIOUR)})
    model = fit_cluster_model(frame, ClusteringConfig(method="dbscan"), BEHAVIOUR)
    assert model.assign_frame(outliers).tolist() == [-1]


def test_the_knee_is_where_the_sorted_curve_bends() -> None:
    # By hand: y scaled to [0, 1] is [0, 0, 0, 0, 0, 1/9, 4/9, 1] at x = i/7; x - y peaks at i = 5.
    assert knee_index(np.array([1, 1, 1, 1, 1, 2, 5, 10], dtype=float)) == 5


def test_clusters_are_numbered_by_size() -> None:
    frame, _ = planted_groups(1)
    model = fit_cluster_model(frame, ClusteringConfig(k=4), BEHAVIOUR)
    sizes = np.bincount(model.assign_frame(frame))
    assert list(sizes) == sorted(sizes, reverse=True)


def shop_snapshot(n: int = 400, seed: int = 0) -> pl.DataFrame:
    """A snapshot-like frame: browsers, shoppers with open carts (who convert), and buyers."""
    rng = np.random.default_rng(seed)
    kind = np.arange(n) % 3
    pv = np.where(kind == 1, rng.poisson(12, n), rng.poisson(2, n)).astype(float)
    atc = np.where(kind == 1, rng.poisson(3, n), 0).astype(float)
    buys = np.where(kind == 2, rng.poisson(2, n) + 1, 0).astype(float)
    label = (rng.random(n) < np.array([0.02, 0.5, 0.2])[kind]).astype(np.int64)
    recency = np.where(kind == 0, rng.uniform(10, 30, n), rng.uniform(0, 3, n))
    last_buy = np.where(buys > 0, rng.uniform(0, 5, n), np.nan)
    return pl.DataFrame({
        "user_id": [f"u{i}" for i in range(n)],
        "as_of": [datetime(2026, 3, 1, tzinfo=UTC)] * n,
        "product_view_30d": pv, "add_to_cart_30d": atc, "purchases_total": buys,
        "events_30d": pv + atc + buys + rng.poisson(5, n), "cart_open": (atc > 0).astype(float),
        "days_since_last_event": recency, "days_since_last_purchase": last_buy,
        "engagement_score": 0.5 * pv + atc + 4 * buys - 2 * (atc > 0),
        "gender": ["f", "m"] * (n // 2), "label": label,
    }).with_columns(pl.col("as_of").dt.cast_time_unit("us"))


def test_the_segmenter_follows_the_fit_transform_contract() -> None:
    snap = shop_snapshot()
    seg = Segmenter(CFG)
    assert vars(seg) == {"config": CFG}
    assert seg.fit(snap, digest="sha256:abc") is seg
    learned = {k for k in vars(seg) if k != "config"}
    assert learned and all(k.endswith("_") for k in learned)
    before = {k: repr(getattr(seg, k)) for k in learned}
    out = seg.transform(snap)
    assert {k: repr(getattr(seg, k)) for k in learned} == before
    assert out.columns == snap.columns + ["segment", "cluster"]
    assert seg.fitted_on_digest_ == "sha256:abc"
    assert "gender" not in seg.features_ and "label" not in seg.features_
    assert clone(seg).get_params() == {"config": CFG}


def test_segments_follow_the_score_thresholds() -> None:
    snap = shop_snapshot()
    out = Segmenter(CFG).fit(snap).transform(snap)
    from features.segments.engagement import segment_for
    assert out["segment"].to_list() == [segment_for(s, CFG) for s in snap["engagement_score"]]


def test_assign_one_gives_exactly_what_transform_gives() -> None:
    snap = shop_snapshot()
    seg = Segmenter(CFG).fit(snap)
    out = seg.transform(snap)
    rows = snap.iter_rows(named=True)
    for row, seg_name, cluster in zip(rows, out["segment"], out["cluster"], strict=True):
        assert seg.assign_one(row) == {"segment": seg_name, "cluster": cluster}
    # missing keys are missing values, filled as at transform time
    sparse = {"product_view_30d": 14.0, "engagement_score": None}
    full = {name: None for name in seg.features_} | sparse
    expected = seg.transform(pl.DataFrame([full], schema={n: pl.Float64 for n in full}))
    assert seg.assign_one(sparse) == {"segment": expected["segment"][0], "cluster": expected["cluster"][0]}


def test_pandas_in_pandas_out() -> None:
    snap = shop_snapshot()
    seg = Segmenter(CFG).fit(snap.to_pandas())
    out = seg.transform(snap.to_pandas())
    assert isinstance(out, pd.DataFrame)
    assert out["cluster"].tolist() == seg.transform(snap)["cluster"].to_list()


def test_a_segmenter_pickled_under_the_old_module_names_still_loads(tmp_path: Path) -> None:
    """Files written before features/ was carved name features.segmenter, features.segment_config..."""
    import pickle

    snap = shop_snapshot()
    seg = Segmenter(CFG).fit(snap)
    text = pickle.dumps(seg, protocol=0)  # protocol 0 names every class as "module\nname" text
    for new, old in ((b"features.segments.segmenter", b"features.segmenter"),
                     (b"features.segments.config", b"features.segment_config")):
        assert new in text
        text = text.replace(new, old)
    path = tmp_path / "old.joblib"
    path.write_bytes(text)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(text)  # the old names exist only while loading
    loaded = Segmenter.load(path)
    assert loaded.transform(snap).equals(seg.transform(snap))


def test_save_and_load_keep_assignments_and_digest(tmp_path: Path) -> None:
    snap = shop_snapshot()
    seg = Segmenter(CFG).fit(snap)
    loaded = Segmenter.load(seg.save(tmp_path / "s.joblib"))
    assert loaded.fitted_on_digest_ == seg.fitted_on_digest_
    assert loaded.transform(snap).equals(seg.transform(snap))
    with pytest.raises(DataError, match="not found"):
        Segmenter.load(tmp_path / "missing.joblib")


def test_transform_before_fit_and_missing_columns_are_clear_errors() -> None:
    snap = shop_snapshot()
    with pytest.raises(DataError, match="not fitted"):
        Segmenter(CFG).transform(snap)
    seg = Segmenter(CFG).fit(snap)
    with pytest.raises(DataError, match="lacks the clustered column 'cart_open'"):
        seg.transform(snap.drop("cart_open"))


def test_the_profile_table_counts_and_conversion_rates_match_the_assignments() -> None:
    snap = shop_snapshot(600)
    seg = Segmenter(CFG).fit(snap)
    out = seg.transform(snap)
    profile = cluster_profile(out, seg)
    assert profile["size"].sum() == snap.height
    assert profile["share"].sum() == pytest.approx(1.0)
    overall = snap["label"].mean()
    for row in profile.iter_rows(named=True):
        members = out.filter(pl.col("cluster") == row["cluster"])
        assert row["conversion_rate"] == pytest.approx(members["label"].mean())
        assert row["lift"] == pytest.approx(members["label"].mean() / overall)
        assert row[f"mean_{seg.features_[0]}"] == pytest.approx(members[seg.features_[0]].mean())
    # the planted converting group (open carts) is the cluster with the highest rate
    best = profile.sort("conversion_rate", descending=True).row(0, named=True)
    assert best["lift"] > 2 and "open carts" in best["description"]


def test_descriptions_read_as_words() -> None:
    text = describe_cluster([("product_view_30d", 1.8), ("cart_open", 1.2), ("days_since_last_event", -0.9)],
                            3.14)
    assert text == "many product views (30d), open carts, recently active; converts 3.1× the average"
    assert describe_cluster([("search_30d", -1.0)], 0.0) == "few searches (30d); never converts"


def write_snapshot(tmp_path: Path, frame: pl.DataFrame) -> Path:
    path = tmp_path / "snap.parquet"
    frame.write_parquet(path)
    return path


def test_segment_snapshot_writes_every_output(tmp_path: Path) -> None:
    snap = shop_snapshot()
    result = segment_snapshot(write_snapshot(tmp_path, snap), tmp_path / "out", CFG)
    assigned = pl.read_parquet(result.assignments_path)
    assert assigned.height == snap.height
    assert {"user_id", "as_of", "segment", "cluster"} <= set(assigned.columns)
    assert pl.read_csv(result.profile_csv).height == result.profile.height
    assert "## Behavioural clusters" in result.profile_md.read_text()
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Segmenter.load(result.segmenter_path).fitted_on_digest_ == result.digest


def test_segment_snapshot_says_when_event_columns_are_missing(tmp_path: Path) -> None:
    snap = shop_snapshot().drop("engagement_score")
    result = segment_snapshot(write_snapshot(tmp_path, snap), tmp_path / "out", CFG)
    assert any("no engagement_score, journey_stage" in note for note in result.notes)
    assert result.segment_summary is None
    assert pl.read_parquet(result.assignments_path)["segment"].null_count() == snap.height


def test_segment_snapshot_computes_score_and_stage_from_events(tmp_path: Path) -> None:
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    snap = shop_snapshot(60).drop("engagement_score")
    events = pl.DataFrame({
        "event_id": ["e1", "e2", "e3"], "user_id": ["u0", "u0", "u1"],
        "timestamp": [as_of - timedelta(days=2), as_of - timedelta(days=1), as_of - timedelta(hours=1)],
        "event": ["product_view", "purchase", "page_view"],
    }).with_columns(pl.col("timestamp").dt.cast_time_unit("us"))
    events_path = tmp_path / "events.parquet"
    events.write_parquet(events_path)
    result = segment_snapshot(write_snapshot(tmp_path, snap), tmp_path / "out", CFG, events_path=events_path)
    got = {r["user_id"]: r for r in pl.read_parquet(result.assignments_path).iter_rows(named=True)}
    assert got["u0"]["journey_stage"] == "retention"
    assert got["u1"]["journey_stage"] == "awareness"
    assert got["u5"]["engagement_score"] == 0.0 and got["u5"]["journey_stage"] == "awareness"


def test_the_cli_prints_json_and_fails_in_one_line(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path, shop_snapshot())
    runner = CliRunner()
    ok = runner.invoke(segment, ["--features", str(path), "--out", str(tmp_path / "o"), "--k", "3", "--json"])
    assert ok.exit_code == 0, ok.output
    payload = json.loads(ok.stdout)
    assert payload["clusters"] == 3 and len(payload["profile"]) == 3
    from propensity.cli.main import main
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "--features", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2


def test_dbscan_noise_is_its_own_group_in_the_profile() -> None:
    snap = shop_snapshot(300)
    outlier = snap.head(1).with_columns(pl.lit("far").alias("user_id"),
                                        pl.lit(5000.0).alias("product_view_30d"),
                                        pl.lit(900.0).alias("events_30d"))
    snap = pl.concat([snap, outlier])
    cfg = CFG.model_copy(deep=True)
    cfg.clustering.method = "dbscan"
    seg = Segmenter(cfg).fit(snap)
    out = seg.transform(snap)
    assert out.filter(pl.col("user_id") == "far")["cluster"].item() == "noise"
    profile = cluster_profile(out, seg)
    assert profile["cluster"].to_list()[-1] == "noise"
    assert profile.filter(pl.col("cluster") == "noise")["description"].item().startswith("noise")
    assert profile["size"].sum() == snap.height
