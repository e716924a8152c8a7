"""The fairness gate on generated shops, through the CLI: a planted disparity must be found and named.

`propensity generate --disparity country=fr:0.3` makes French users convert much less (their hidden
intent is lower); a model trained on that shop selects fewer of them, so the audit must fail on
country's demographic parity ratio and name "fr". The same pipeline on the shop without the planted
group keeps country's ratio above the four-fifths limit. Small shops are noisy on small groups
(age bands, "other" gender), so only the planted feature is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairness.config import FairnessConfig
from fairness.gate import GateVerdict
from fairness.stage import worst_failing_feature

pytestmark = pytest.mark.slow


def _cli(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "cli.main", *args, "--json"], capture_output=True, text=True,
                          env=env, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _audit_of_a_shop(tmp: Path, disparity: str | None) -> dict:
    env = {**os.environ, "PROPENSITY_HOME": str(tmp / "work")}
    planted = ["--disparity", disparity] if disparity else []
    _cli(env, "generate", "--users", "4000", "--days", "40", "--seed", "42", "--out", str(tmp / "shop"),
         *planted)
    _cli(env, "features", "--events", str(tmp / "shop" / "events.parquet"), "--users",
         str(tmp / "shop" / "users.parquet"), "--as-of", "2026-10-04", "--snapshots", "3", "--every", "7d",
         "--out", str(tmp / "F.parquet"))
    trained = _cli(env, "train", "--profile", "demo", "--trials", "2", "--features", str(tmp / "F.parquet"))
    return _cli(env, "audit", "--model", trained["model_uri"], "--features", str(tmp / "F.parquet"),
                "--users", str(tmp / "shop" / "users.parquet"), "--mitigation", "never")


def test_a_planted_disparity_fails_the_gate_and_names_the_group(tmp_path: Path) -> None:
    audit = _audit_of_a_shop(tmp_path, "country=fr:0.3")
    assert audit["verdict"] == "fail"
    ratio = audit["metrics"]["demographic_parity_ratio"]["country"]
    assert ratio < 0.6
    failing = [f for f in audit["failing"]
               if f["metric"] == "demographic_parity_ratio" and f["feature"] == "country"]
    assert failing and failing[0]["value"] == pytest.approx(ratio) and failing[0]["limit"] == 0.8
    assert "fr" in failing[0]["groups"]
    rates = {g["group"]: g["selection_rate"] for g in audit["groups"]["country"]}
    assert min(rates, key=rates.__getitem__) == "fr"


def test_without_the_planted_group_country_passes_four_fifths(tmp_path: Path) -> None:
    audit = _audit_of_a_shop(tmp_path, None)
    assert audit["metrics"]["demographic_parity_ratio"]["country"] >= 0.8
    assert not [f for f in audit["failing"] if f["feature"] == "country"
                and f["metric"].startswith("demographic_parity")]


def test_mitigation_targets_the_worst_violation_of_its_constraint() -> None:
    cfg = FairnessConfig()
    verdict = GateVerdict("fail", [
        {"metric": "demographic_parity_ratio", "feature": "age_band", "value": 0.78, "limit": 0.8},
        {"metric": "equalized_odds_difference", "feature": "age_band", "value": 0.26, "limit": 0.1},
        {"metric": "demographic_parity_ratio", "feature": "country", "value": 0.46, "limit": 0.8},
        {"metric": "demographic_parity_ratio", "feature": "gender×age_band", "value": 0.1, "limit": 0.8},
    ])
    assert cfg.mitigation.constraint == "demographic_parity"
    assert worst_failing_feature(verdict, cfg) == "country"
    eo_mitigation = cfg.mitigation.model_copy(update={"constraint": "equalized_odds"})
    eo = cfg.model_copy(update={"mitigation": eo_mitigation})
    assert worst_failing_feature(verdict, eo) == "age_band"
    assert worst_failing_feature(GateVerdict("pass", []), cfg) is None
