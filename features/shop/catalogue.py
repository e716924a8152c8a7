"""The synthetic shop's product catalogue and its users' tastes (which products they view, cart and buy).

The model (constants below: they define the shop, fixed before any recommender was tuned):

* **Catalogue**: ``N_PRODUCTS`` products ``p0000``..; product ``i`` is in category ``i mod 8`` (the
  order of :data:`features.shop.generate.CATEGORIES`), has a log-normal price around its category's base
  price, and a long-tailed popularity: Zipf weights ``rank ** -POPULARITY_EXPONENT`` over a random
  order of the products.
* **Bought together**: products are grouped into ``N_THEMES`` themes of ``THEME_SIZE`` products each
  (a random partition across categories: an outfit, a camping kit); within a theme, products are
  chosen in proportion to ``popularity ** THEME_POPULARITY_EXPONENT``.
* **Tastes**: each user likes ``THEMES_PER_USER`` distinct themes (drawn by theme popularity) and has
  a category affinity drawn from ``Dirichlet(CATEGORY_CONCENTRATION)``. Every product event
  (view, cart, removal) and every purchase picks its product from the same mixture: with
  probability ``THEME_SHARE`` one of the user's themes (uniformly) then a product in it; otherwise a
  category by affinity, then a product of that category by popularity. A purchase buys the product
  its funnel's add-to-cart carted.
* **Oracle**: the mixture is the exact probability that the user's next purchase is each product.
  Tastes do not drift, so it is the same at every cut-off: ``product_oracle.parquet`` has one row per
  user and product among the user's ``ORACLE_TOP`` likeliest (by ``p_next``), with ``rank``.

The draws use their own random streams (seeded by the shop's seed), so adding the catalogue left every
other column of a generated shop unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

N_PRODUCTS = 2000
POPULARITY_EXPONENT = 0.8
N_THEMES = 200
THEME_SIZE = N_PRODUCTS // N_THEMES
THEME_POPULARITY_EXPONENT = 0.5
THEMES_PER_USER = 3
CATEGORY_CONCENTRATION = 0.3
THEME_SHARE = 0.7
ORACLE_TOP = 50
BASE_PRICE_EUR = (79.0, 45.0, 120.0, 60.0, 25.0, 250.0, 18.0, 30.0)  # per category, in CATEGORIES order
ADJECTIVES = ("Classic", "Urban", "Trail", "Cosy", "Bright", "Smart", "Pocket", "Family", "Pro", "Mini")
_CATALOGUE_STREAM, _TASTE_STREAM, _CHOICE_STREAM = 101, 102, 103


def product_ids(numbers: np.ndarray) -> list[str]:
    """``p0000``-style ids of product indices."""
    return [f"p{int(i):04d}" for i in numbers]


@dataclass(frozen=True)
class Catalogue:
    """Products indexed 0..N-1: category index, price (EUR), popularity (sums to 1), theme."""

    category: np.ndarray
    price: np.ndarray
    popularity: np.ndarray
    theme: np.ndarray

    @classmethod
    def draw(cls, seed: int, n_categories: int) -> Catalogue:
        rng = np.random.default_rng([seed, _CATALOGUE_STREAM])
        index = np.arange(N_PRODUCTS)
        category = index % n_categories
        base = np.resize(np.array(BASE_PRICE_EUR), n_categories)[category]
        price = np.round(base * np.exp(0.45 * rng.standard_normal(N_PRODUCTS)), 2)
        rank = rng.permutation(N_PRODUCTS) + 1
        popularity = rank.astype(float) ** -POPULARITY_EXPONENT
        theme = rng.permutation(np.repeat(np.arange(N_THEMES), THEME_SIZE))
        return cls(category, price, popularity / popularity.sum(), theme)

    def within(self, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Each product's weight normalised within its group (theme or category)."""
        totals = np.bincount(groups, weights=weights)
        return weights / totals[groups]

    def frame(self, categories: tuple[str, ...]) -> pl.DataFrame:
        """The catalogue file: product_id, name, category, price, popularity, theme, image_url."""
        ids = product_ids(np.arange(N_PRODUCTS))
        names = [f"{ADJECTIVES[(i // len(categories)) % len(ADJECTIVES)]} {categories[c]} {i:04d}"
                 for i, c in enumerate(self.category)]
        return pl.DataFrame({
            "product_id": ids, "name": names, "category": [categories[c] for c in self.category],
            "price": self.price, "popularity": self.popularity, "theme": self.theme,
            "image_url": [f"https://img.example.com/products/{p}.jpg" for p in ids],
        })


@dataclass(frozen=True)
class Tastes:
    """Each user's liked themes (n, THEMES_PER_USER) and category affinity (n, categories)."""

    catalogue: Catalogue
    themes: np.ndarray
    affinity: np.ndarray

    @classmethod
    def draw(cls, seed: int, n_users: int, n_categories: int) -> Tastes:
        catalogue = Catalogue.draw(seed, n_categories)
        rng = np.random.default_rng([seed, _TASTE_STREAM])
        theme_pop = np.bincount(catalogue.theme, weights=catalogue.popularity, minlength=N_THEMES)
        # Gumbel top-k: THEMES_PER_USER distinct themes per user, drawn in proportion to theme popularity.
        keys = np.log(theme_pop)[None, :] + rng.gumbel(size=(n_users, N_THEMES))
        themes = np.argpartition(-keys, THEMES_PER_USER, axis=1)[:, :THEMES_PER_USER]
        affinity = rng.dirichlet(np.full(n_categories, CATEGORY_CONCENTRATION), size=n_users)
        return cls(catalogue, themes, affinity)

    def choose(self, users: np.ndarray, seed: int) -> np.ndarray:
        """One product index per entry of ``users`` (user indices), drawn from their tastes."""
        cat = self.catalogue
        rng = np.random.default_rng([seed, _CHOICE_STREAM])
        n = len(users)
        by_theme = rng.random(n) < THEME_SHARE
        theme = self.themes[users, rng.integers(0, THEMES_PER_USER, n)]
        cum_aff = np.cumsum(self.affinity[users], axis=1)
        category = np.minimum((rng.random(n)[:, None] >= cum_aff).sum(axis=1), cum_aff.shape[1] - 1)
        group = np.where(by_theme, theme, N_THEMES + category)  # themes, then categories, as one key
        groups = np.concatenate([cat.theme, N_THEMES + cat.category])
        weights = np.concatenate([cat.popularity ** THEME_POPULARITY_EXPONENT, cat.popularity])
        members = np.concatenate([np.arange(N_PRODUCTS), np.arange(N_PRODUCTS)])
        order = np.argsort(groups, kind="stable")
        sorted_groups, sorted_members = groups[order], members[order]
        # Weights sum to 1 within each group, so group g's cumulative weights run from g to g + 1:
        # one searchsorted over all groups draws every event at once.
        cum = np.cumsum(cat.within(groups, weights)[order])
        pick = np.searchsorted(cum, group + rng.random(n), side="right")
        start = np.searchsorted(sorted_groups, group, side="left")
        end = np.searchsorted(sorted_groups, group, side="right")
        pick = np.clip(pick, start, end - 1)  # rounding at a group's edge
        return sorted_members[pick]

    def next_purchase_probability(self, users: np.ndarray) -> np.ndarray:
        """Exact P(next purchase = product) for each user of ``users``: shape (len(users), N_PRODUCTS)."""
        cat = self.catalogue
        in_theme = cat.within(cat.theme, cat.popularity ** THEME_POPULARITY_EXPONENT)
        in_category = cat.within(cat.category, cat.popularity)
        liked = (self.themes[users][:, :, None] == cat.theme[None, None, :]).any(axis=1)
        return (THEME_SHARE / THEMES_PER_USER * liked * in_theme[None, :]
                + (1 - THEME_SHARE) * self.affinity[users][:, cat.category] * in_category[None, :])


def oracle_frame(tastes: Tastes, user_ids: list[str], chunk: int = 2000) -> pl.DataFrame:
    """Each user's ``ORACLE_TOP`` likeliest next purchases: user_id, product_id, p_next, rank (1 = best)."""
    frames = []
    for lo in range(0, len(user_ids), chunk):
        users = np.arange(lo, min(lo + chunk, len(user_ids)))
        p = tastes.next_purchase_probability(users)
        top = np.argsort(-p, axis=1, kind="stable")[:, :ORACLE_TOP]
        frames.append(pl.DataFrame({
            "user_id": np.repeat(np.array(user_ids)[users], ORACLE_TOP),
            "product_id": product_ids(top.ravel()),
            "p_next": np.take_along_axis(p, top, axis=1).ravel(),
            "rank": np.tile(np.arange(1, ORACLE_TOP + 1), len(users)).astype(np.int32),
        }))
    return pl.concat(frames) if frames else pl.DataFrame()


def write_catalogue(seed: int, user_ids: list[str], categories: tuple[str, ...], out_dir: Path) -> None:
    """Write catalogue.parquet and product_oracle.parquet of the shop with ``seed`` into ``out_dir``."""
    tastes = Tastes.draw(seed, len(user_ids), len(categories))
    tastes.catalogue.frame(categories).write_parquet(out_dir / "catalogue.parquet")
    oracle_frame(tastes, user_ids).write_parquet(out_dir / "product_oracle.parquet")
