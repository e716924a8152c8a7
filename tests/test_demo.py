"""`propensity demo` end to end on a small shop, in its own process and work folder.

Every stage must run and leave its artefact where the summary says; the numbers it reports must be
the ones in the stores (MLflow registry, feature file), not printed decorations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    home = tmp_path_factory.mktemp("home")
    # the demo's own store (<home>/mlflow.db): no MLflow setting of another test or of the shell
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PROPENSITY_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "propensity.cli", "demo", "--users", "1500", "--days", "44",
                           "--trials", "2", "--json"], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return home, json.loads(done.stdout), done.stderr


def test_every_stage_leaves_its_artefact(demo_run) -> None:
    home, result, log = demo_run
    assert Path(result["paths"]["out_dir"]) == home / "demo"
    assert result["seconds"] > 0 and "total: took" in log
    gated = result["numbers"]["fairness_gate"] == "fail"  # no champion: the loop is skipped
    loop = () if gated else ("monitor_report", "ab_exposures", "ab_events")
    for key in ("events", "users", "oracle", "features", "segment_profile", "segment_plot",
                "audit_report", "experiment_report", "content_sample", "recommender_report", *loop):
        path = Path(result["paths"][key])
        assert path.is_file() and path.stat().st_size > 0, key
    for n in range(1, 13):
        assert f"== {n}/12" in log
    assert (home / "mlflow.db").is_file()


def test_reported_numbers_match_the_stores(demo_run) -> None:
    home, result, _ = demo_run
    numbers = result["numbers"]
    features = pl.read_parquet(result["paths"]["features"])
    assert numbers["rows"] == features.height
    assert numbers["label_rate"] == pytest.approx(features["label"].mean())
    assert {"engagement_score", "journey_stage"} <= set(features.columns)
    assert 0.5 < numbers["auc"] <= numbers["oracle_auc"] + 0.05
    assert numbers["fairness_gate"] in ("pass", "fail", "insufficient_evidence")
    assert 0.0 < numbers["sample_probability"] < 1.0

    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version("propensity-conversion", str(numbers["model_version"]))
    aliases = set(version.aliases)
    if numbers["fairness_gate"] == "fail":  # not promoted, and the loop is skipped: still the challenger
        assert aliases == {"challenger"}
    else:  # champion after an audit that did not fail; the loop's challenger is a later version
        assert "challenger" not in aliases
        assert ("champion" in aliases) == (not numbers.get("promoted", False))
    assert result["commands"]["serve"].startswith("propensity serve --model models:/propensity-conversion")


def test_the_loop_stages_a_challenger_and_decides(demo_run) -> None:
    home, result, log = demo_run
    numbers = result["numbers"]
    if numbers["fairness_gate"] == "fail":  # no champion: the loop says so and stops
        assert "skipped: there is no champion to monitor and challenge" in log
        return
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    challenger = client.get_model_version("propensity-conversion", str(numbers["challenger_version"]))
    assert challenger.tags["fairness_gate"] == numbers["challenger_gate"] != "fail"
    champion = client.get_model_version_by_alias("propensity-conversion", "champion").version
    assert (champion == challenger.version) == numbers["promoted"]
    exposures = pl.read_parquet(result["paths"]["ab_exposures"])
    assert exposures.columns == ["user_id", "experiment", "variant", "first_exposure"]
    from serving.scoring import variant_for

    assert all(variant_for("propensity", u, 0.5) == v  # the service's own split
               for u, v in exposures.select("user_id", "variant").iter_rows())
    assert "PROMOTED" in log or "champion kept" in log
