"""Small helpers shared by the CLI modules: JSON output, human summaries, progress and timing.
No stage logic.

``--json`` documents share key names for the same idea across commands (see the README's key
table): ``paths`` maps every written artefact to its path, ``seconds`` is the command's wall time,
scalar counts (``rows``, ``users``, ``events``) are numbers, never paths. JSON keeps full precision;
only human output rounds.
"""

from __future__ import annotations

import json
import math
from typing import Any

import click

from propensity.progress import Step


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj


def emit_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as one JSON document on stdout (NaN and inf become null)."""
    click.echo(json.dumps(_clean(payload), indent=2, default=str))


def info(message: str) -> None:
    """A progress or summary line for humans, on stderr so --json stdout stays machine-readable."""
    click.echo(message, err=True)


class Steps:
    """Progress of one command on stderr: a live bar with ETA when stderr is a terminal and the output
    is for humans; plain lines otherwise (pipes, CI, ``--json``).

    Pass the instance as a stage's ``progress`` callback. :class:`propensity.progress.Step` messages
    move the bar and name the running activity (plain output leaves them out: the bar is off, so a
    quick command or a one-line error stays one line); ``counter`` is a regex whose two groups are
    the done and total counts of free-text messages (e.g. ``r"^trial (\\d+)/(\\d+)"``); other
    messages print above the bar.
    ``seconds`` is the wall time since the command started.
    """

    def __init__(self, title: str, *, as_json: bool = False, counter: str | None = None) -> None:
        import re
        import sys
        import time

        self.started = time.perf_counter()
        self._counter = re.compile(counter) if counter else None
        self._live = not as_json and sys.stderr.isatty()
        self._bar: Any = None
        if self._live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task(title, total=None)

    def __enter__(self) -> Steps:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, message: str) -> None:
        if isinstance(message, Step):
            if self._bar is not None:
                self._bar.update(self._task, completed=message.done, total=message.total,
                                 description=message.text)
            return
        found = self._counter.search(message) if self._counter else None
        if self._bar is None:
            info(message)
            return
        if found:
            done, total = int(found.group(1)), int(found.group(2))
            self._bar.update(self._task, completed=done, total=total)
        self._bar.console.print(message, highlight=False)

    @property
    def seconds(self) -> float:
        """Wall time (s) since the command started."""
        import time

        return time.perf_counter() - self.started


def took(seconds: float) -> str:
    """The total-time phrase of a human summary: "took 8.4 s", "took 2 min 05 s"."""
    from reports.numbers import seconds as fmt

    return f"took {fmt(seconds)}"
