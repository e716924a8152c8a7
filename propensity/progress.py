"""Progress of long stages: one callback type shared by the stages, the command line and Python users.

A stage takes ``progress: Progress | None``: any callable of one string (``print`` and
``logging.info`` work). Free-text lines are notes; counted work arrives as :class:`Step` messages,
which are strings too (``"[12/40] generate: simulating intent"``) and also carry ``done`` and
``total``, so a progress bar (the CLI's, or a Python user's) can show how far the stage is and
estimate the time left without parsing text.

A stage counts its work with a :class:`Tracker`::

    track = Tracker(progress, total=cfg.days + 3, prefix="generate")
    track.begin("simulating intent")     # what runs now; done units unchanged
    for day in range(cfg.days):
        ...
        track.advance()                   # one unit done
"""

from __future__ import annotations

import time
from collections.abc import Callable

Progress = Callable[[str], None]


class Step(str):
    """A progress message with counts: ``done`` of ``total`` units of a stage are complete and
    ``text`` says what runs now (or, when ``done == total``, what finished)."""

    done: int
    total: int
    text: str

    def __new__(cls, text: str, done: int, total: int) -> Step:
        step = super().__new__(cls, f"[{done}/{total}] {text}")
        step.text, step.done, step.total = text, done, total
        return step


class Tracker:
    """Counts the units of work of one stage and reports them to ``progress`` as :class:`Step` messages.

    ``total`` is the number of units the stage will do (a stage picks units of roughly equal cost,
    e.g. one simulated day). A message is sent when the activity changes, and while it stays the
    same at most every ``interval`` seconds and at the end, so a callback such as ``print`` is not
    flooded. ``note`` sends a free-text line. Without a callback nothing is sent.
    """

    def __init__(self, progress: Progress | None, total: int, prefix: str = "",
                 interval: float = 0.5) -> None:
        self._progress = progress
        self.total = max(int(total), 1)
        self.done = 0
        self._prefix = f"{prefix}: " if prefix else ""
        self._interval = interval
        self._text = ""
        self._sent = 0.0

    def begin(self, text: str, total: int | None = None) -> None:
        """Start an activity (optionally re-estimating ``total``, the units of the whole stage)."""
        if total is not None:
            self.total = max(int(total), self.done, 1)
        self._text = text
        self._send()

    def advance(self, units: int = 1) -> None:
        """``units`` more units of the current activity are done."""
        self.done = min(self.done + units, self.total)
        if self.done == self.total or time.monotonic() - self._sent >= self._interval:
            self._send()

    def finish(self, text: str = "done") -> None:
        """All units are done."""
        self.done = self.total
        self._text = text
        self._send()

    def note(self, text: str) -> None:
        """A free-text line (a count or a finding worth reading, not a step)."""
        if self._progress is not None:
            self._progress(self._prefix + text)

    def _send(self) -> None:
        if self._progress is not None:
            self._progress(Step(self._prefix + self._text, self.done, self.total))
            self._sent = time.monotonic()
