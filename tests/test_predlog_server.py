"""The prediction log of a real `propensity serve` (serving/predlog.py): every answer on disk after
shutdown, flushed records kept across a crash and a restart, drops counted in /metrics while the
service keeps answering, the Redis stream, and the readers (`propensity ab analyze --exposures`,
`propensity monitor --predictions`) on what the service wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import mlflow
import polars as pl
import pytest
import redis
from conftest import REDIS_HOST, REDIS_PORT, _require
from fairness_support import register_model
from server_support import start_server
from test_serving_helpers import AS_OF, clean_frames, make_shop, train_model

from features.batch.snapshot import build_snapshot
from monitoring.log import scan_prediction_log

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ANSWER_FIELDS = ("user_id", "probability", "variant", "segment", "journey_stage", "decision", "source")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("predlog")
    raw_events, raw_users = make_shop(n_users=40, seed=5)
    model = train_model(*clean_frames(raw_events, raw_users), tmp / "model.pkl")
    (tmp / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in raw_events))
    (tmp / "users.jsonl").write_text("".join(json.dumps(u) + "\n" for u in raw_users))
    return {"tmp": tmp, "events": raw_events, "users": [u["user_id"] for u in raw_users], "model": model,
            "raw_users": raw_users}


def _config(where: Path, shop: dict, **log: object) -> Path:
    log = {"feature_share": 1.0, **log}  # every vector, to check them all
    where.write_text(json.dumps({"access_log": False, "prediction_log": log,
                                 "experiment": {"enabled": True, "name": "exp-log", "challenger_share": 0.5,
                                                "challenger_model": str(shop["tmp"] / "model.pkl")}}))
    return where


def _serve(shop: dict, workdir: Path, config: Path, *extra: str, env: dict | None = None):
    return start_server(workdir, ["--model", str(shop["tmp"] / "model.pkl"), "--config", str(config),
                                  "--users", str(shop["tmp"] / "users.jsonl"), *extra], env=env)


def _traffic(url: str, shop: dict, users: list[str]) -> list[dict]:
    """Events for every user, then /predict (some twice: cache hits), /predict_batch (known and
    unknown users) and one raw-feature request; returns every answer served."""
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(0, len(shop["events"]), 500):
            assert c.post("/events", json=shop["events"][i:i + 500]).status_code == 200
        answers = [c.post("/predict", json={"user_id": u}).json() for u in users]
        answers += [c.post("/predict", json={"user_id": u}).json() for u in users[:5]]
        batch = c.post("/predict_batch", json=[{"user_id": u} for u in users[:4] + ["ghost-1", "ghost-2"]])
        assert batch.status_code == 200
        answers += batch.json()
        answers.append(c.post("/predict", json={"features": {"events_30d": 4}}).json())
    return answers


def _key(row: dict) -> tuple:
    return tuple(round(row[f], 12) if f == "probability" else row[f] for f in ANSWER_FIELDS)


def _on_disk(folder: Path) -> pl.DataFrame:
    return scan_prediction_log(folder).collect() if folder.exists() else pl.DataFrame()


def test_every_answer_is_logged_and_flushed_records_survive_a_crash(shop: dict) -> None:
    workdir = shop["tmp"] / "files"
    workdir.mkdir()
    folder = workdir / "predictions"
    # 1. Nothing is flushed by time or size: only the shutdown writes the log.
    proc, url = _serve(shop, workdir, _config(shop["tmp"] / "slow.yaml", shop, flush_every_s=600))
    try:
        answers = _traffic(url, shop, shop["users"][:20])
    finally:
        proc.stop()
    log = _on_disk(folder)
    assert log.height == len(answers) == 32
    assert Counter(_key(r) for r in log.iter_rows(named=True)) == Counter(_key(a) for a in answers)
    assert set(log["model_name"]) == {"model"} and set(log["model_version"]) == {"file"}
    assert log["request_id"].n_unique() == log.height
    assert set(log.filter(pl.col("user_id").is_not_null())["experiment"]) == {"exp-log"}
    assert log.filter(pl.col("user_id").is_null())["experiment"].null_count() == 1  # raw features
    profiled = log.filter(pl.col("source") == "profile")
    assert profiled.height >= 20 and profiled["events_30d"].null_count() == 0  # feature vectors, cached too
    # 2. A restart appends; records flushed before a SIGKILL stay.
    proc, url = _serve(shop, workdir, _config(shop["tmp"] / "fast.yaml", shop, flush_every_s=0.3))
    try:
        more = _traffic(url, shop, shop["users"][20:30])
        deadline = time.monotonic() + 60
        while _on_disk(folder).height < log.height + len(more) and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        proc.stop(signal.SIGKILL)
    after = _on_disk(folder)
    assert after.height == log.height + len(more)
    assert set(log["request_id"]) <= set(after["request_id"])
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    _ab_analyze_reads_the_log(shop, folder, after)
    _monitor_reads_the_log(shop, folder, after.height)


def _ab_analyze_reads_the_log(shop: dict, folder: Path, log: pl.DataFrame) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROPENSITY_HOME": str(shop["tmp"] / "ab")}
    cmd = [sys.executable, "-m", "propensity.cli", "ab", "analyze", "--exposures", str(folder),
           "--events", str(shop["tmp"] / "events.jsonl"), "--control", "champion", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=shop["tmp"])
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    enrolled = (log.filter(pl.col("experiment").is_not_null()).group_by("variant")
                .agg(pl.col("user_id").n_unique()))
    expected = dict(enrolled.iter_rows())
    got = {v["name"]: v["n"] for v in result["metrics"]["converted"]["variants"]}
    assert got == expected and sum(got.values()) == 32  # 30 users and the two ghosts


def _monitor_reads_the_log(shop: dict, folder: Path, n: int) -> None:
    uri = f"sqlite:///{shop['tmp'] / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("t", (shop["tmp"] / "art").as_uri()))
    model_uri = register_model(shop["model"])
    events, users = clean_frames(shop["events"], shop["raw_users"])
    build_snapshot(events, users, AS_OF - timedelta(days=7), timedelta(days=7)).write_parquet(
        shop["tmp"] / "reference.parquet")
    config = shop["tmp"] / "monitor.yaml"
    config.write_text(f"tracking: {{uri: '{uri}', log_to_mlflow: false}}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROPENSITY_HOME": str(shop["tmp"] / "mon"),
           "MLFLOW_TRACKING_URI": uri}
    tmp = shop["tmp"]
    cmd = [sys.executable, "-m", "propensity.cli", "monitor", "--model", model_uri, "--predictions",
           str(folder), "--events", str(tmp / "events.jsonl"), "--reference", str(tmp / "reference.parquet"),
           "--config", str(config), "--out", str(tmp / "monitor"), "--no-record", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=shop["tmp"])
    assert done.returncode == 0, done.stderr[-2000:]
    windows = json.loads(done.stdout)["windows"]
    assert sum(w["predictions"] for w in windows) == n
    assert {w["model_version"] for w in windows} == {"file"}
    assert all("events_30d" in w["drift"] for w in windows)  # the logged feature vectors were read


def _metric(text: str, name: str, **labels: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()))


def test_an_unwritable_log_is_counted_and_the_service_still_answers(shop: dict) -> None:
    workdir = shop["tmp"] / "unwritable"
    workdir.mkdir()
    (workdir / "a-file").write_text("not a folder")
    config = _config(workdir / "serving.yaml", shop, flush_every_s=0.3, path=str(workdir / "a-file" / "log"))
    proc, url = _serve(shop, workdir, config, env={"BENTOML_HOME": str(workdir / "bentoml")})
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            codes = [c.post("/predict", json={"user_id": u}).status_code for u in shop["users"][:7]]
            deadline = time.monotonic() + 60
            while True:
                text = c.get("/metrics").text
                dropped = _metric(text, "propensity_prediction_log_dropped_total", reason="write_error")
                if dropped >= 7 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
    finally:
        proc.stop()
    assert codes == [200] * 7
    assert dropped == 7 and _metric(text, "propensity_prediction_log_written_total") == 0


def test_with_a_redis_store_the_log_is_a_redis_stream(shop: dict) -> None:
    _require("Redis", REDIS_HOST, REDIS_PORT)
    workdir = shop["tmp"] / "redis"
    workdir.mkdir()
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    url_redis = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    config = _config(workdir / "serving.yaml", shop, flush_every_s=600)
    try:
        proc, url = _serve(shop, workdir, config, "--store", "redis", "--redis-url", url_redis,
                           "--key-prefix", prefix)
        try:
            answers = _traffic(url, shop, shop["users"][:10])
        finally:
            proc.stop()
        log = scan_prediction_log(f"{url_redis}#{prefix}predictions").collect()
        assert Counter(_key(r) for r in log.iter_rows(named=True)) == Counter(_key(a) for a in answers)
        assert not (workdir / "predictions").exists()
    finally:
        r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        for key in r.scan_iter(match=f"{prefix}*", count=1000):
            r.delete(key)
