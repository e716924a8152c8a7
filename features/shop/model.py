"""The hidden model of the synthetic shop: the constants that define what "the shop" is.

They are constants, not configuration: changing one changes every generated shop of every seed.
See :mod:`features.shop.generate` for the generative model they parameterise.
"""

from __future__ import annotations

import numpy as np

HAZARD = np.array([0.0015, 0.012, 0.16])  # P(buy today | state), before beta and the sale boost
SESSION_BASE = np.array([0.10, 0.0, 0.0])  # visits/day in state 0 (scaled by activity); 1 and 2 visit daily
EVENTS_PER_SESSION = np.array([2.0, 4.0, 6.0])  # mean extra events after the first
EVENT_MIX: dict[str, tuple[float, float, float]] = {  # share of each event type per state
    "page_view": (0.42, 0.22, 0.14),
    "product_view": (0.16, 0.40, 0.34),
    "scroll": (0.14, 0.08, 0.04),
    "search": (0.08, 0.12, 0.08),
    "video_play": (0.07, 0.03, 0.02),
    "newsletter_signup": (0.015, 0.01, 0.005),
    "whitepaper_download": (0.015, 0.015, 0.005),
    "add_to_cart": (0.01, 0.06, 0.22),
    "remove_from_cart": (0.0, 0.02, 0.05),
    "checkout_start": (0.0, 0.02, 0.10),
}
FUNNEL_END = ("add_to_cart", "checkout_start", "purchase")
EVENT_NAMES: tuple[str, ...] = (*EVENT_MIX, "purchase")
PAGE_OF_EVENT = {"product_view": "product", "add_to_cart": "product", "remove_from_cart": "cart",
                 "checkout_start": "checkout", "purchase": "checkout", "search": "category",
                 "video_play": "content", "newsletter_signup": "content", "whitepaper_download": "content"}
PAGE_VIEW_PAGES = ("home", "category", "content")
CATEGORIES = ("shoes", "apparel", "outdoor", "home", "beauty", "electronics", "books", "toys")
DEVICES = (("mobile", 0.55), ("desktop", 0.35), ("tablet", 0.10))
SOURCES = (("direct", 0.30), ("search", 0.30), ("social", 0.15), ("email", 0.10), ("ads", 0.15))
GENDERS = (("female", 0.49), ("male", 0.48), ("other", 0.03))
COUNTRIES = (("de", 0.30), ("fr", 0.20), ("gb", 0.20), ("es", 0.15), ("it", 0.15))
TIERS = (("none", 0.50), ("bronze", 0.28), ("silver", 0.15), ("gold", 0.07))
# log-scale effects on beta (buying) and warmth (intent); small for demographic groups
TIER_EFFECT = {"none": 0.0, "bronze": 0.2, "silver": 0.4, "gold": 0.6}
GENDER_EFFECT = {"female": 0.03, "male": -0.03, "other": 0.0}
COUNTRY_EFFECT = {"de": 0.04, "fr": -0.02, "gb": 0.02, "es": -0.03, "it": -0.01}
AGE_EFFECT = {"under-18": -0.05, "18-24": -0.05, "25-34": 0.04, "35-44": 0.05, "45-54": 0.02,
              "55-64": -0.02, "65+": -0.05}
HOUR_WEIGHTS = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 4,
                         5, 4.5, 4, 4, 4, 4.5, 5.5, 6.5, 7, 6, 4, 2], dtype=float)
BURN_IN_DAYS = 30  # the chain runs this long before the first day, so day 0 is not a cold start


def group_values(feature: str) -> list[str] | None:
    """The values of a user or session attribute of the shop (None for an attribute it does not draw)."""
    table = {"gender": GENDERS, "country": COUNTRIES, "loyalty_tier": TIERS, "device": DEVICES,
             "source": SOURCES}
    if feature in table:
        return [name for name, _ in table[feature]]
    if feature == "age_band":
        return list(AGE_EFFECT)
    return None


def draw(rng: np.random.Generator, table: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    """``n`` names drawn from a ``(name, weight)`` table."""
    names = np.array([name for name, _ in table])
    p = np.array([w for _, w in table], dtype=float)
    return names[rng.choice(len(names), size=n, p=p / p.sum())]
