"""Render an HTML report in headless Chromium (the Debian package, driven by Playwright) and probe it.

The probe loads the file at each width, collects console errors and page errors, finds images that
did not decode and measures horizontal overflow; it saves a full-page screenshot per width.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

WIDTHS = (1280, 400)

# Images that did not load or decode, and how far the page is wider than the viewport (px).
_PROBE = """() => ({
  broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  images: document.images.length,
  title: document.title,
})"""


@dataclass
class Probe:
    """What one width of one page showed."""

    width: int
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    overflow_px: int = 0
    images: int = 0
    title: str = ""
    screenshot: Path | None = None


def chromium_path() -> str:
    """The system Chromium; skipped locally when absent, an error under CI (.ci/run installs it)."""
    found = (os.environ.get("PROPENSITY_CHROMIUM") or shutil.which("chromium")
             or shutil.which("chromium-browser"))
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does this)")
    pytest.skip("chromium is not installed")


def probe_page(html: Path, shots: Path, name: str) -> list[Probe]:
    """Open ``html`` at every width of :data:`WIDTHS`; screenshots go to ``shots/<name>-<width>.png``."""
    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed (a dev dependency in pyproject.toml)")
        pytest.skip("playwright is not installed")
    shots.mkdir(parents=True, exist_ok=True)
    results = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            for width in WIDTHS:
                page = browser.new_page(viewport={"width": width, "height": 900})
                found = Probe(width)
                page.on("console", lambda msg, f=found: f.console_errors.append(msg.text)
                        if msg.type == "error" else None)
                page.on("pageerror", lambda exc, f=found: f.console_errors.append(str(exc)))
                page.goto(html.resolve().as_uri(), wait_until="load")
                facts = page.evaluate(_PROBE)
                found.broken_images, found.overflow_px = facts["broken"], int(facts["overflow"])
                found.images, found.title = int(facts["images"]), facts["title"]
                found.screenshot = shots / f"{name}-{width}.png"
                page.screenshot(path=str(found.screenshot), full_page=True)
                page.close()
                results.append(found)
        finally:
            browser.close()
    return results


def assert_renders_cleanly(html: Path, shots: Path, name: str, min_images: int = 1) -> list[Probe]:
    """Fail on console errors, broken images, horizontal overflow or too few images at any width."""
    probes = probe_page(html, shots, name)
    for p in probes:
        assert not p.console_errors, f"{name} at {p.width}px: console errors {p.console_errors}"
        assert not p.broken_images, f"{name} at {p.width}px: broken images {p.broken_images}"
        assert p.overflow_px <= 0, f"{name} at {p.width}px: {p.overflow_px}px horizontal overflow"
        assert p.images >= min_images, f"{name} at {p.width}px: {p.images} images, expected {min_images}+"
    return probes
