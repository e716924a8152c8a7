"""The page model shared by every report, and the Jinja2 renderer.

A report is a :class:`Header` (what was analysed, the data period, the dataset digest, when the
report was generated), a :class:`Decision` (the verdict in plain words, read first), then
:class:`Section` s of evidence: tables, figures, notes and warnings. Templates extend
``base.html.j2``; autoescaping is on, so no value can inject markup.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from reports import numbers


@dataclass(frozen=True)
class Header:
    """The title block: ``title`` names the subject (experiment or model), ``period`` the data window.
    ``purpose`` (name, text) pairs come first: what the analysis set out to show (an experiment's
    hypothesis and planned effect); ``facts`` follow the data period and digest."""

    title: str
    subject: str
    period: str | None = None
    digest: str | None = None
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    facts: tuple[tuple[str, str], ...] = ()
    purpose: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Decision:
    """The decision, first: ``tone`` colours the box ("pass", "fail" or "neutral")."""

    headline: str
    lines: list[str] = field(default_factory=list)
    tone: Literal["pass", "fail", "neutral"] = "neutral"


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells; ``note`` is shown under it."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG figure embedded as a data URI; ``caption`` says how to read it."""

    title: str
    png: bytes
    caption: str = ""

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Section:
    """A block of evidence: an intro, warnings (each says what to do), tables and figures."""

    title: str
    intro: str = ""
    warnings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("reports", "templates"),
                      autoescape=select_autoescape(["j2", "html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=numbers.num, pct=numbers.pct, count=numbers.count, p_value=numbers.p_value)
    return env


def render_page(header: Header, decision: Decision, sections: list[Section],
                template: str = "report.html.j2", **extra: Any) -> str:
    """One self-contained HTML page (inline CSS, base64 images, no script)."""
    return _environment().get_template(template).render(header=header, decision=decision, sections=sections,
                                                        **extra)
