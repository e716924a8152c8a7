"""Unsampled traces record no spans (serving/telemetry.py), through BentoML's real ASGI app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.config import ServingConfig

PROBE = Path(__file__).with_name("telemetry_probe.py")
ROOT = PROBE.parent.parent


def _requests(tmp_path: Path, sampler: str, sample_rate: float) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_HOME": str(tmp_path / "bentoml")}
    out = subprocess.run([sys.executable, str(PROBE), sampler, str(sample_rate)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_bentomls_own_sampler_records_every_unsampled_request(tmp_path: Path) -> None:
    # What serving.telemetry changes: if BentoML stops recording unsampled spans, it is not needed.
    answers = _requests(tmp_path, "bentoml", 0.0)
    assert [a["recording"] for a in answers] == [True] * 3 and {a["sampled"] for a in answers} == {0}


def test_unsampled_requests_record_no_spans_and_keep_their_ids(tmp_path: Path) -> None:
    answers = _requests(tmp_path, "lean", 0.0)
    assert len(answers) == 3
    assert [a["recording"] for a in answers] == [False] * 3 and {a["sampled"] for a in answers} == {0}
    # trace and span ids for BentoML's log lines, and its request id (its hook reads span.context)
    assert all(a["trace_id"] > 0 and a["span_id"] > 0 for a in answers)
    assert len({a["trace_id"] for a in answers}) == 3
    assert all(a["request_id"] is not None for a in answers) and len({a["request_id"] for a in answers}) == 3


def test_sampled_requests_are_still_recorded(tmp_path: Path) -> None:
    answers = _requests(tmp_path, "lean", 1.0)
    assert [(a["recording"], a["sampled"]) for a in answers] == [(True, 1)] * 3


def test_the_lean_sampler_is_the_default() -> None:
    assert ServingConfig().record_unsampled_spans is False
    with pytest.raises(ValueError, match="record_unsampled_spans"):
        ServingConfig(record_unsampled_spans="sometimes")  # type: ignore[arg-type]
