"""Start and stop a real `propensity serve` (or a redis-server) as a subprocess for a test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal ``proc``'s process group and wait (SIGKILL after ``timeout``); then kill every
    descendant still alive (BentoML's workers run in their own process groups: a SIGKILLed
    supervisor would leave them behind)."""
    import psutil

    descendants: list[psutil.Process] = []
    if proc.poll() is None:
        try:
            descendants = psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    for child in descendants:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


class Process:
    """A subprocess in its own session (stopped with its children) with its output in ``log``."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log = log
        self._handle = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=cwd or ROOT, env=env, stdout=self._handle,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        stop_group(self.proc, sig, timeout)
        self._handle.close()

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def wait_until(check: Callable[[], bool], what: str, proc: Process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            pytest.fail(f"{what}: process exited: {proc.tail()}")
        try:
            if check():
                return
        except (httpx.TransportError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: timed out: {proc.tail()}")
        time.sleep(0.3)


def start_server(workdir: Path, args: list[str], env: dict[str, str] | None = None,
                 wait_ready: bool = True) -> tuple[Process, str]:
    """`propensity serve ARGS` on a free port; returns the process and its base URL."""
    port = free_port()
    full_env = {**os.environ, "PROPENSITY_HOME": str(workdir), "PYTHONPATH": str(ROOT), **(env or {})}
    proc = Process([sys.executable, "-m", "propensity.cli", "serve", "--port", str(port), *args],
                   workdir / f"server-{port}.log", full_env)
    url = f"http://127.0.0.1:{port}"
    if wait_ready:
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, "server ready", proc)
    else:
        wait_until(lambda: httpx.get(f"{url}/livez", timeout=2).status_code == 200, "server live", proc)
    return proc, url


def tls_certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (openssl)."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def start_redis(workdir: Path, port: int | None = None, password: str | None = None,
                tls: tuple[Path, Path] | None = None) -> tuple[Process, int]:
    """A private redis-server (append-only, fsync always: a SIGKILL loses no acknowledged write);
    with ``tls`` (certificate, key) it speaks TLS only."""
    port = port or free_port()
    data = workdir / f"redis-{port}"
    data.mkdir(exist_ok=True)
    cmd = ["redis-server", "--bind", "127.0.0.1", "--dir", str(data),
           "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"]
    if tls:
        cmd += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls[0]),
                "--tls-key-file", str(tls[1]), "--tls-ca-cert-file", str(tls[0]), "--tls-auth-clients", "no"]
    else:
        cmd += ["--port", str(port)]
    if password:
        cmd += ["--requirepass", password]
    proc = Process(cmd, workdir / f"redis-{port}.log")

    def answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(answers, "redis-server", proc, timeout=30)
    return proc, port
