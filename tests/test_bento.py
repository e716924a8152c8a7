"""`propensity build`: a bento that carries its registered model and runs without the checkout.

The fast tests read the built bento (its model list, requirements, Dockerfile). Under ``CI=true``
the slow ones install the model's and then the bento's requirements into a fresh virtual
environment (from the package index pip is configured with) and check, from a folder with no
checkout on the path and no MLflow store, that the registered model loads with
``mlflow.pyfunc.load_model`` and that the served bento gives the same /predict answers as
`propensity serve` from the checkout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from server_support import stop_group
from test_serving_helpers import AS_OF, clean_frames, make_shop, train_model

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
pytestmark = pytest.mark.slow
needs_ci = pytest.mark.skipif(os.environ.get("CI") != "true", reason="installs packages: CI=true only")


@dataclass
class Built:
    tmp: Path
    store: str
    env: dict[str, str]
    result: dict
    model: object
    events: list[dict]
    users: list[dict]

    @property
    def bento(self) -> Path:
        return Path(self.result["path"])


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PROPENSITY_MODEL")}
    return {**env, "PYTHONPATH": str(ROOT), "BENTOML_HOME": str(tmp / "bentoml"),
            "PROPENSITY_HOME": str(tmp / "work"), "BENTOML_DO_NOT_TRACK": "True", **extra}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    import mlflow

    from training.registry import log_conversion_model, register
    from training.tracking import setup_tracking

    tmp = tmp_path_factory.mktemp("bento")
    raw_events, raw_users = make_shop(n_users=40, seed=5)
    model = train_model(*clean_frames(raw_events, raw_users), tmp / "model.pkl")
    store = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    (tmp / "store").mkdir()
    _, experiment_id = setup_tracking(store, "bento-test")
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_conversion_model(model)
    register(info.model_uri, "propensity-conversion", "champion", {})
    env = _env(tmp, MLFLOW_TRACKING_URI=store)
    out = subprocess.run([PY, "-m", "propensity.cli", "build", "--json"], cwd=ROOT, env=env,
                         capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    return Built(tmp, store, env, result, model, raw_events, raw_users)


def test_the_bento_lists_the_model_it_carries(built: Built) -> None:
    import yaml

    manifest = yaml.safe_load((built.bento / "bento.yaml").read_text())
    assert [m["tag"] for m in manifest["models"]] == ["propensity-model:propensity-conversion-v1"]
    assert (built.result["model_name"], built.result["model_version"]) == ("propensity-conversion", "1")


def test_the_bento_installs_pinned_runtime_requirements_only(built: Built) -> None:
    from packaging.requirements import Requirement

    lines = (built.bento / "env" / "python" / "requirements.txt").read_text().splitlines()
    reqs = [Requirement(line) for line in lines if "==" in line and not line.startswith("#")]
    pins = {r.name.lower(): str(r.specifier).removeprefix("==") for r in reqs}
    for runtime in ("bentoml", "mlflow", "xgboost", "polars", "redis"):
        assert pins[runtime] == metadata.version(runtime)
    assert not set(pins) & {"pytest", "pytest-xdist", "mypy", "ruff", "hypothesis", "pyspark", "uv"}
    # XGBoost without NVIDIA's NCCL: its CPU-only build where published, itself elsewhere
    assert "nvidia-nccl-cu12" not in pins and pins["xgboost-cpu"] == metadata.version("xgboost")
    assert [r.marker is not None and r.marker.evaluate() for r in reqs if r.name.startswith("xgboost")
            ].count(True) == 1


def test_the_dockerfile_installs_the_bento_requirements_and_runs_the_bento(built: Built) -> None:
    from serving.bento import dockerfile

    text = dockerfile(str(built.bento))
    assert "FROM python:3.11" in text
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in text
    assert "requirements.lock" not in text
    assert "ENTRYPOINT" in text and "COPY --chown=bentoml:bentoml . ./" in text


def test_build_of_a_missing_model_names_the_store(built: Built) -> None:
    out = subprocess.run([PY, "-m", "propensity.cli", "build", "--model", "models:/nope@champion"], cwd=ROOT,
                         env=built.env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "error:" in out.stderr and built.store in out.stderr and "nope" in out.stderr


def test_the_challenger_travels_in_the_bento_when_the_split_is_on(built: Built) -> None:
    import mlflow
    import yaml

    from training.registry import log_conversion_model, register, use_store

    use_store(built.store)
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("bento-test").experiment_id):
        info = log_conversion_model(built.model)
    assert register(info.model_uri, "propensity-conversion", "challenger", {}) == "2"
    config = built.tmp / "split.yaml"
    config.write_text("experiment:\n  enabled: true\n")
    out = subprocess.run([PY, "-m", "propensity.cli", "build", "--json", "--config", str(config)], cwd=ROOT,
                         env=built.env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    manifest = yaml.safe_load((Path(result["path"]) / "bento.yaml").read_text())
    assert [m["tag"] for m in manifest["models"]] == ["propensity-model:propensity-conversion-v1",
                                                      "propensity-model:propensity-conversion-v2"]
    # what the bento's service loads: the carried champion and challenger (in the bento's BENTOML_HOME)
    script = ("import sys, bentoml; from serving.bento import carried_models; "
              "service = type('S', (), {'bento': bentoml.bentos.get(sys.argv[1])}); "
              "print(*[m.version for m in carried_models(service)])")
    out = subprocess.run([PY, "-c", script, result["bento_tag"]], cwd=ROOT, env=built.env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["1", "2"]


# -- the clean environment (CI only) --------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def venv(built: Built) -> Path:
    """A fresh virtual environment holding the registered model's requirements only."""
    import mlflow

    path = built.tmp / "venv"
    subprocess.run([PY, "-m", "venv", str(path)], check=True, timeout=300)
    mlflow.set_tracking_uri(built.store)
    model_dir = mlflow.artifacts.download_artifacts("models:/propensity-conversion/1",
                                                    dst_path=str(built.tmp / "model"))
    _pip(path, Path(model_dir) / "requirements.txt")
    return path


def _pip(venv: Path, requirements: Path) -> None:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r",
                          str(requirements)], capture_output=True, text=True, timeout=1800,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr[-3000:]


def _bare_env(home: Path) -> dict[str, str]:
    """No checkout on the path, no MLflow store, nothing of the test process's settings."""
    keep = ("PATH", "HOME", "LANG", "PIP_CONFIG_FILE", "SSL_CERT_FILE")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "BENTOML_HOME": str(home / "bentoml"),
            "PROPENSITY_HOME": str(home / "work"), "BENTOML_DO_NOT_TRACK": "True"}


@needs_ci
def test_the_registered_model_loads_in_a_clean_environment(built: Built, venv: Path) -> None:
    import pandas as pd

    run = built.tmp / "clean-load"
    run.mkdir()
    rows = [{"events_30d": 3.0, "cart_value_30d": 40.0, "loyalty_tier": "gold"}, {"events_30d": 0.0}]
    script = ("import json, sys, mlflow, pandas as pd; m = mlflow.pyfunc.load_model(sys.argv[1]); "
              "print(json.dumps([float(p) for p in m.predict(pd.DataFrame(json.loads(sys.argv[2])))]))")
    model_dir = next((built.tmp / "model").rglob("MLmodel")).parent
    args = [str(venv / "bin" / "python"), "-c", script, str(model_dir), json.dumps(rows)]
    out = subprocess.run(args, cwd=run, env=_bare_env(run), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == pytest.approx(list(built.model.predict_proba(pd.DataFrame(rows))), abs=1e-9)  # type: ignore[attr-defined]
    assert not (run / "mlruns").exists() and not (run / "mlflow.db").exists()


def _serve(cmd: list[str], cwd: Path, env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    _stop(proc)
    pytest.fail(f"server not ready: {log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    stop_group(proc, timeout=30)


def _answers(port: int, built: Built) -> list[dict]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        for user in built.users[:10]:
            c.put(f"/users/{user['user_id']}", json={k: v for k, v in user.items() if k != "user_id"})
        ids = sorted({u["user_id"] for u in built.users[:10]})
        assert c.post("/events", json=[e for e in built.events if e["user_id"] in ids]).status_code == 200
        bodies = [{"user_id": u, "as_of": AS_OF.isoformat()} for u in ids]
        bodies.append({"features": {"events_30d": 4, "loyalty_tier": "gold"}})
        return [c.post("/predict", json=b).json() for b in bodies]


@pytest.fixture(scope="module")
def checkout_answers(built: Built) -> list[dict]:
    port = _free_port()
    proc = _serve([PY, "-m", "propensity.cli", "serve", "--port", str(port)], ROOT, built.env, port,
                  built.tmp / "serve-checkout.log")
    try:
        return _answers(port, built)
    finally:
        _stop(proc)


@needs_ci
def test_the_bento_serves_the_same_answers_from_a_fresh_environment(built: Built, venv: Path,
                                                                      checkout_answers: list[dict]) -> None:
    _pip(venv, built.bento / "env" / "python" / "requirements.txt")
    archive = built.tmp / "propensity.bento"
    subprocess.run([PY, "-m", "bentoml", "export", built.result["bento_tag"], str(archive)], env=built.env,
                   check=True, capture_output=True, timeout=600)
    run = built.tmp / "elsewhere"
    run.mkdir()
    env = _bare_env(run)
    subprocess.run([str(venv / "bin" / "bentoml"), "import", str(archive)], cwd=run, env=env, check=True,
                   capture_output=True, timeout=600)
    port = _free_port()
    proc = _serve([str(venv / "bin" / "bentoml"), "serve", built.result["bento_tag"], "--port", str(port)],
                  run, env, port, built.tmp / "serve-bento.log")
    try:
        answers = _answers(port, built)
    finally:
        _stop(proc)
    assert answers == checkout_answers
    assert all(a["model"] == {"name": "propensity-conversion", "version": "1"} for a in answers)
    assert sum(a["personalized"] for a in answers) >= 5
    assert not list(run.rglob("mlflow.db")) and not (run / "mlruns").exists()


@needs_ci
def test_a_non_editable_install_finds_the_default_configs(built: Built, venv: Path) -> None:
    import shutil

    source = built.tmp / "source"  # a copy: building in place would leave build/ in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "tests", "bench", "work",
                                                                "__pycache__", "*.egg-info", "build"))
    wheels = built.tmp / "wheels"
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--quiet", str(source), "-w", str(wheels)], check=True,
                   capture_output=True, timeout=600, env=_bare_env(built.tmp))
    subprocess.run([*pip, "install", "--no-deps", "--quiet", *map(str, wheels.glob("*.whl"))], check=True,
                   capture_output=True, timeout=600)
    run = built.tmp / "configs-check"
    run.mkdir()
    script = ("from propensity.config import config_dir; from serving.config import load_serving_config; "
              "print(config_dir()); print(load_serving_config().model)")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], cwd=run, env=_bare_env(run),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    where, model = out.stdout.split()[-2:]
    assert where.startswith(str(venv)) and (Path(where) / "serving.yaml").is_file()
    assert model == "models:/propensity-conversion@champion"


def test_the_plain_bentofile_installs_the_runtime_dependencies_of_pyproject() -> None:
    import tomllib

    import yaml

    with open(ROOT / "pyproject.toml", "rb") as fh:
        declared = tomllib.load(fh)["project"]["dependencies"]
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert bentofile["python"]["packages"] == declared
