"""The plots' look: a colour-blind-safe palette (Okabe & Ito) applied inside a style context.

Plots are always drawn under :func:`plot_style`, never under a process-wide style: a library
that calls ``plt.style.use`` (Optuna's matplotlib plots set "ggplot") must not recolour a later
report, and a report must not restyle anyone else's figures.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from cycler import cycler  # noqa: E402

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision
# deficiencies. Named so that code and legends say the same colour.
PALETTE: dict[str, str] = {
    "blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
    "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000", "grey": "#8C8C8C",
}
CYCLE = [PALETTE[c] for c in ("blue", "orange", "green", "vermillion", "sky", "purple", "yellow", "black")]

# Readable figures: 100 dpi PNGs of at least ~800 px width for the default 8-inch figure.
DPI = 100
RC: dict[str, Any] = {
    "axes.prop_cycle": cycler(color=CYCLE),
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "font.size": 11, "axes.titlesize": 12, "legend.fontsize": 10, "figure.dpi": DPI, "savefig.dpi": DPI,
    "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
}


def color(i: int) -> str:
    """The ``i``-th colour of the palette's cycle (wraps around)."""
    return CYCLE[i % len(CYCLE)]


@contextmanager
def plot_style() -> Iterator[None]:
    """Matplotlib's defaults plus the palette, for the duration of the block only.

    Whatever the block (or a library inside it) changes in ``rcParams`` is undone on exit.
    """
    with plt.style.context("default"), plt.rc_context(RC):  # type: ignore[arg-type]
        yield


def figure_png(fig: Any, dpi: int = DPI) -> bytes:
    """A matplotlib figure as PNG bytes (tight bounding box); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def figure_base64(fig: Any, dpi: int = DPI) -> str:
    """A matplotlib figure as a base64 PNG string, for a ``data:`` URI; the figure is closed."""
    return base64.b64encode(figure_png(fig, dpi)).decode("ascii")
