"""Number formatting for human output: consistent significant digits, units, intervals.

Only human output rounds: JSON documents keep full precision. Every function takes plain floats
(None or NaN become an en dash) and returns a string.
"""

from __future__ import annotations

import math

import numpy as np

DASH = "–"


def _missing(value: float | None) -> bool:
    return value is None or not math.isfinite(float(value))


def decimals_for(scale: float, digits: int = 3) -> int:
    """Decimal places that show ``digits`` significant digits of a number of magnitude ``scale``."""
    if scale == 0 or not math.isfinite(scale):
        return max(digits - 1, 0)
    return max(digits - 1 - math.floor(math.log10(abs(scale))), 0)


def num(value: float | None, digits: int = 3, unit: str = "", sign: bool = False) -> str:
    """``value`` with ``digits`` significant digits (integers above that keep all digits, with
    thousands separators), e.g. 0.028871 -> "0.0289", 1234.5 -> "1,235"; ``unit`` is appended."""
    if _missing(value):
        return DASH
    v = float(value)  # type: ignore[arg-type]
    places = decimals_for(v, digits)
    text = f"{v:{'+' if sign else ''},.{places}f}"
    if float(text.replace(",", "")) == 0 and v != 0:  # below the shown precision: say so, not "0"
        text = f"{v:{'+' if sign else ''}.{digits - 1}e}"
    return text + unit


def count(value: int | float | None) -> str:
    """A count with thousands separators: 12345 -> "12,345"."""
    return DASH if _missing(value) else f"{int(value):,}"  # type: ignore[arg-type]


def pct(share: float | None, digits: int = 3, sign: bool = False) -> str:
    """A share 0..1 as a percentage with ``digits`` significant digits (at most 2 decimals)."""
    if _missing(share):
        return DASH
    v = 100 * float(share)  # type: ignore[arg-type]
    places = min(decimals_for(v, digits), 2)
    return f"{v:{'+' if sign else ''}.{places}f}%"


def p_value(p: float | None) -> str:
    """A p-value: two significant digits, "< 0.001" below that."""
    if _missing(p):
        return DASH
    v = float(p)  # type: ignore[arg-type]
    return "< 0.001" if v < 0.001 else f"{v:.2g}" if v < 0.01 else f"{v:.2f}"


def interval_decimals(low: float, high: float) -> int:
    """Decimal places that show the half-width of [low, high] with two significant digits."""
    half = abs(high - low) / 2
    return decimals_for(half, 2) if half > 0 else 3


def estimate(value: float | None, low: float | None, high: float | None, unit: str = "",
             sign: bool = True, scale: float = 1.0) -> str:
    """An estimate with its interval, all three to the same decimals (set by the interval's width):
    (1.162, 0.02887, 2.294) -> "+1.16 [0.03, 2.29]". ``scale`` multiplies all three (100 for pp)."""
    if _missing(value):
        return DASH
    v = float(value) * scale  # type: ignore[arg-type]
    if _missing(low) or _missing(high):
        return num(v, 3, unit, sign)
    lo, hi = float(low) * scale, float(high) * scale  # type: ignore[arg-type]
    d = interval_decimals(lo, hi)
    # A bound near 0 keeps one significant digit: [0.03, 2.29] must not read [0.0, 2.3].
    near = min((abs(b) for b in (lo, hi) if b != 0), default=0.0)
    if near:
        d = max(d, min(decimals_for(near, 1), 4))
    return f"{v:{'+' if sign else ''},.{d}f}{unit} [{lo:,.{d}f}, {hi:,.{d}f}]"


def share_interval(value: float | None, low: float | None, high: float | None) -> str:
    """A share 0..1 with its interval, as percentages: "20.1% [18.2%, 22.0%]"."""
    if _missing(value):
        return DASH
    if _missing(low) or _missing(high):
        return pct(value)
    lo, hi = 100 * float(low), 100 * float(high)  # type: ignore[arg-type]
    d = min(interval_decimals(lo, hi), 2)
    return f"{100 * float(value):.{d}f}% [{lo:.{d}f}%, {hi:.{d}f}%]"  # type: ignore[arg-type]


def seconds(value: float) -> str:
    """A duration for a summary line: "8.4 s", "2 min 05 s"."""
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s"


def wilson_bounds(successes: np.ndarray, n: np.ndarray, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``successes / n`` at the normal quantile ``z`` (1.96: 95%),
    element-wise; NaN where ``n`` is 0. The point estimate always lies inside (rounding).

    Reference: Wilson (1927); R ``prop.test(x, n, correct = FALSE)$conf.int``, statsmodels
    ``proportion_confint(method="wilson")``.
    """
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        low, high = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
        low, high = np.minimum(low, p), np.maximum(high, p)
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def wilson(successes: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """:func:`wilson_bounds` of one proportion (95% by default); (nan, nan) when ``n`` is 0."""
    low, high = wilson_bounds(np.array([successes]), np.array([n]), z)
    return float(low[0]), float(high[0])
