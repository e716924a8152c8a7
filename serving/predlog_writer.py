"""The prediction log's frame building and writes in a child process (``prediction_log.writer: process``).

Measured (``bench_predlog --lock``, BENCHMARKS.md): a flush of 5,000 answers built in a thread of
the worker takes the interpreter lock back from a busy request thread ~30 times (each Polars call
releases it, each return takes it back), ~12.5 ms in all; at 2 connections the worker is busy all
the time, so each take-back delays a running request. Here the worker's log thread only pickles
what waits and writes it to a pipe (~3 take-backs, ~7.5 ms); over HTTP on a 2-core machine the
difference stays inside the noise, hence an option, not the default. The child (``python -m
serving.predlog_writer``, niced) builds the typed frame (:func:`serving.predlog.records_frame`),
hands it to the sink, then answers with one status line. The worker's flush waits for that
answer, so what ``flush`` reports as written is on disk (or in the stream), as with the
in-process writer.

Protocol on the child's stdin: frames of an 8-byte big-endian length and a pickle; the first frame
is ``(sink, features, id_prefix, experiment)``, every later one ``(first_seq, columns, vectors)``.
On the status pipe (the child's original stdout; its fd 1 then points to stderr), one JSON line per
batch: ``{"written": n}`` or ``{"error": "..."}``. End of input: the child closes its sink and exits.
A child found dead is started again before the next batch; one that dies with a batch, or says
nothing for ``REPLY_TIMEOUT_S`` after it (hung: killed), costs that batch (counted as dropped) and
is started again by the next flush: the log heals by itself. The child ignores SIGINT and SIGTERM
(a Ctrl-C reaches the whole process group): it ends when its input ends, which the worker's exit,
however abrupt, causes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

_HEADER = struct.Struct(">Q")
NICE = 10  # the writer yields the processor to the request path (and to the load on a shared host)
PIPE_BYTES = 1 << 20  # the pipe holds a typical batch, so sending it is one system call
REPLY_TIMEOUT_S = 120.0  # a writer silent this long after a batch is taken for hung: killed, replaced


class WriterExited(RuntimeError):
    """The writer process is gone (the batch in flight is not written)."""


def _send(stream: IO[bytes], obj: Any) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any | None:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    size = _HEADER.unpack(head)[0]
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


def _widen(fd: int) -> None:
    with contextlib.suppress(AttributeError, OSError):  # Linux only; the default size still works
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class WriterProcess:
    """The worker's end: starts the child on first use and after it died, sends batches, reads answers."""

    def __init__(self, sink: Any, features: dict[str, Any], id_prefix: str, experiment: str | None) -> None:
        self._spec = (sink, features, id_prefix, experiment)
        pickle.dumps(self._spec)  # a sink that cannot travel fails here, at start-up, not at the first flush
        self._proc: subprocess.Popen | None = None
        self.reply_timeout_s = REPLY_TIMEOUT_S

    def _started(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._proc = None
        code_root = str(Path(__file__).resolve().parent.parent)  # the folder holding this package
        paths = (code_root, os.environ.get("PYTHONPATH"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        proc = subprocess.Popen([sys.executable, "-m", "serving.predlog_writer"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env, close_fds=True)
        assert proc.stdin is not None
        _widen(proc.stdin.fileno())
        try:
            _send(proc.stdin, self._spec)
        except OSError as exc:
            self._stop(proc)
            raise WriterExited(f"prediction log writer did not start ({exc})") from None
        self._proc = proc
        return proc

    def write(self, first_seq: int, columns: tuple[list[Any], ...], vectors: list[Any]) -> int:
        """Send one batch and wait for the child's answer: the number of records written.
        Raises :class:`WriterExited` (child gone) or RuntimeError (the sink's error)."""
        proc = self._started()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            _send(proc.stdin, (first_seq, columns, vectors))
            ready, _, _ = select.select([proc.stdout], [], [], self.reply_timeout_s)
            line = proc.stdout.readline() if ready else b""
        except OSError:
            line = b""
        if not line:
            hung = proc.poll() is None
            self._stop(proc, 0.0 if hung else 5.0)
            state = "hung" if hung else "exited"
            raise WriterExited(f"prediction log writer {state} (code {proc.returncode})")
        status = json.loads(line)
        if "error" in status:
            raise RuntimeError(status["error"])
        return int(status["written"])

    def close(self, timeout_s: float = 30.0) -> None:
        """End of input: the child closes its sink and exits (killed after ``timeout_s``)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._stop(proc, timeout_s)

    @staticmethod
    def _stop(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    """The child: read batches from stdin until it closes, write each through the sink."""
    from serving.predlog import records_frame

    with contextlib.suppress(OSError):
        os.nice(NICE)
    for sig in (signal.SIGINT, signal.SIGTERM):  # a signal to the process group (Ctrl-C) must not cut
        signal.signal(sig, signal.SIG_IGN)  # a batch: the child ends when its input does
    status = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the status pipe
    stdin = sys.stdin.buffer
    spec = _receive(stdin)
    if spec is None:
        return
    sink, features, id_prefix, experiment = spec
    try:
        while (batch := _receive(stdin)) is not None:
            first_seq, columns, vectors = batch
            try:
                sink.write(records_frame(columns, vectors, features, id_prefix, first_seq, experiment))
                reply: dict[str, Any] = {"written": len(columns[-1])}
            except Exception as exc:  # the worker counts the batch as dropped and reports it
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            status.write(json.dumps(reply).encode() + b"\n")
    finally:
        with contextlib.suppress(Exception):
            sink.close()


if __name__ == "__main__":
    main()
