"""Helpers shared by the benchmarks: free ports, server start/stop, `wrk` load, the reference shop
and model (300 trees, depth 6: the KNOWN.md reference size), bulk ingestion over HTTP."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen, path: str = "/readyz", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code in (200, 405):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server not ready in time")


def serve(model: Path, home: Path, config: Path, code: Path = ROOT,
          workers: int | None = None) -> tuple[subprocess.Popen, str]:
    """``propensity serve`` of the checkout ``code`` on a free port, in its own process group:
    ``model``, the serving config file ``config``, ``PROPENSITY_HOME`` = ``home``. Returns the
    process and its URL at once (see :func:`wait_ready`)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(code), "PROPENSITY_HOME": str(home)}
    args = ["--model", str(model), "--port", str(port), "--config", str(config)]
    if workers is not None:
        args += ["--workers", str(workers)]
    proc = subprocess.Popen([sys.executable, "-m", "propensity.cli", "serve", *args], cwd=code, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL after 20 s, no worker left behind (the tests' stop)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from server_support import stop_group

    stop_group(proc)


def process_tree(pid: int) -> list[Any]:
    """``psutil.Process`` of ``pid`` and of its descendants (a server and its workers)."""
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its live descendants."""
    import psutil

    total = 0.0
    for proc in process_tree(pid):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def wrk(url: str, users: list[str], seconds: int, workdir: Path, path: str = "/predict",
        extra_body: str = "", connections: int = 16, server_pid: int | None = None) -> dict[str, float]:
    """``wrk`` (up to 2 threads, ``connections`` connections) POSTing ``{"user_id": <cycling
    users><extra_body>}`` to ``path``: requests/s, p99 latency (ms), requests sent and non-2xx
    answers. ``extra_body`` is raw JSON text starting with a comma (``', "slots": ["hero"]'``).

    With ``server_pid``, also the server's CPU time per answered request (µs, its whole process
    tree, ``server_cpu_us``): what each answer costs the machine, which moves much less than
    requests/s with the load of other processes."""
    script = workdir / f"{path.strip('/').replace('/', '_') or 'root'}.lua"
    ids = ",".join(f'"{u}"' for u in users)
    tail = extra_body.replace("\\", "\\\\").replace("'", "\\'")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"local ids = {{{ids}}}\nlocal n = 0\n"
        "request = function()\n  n = n + 1\n"
        f'  local body = \'{{"user_id": "\' .. ids[(n % #ids) + 1] .. \'"{tail}}}\'\n'
        f'  return wrk.format(nil, "{path}", nil, body)\nend\n')
    cpu_before = tree_cpu_s(server_pid) if server_pid is not None else 0.0
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    cpu = tree_cpu_s(server_pid) - cpu_before if server_pid is not None else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    found = {"requests_per_s": rps, "p99_ms": float(p99.group(1)) * scale,  # type: ignore[union-attr]
             "requests": total, "non_2xx": int(errors.group(1)) if errors else 0}
    if server_pid is not None:
        found["server_cpu_us"] = cpu / max(total, 1) * 1e6
    return found


def emit(results: dict[str, Any], json_path: str | None) -> dict[str, Any]:
    """Print ``results`` as JSON and write them to ``json_path`` when given; returns them."""
    print(json.dumps(results, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
    return results


def ingest(url: str, users: list[dict], events: list[dict]) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=60) as c:
        for u in users:
            c.put(f"/users/{u['user_id']}", json={k: v for k, v in u.items() if k != "user_id"})
    batches = [events[i:i + 500] for i in range(0, len(events), 500)]

    def send(batch: list[dict]) -> int:
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/events", json=batch)
            r.raise_for_status()
            return int(r.json()["applied"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        applied = sum(pool.map(send, batches))
    seconds = time.perf_counter() - t0
    return {"events": len(events), "applied": applied, "seconds": seconds,
            "events_per_s": len(events) / seconds}


def shop(n_users: int) -> tuple[list[dict], list[dict]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_serving_helpers import make_shop

    return make_shop(n_users=n_users, seed=11)


def train(shop: tuple, path: Path) -> None:
    import xgboost as xgb

    sys.path.insert(0, str(ROOT / "tests"))
    from test_serving_helpers import START, clean_frames

    from features.batch.snapshot import build_snapshots_at
    from features.registry import model_features
    from training.model import ConversionModel
    from training.preprocess import FeatureEncoder

    events, users = clean_frames(*shop)
    frame = build_snapshots_at(events, users, [START + timedelta(days=d) for d in (30, 37, 44)],
                               timedelta(days=7))
    numeric = [n for n in model_features() if n != "loyalty_tier"]
    encoder = FeatureEncoder(numeric, ["loyalty_tier"]).fit(frame)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2,
                         "seed": 0, "verbosity": 0},
                        xgb.DMatrix(encoder.transform(frame), label=frame["label"].to_numpy()),
                        num_boost_round=300)
    ConversionModel(family="xgboost", encoder=encoder, estimator=booster).save(str(path))
