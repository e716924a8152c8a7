"""Shared fixtures: the real PostgreSQL and Redis servers of this machine.

On a laptop without them the tests that need them skip with a reason; under CI=true a missing
server is a failure, never a skip.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_HOST = os.environ.get("PROPENSITY_TEST_PG_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("PROPENSITY_TEST_PG_PORT", "5432"))
REDIS_HOST = os.environ.get("PROPENSITY_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("PROPENSITY_TEST_REDIS_PORT", "6379"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(service: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{service} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: this test must run, not skip)")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL to a fresh schema-free database name on the local PostgreSQL (trust auth).

    Each test gets its own database, created and dropped here, so parallel tests never share state.
    """
    _require("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    import psycopg2

    name = f"propensity_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host=POSTGRES_HOST, port=POSTGRES_PORT, user="postgres", dbname="test")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A redis:// URL on the local server, with a test-unique key prefix in ``PROPENSITY_TEST_PREFIX``.

    Database 0 is shared with other tests running in parallel: use the prefix for every key.
    """
    _require("Redis", REDIS_HOST, REDIS_PORT)
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def redis_prefix() -> str:
    """A unique key prefix so parallel tests sharing one Redis do not collide."""
    return f"test:{uuid.uuid4().hex[:10]}:"


_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LITTER = ("mlruns", "mlartifacts", "mlflow.db", "work", "spark-warehouse", "metastore_db", "derby.log")


@pytest.fixture(scope="session", autouse=True)
def checkout_stays_clean() -> Iterator[None]:
    """Tests leave nothing in the checkout: MLflow stores, work folders, Spark's litter go to tmp."""
    before = {name for name in _LITTER if os.path.exists(os.path.join(_CHECKOUT, name))}
    yield
    after = {name for name in _LITTER if os.path.exists(os.path.join(_CHECKOUT, name))}
    assert not after - before, f"tests left {sorted(after - before)} in {_CHECKOUT}"


@pytest.fixture(autouse=True)
def tracking_uri_stays_the_tests_own() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` and ``mlflow.set_registry_uri`` export ``MLFLOW_TRACKING_URI`` and
    ``MLFLOW_REGISTRY_URI`` to ``os.environ`` (so that subprocesses inherit them), and the project
    honours them everywhere: without this, a later test in the same worker, or its subprocesses (the
    demo's), would use an earlier test's store or registry."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {name: os.environ.get(name) for name in names}
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:  # the in-process settings too (an MlflowClient() reads them before the env)
        mlflow.set_tracking_uri(before["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(before["MLFLOW_REGISTRY_URI"] or "")
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
