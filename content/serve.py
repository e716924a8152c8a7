"""Serving content as plain functions: suggestions for a user and rendered slots (routes call these).

* :func:`recommender_variant` splits users between recommenders by a hash of (salt, user id), like
  the model split of serving/scoring.py but with its own salt, so the two experiments are independent.
* :func:`recommend_for` scores the user's live product history (what they viewed a second ago
  counts at once) and never suggests what they already bought.
* :func:`render_slots` picks each slot's component (the decision rules' action for the ``hero``
  slot, the configured component for the others), fills it with the user's features and suggestions,
  renders it in the sandbox and logs one exposure per slot with the products shown.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from content.components import ComponentLibrary, render_variables
from content.model import RecommenderModel


def recommender_variant(salt: str, user_id: str, shares: Mapping[str, float]) -> str:
    """The recommender variant of ``user_id``: a deterministic point in [0, 1) from sha256(salt:user)
    falls into one of the cumulative ``shares`` (in the mapping's order; the last takes the rest)."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    total = 0.0
    names = list(shares)
    for name in names[:-1]:
        total += shares[name]
        if u < total:
            return name
    return names[-1]


def product_history(events: Iterable[Mapping[str, Any]],
                    weights: Mapping[str, float]) -> tuple[dict[str, float], set[str]]:
    """(product_id -> summed weight, products bought) from a user's events (``event``, ``product_id``)."""
    history: dict[str, float] = {}
    bought: set[str] = set()
    for event in events:
        product = event.get("product_id")
        kind = str(event.get("event", ""))
        if not product or kind not in weights:
            continue
        history[product] = history.get(product, 0.0) + weights[kind]
        if kind == "purchase":
            bought.add(product)
    return history, bought


def recommend_for(model: RecommenderModel, events: Iterable[Mapping[str, Any]],
                  k: int) -> list[dict[str, Any]]:
    """The ``k`` best products for a user's live product events, bought ones excluded:
    ``[{"product_id", "score"}]``, best first."""
    history, bought = product_history(events, model.weights)
    return [{"product_id": p, "score": s} for p, s in model.recommend(history, k, exclude=bought)]


class ContentExposureLog:
    """Append-only JSON Lines: one record per answer and slot with the products shown (O_APPEND writes,
    so worker processes can share the file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def record(self, user_id: str, experiment: str, variant: str, slot: str, component: str,
               products: Sequence[str], at: datetime | None = None) -> None:
        """One exposure; ``at`` (default now) is for replays and simulations."""
        line = json.dumps({"user_id": user_id, "experiment": experiment, "variant": variant, "slot": slot,
                           "component": component, "products": list(products),
                           "time": (at or datetime.now(UTC)).isoformat()}) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class ContentSetup:
    """What the content routes need, loaded once at start-up."""

    library: ComponentLibrary
    recommenders: dict[str, RecommenderModel]  # variant -> fitted recommender
    catalogue: dict[str, dict[str, Any]]  # product_id -> name, category, price, image_url
    salt: str = "recommenders"
    experiment: str = "recommenders"
    shares: dict[str, float] = field(default_factory=dict)  # variant -> share; empty = equal shares
    slots: dict[str, str] = field(default_factory=lambda: {"sidebar": "educational_content",
                                                           "carousel": "recommended_products"})
    exposures: ContentExposureLog | None = None
    max_k: int = 50  # most products one /recommendations answer returns
    rules: Any = None  # serving.rules.RuleSet: names the rule behind the hero slot's component

    def variant(self, user_id: str) -> str:
        shares = self.shares or {name: 1.0 / len(self.recommenders) for name in self.recommenders}
        return recommender_variant(self.salt, user_id, shares)


def render_slots(setup: ContentSetup, user_id: str, slots: Sequence[str], features: Mapping[str, Any],
                 probability: float | None, context: Mapping[str, Any], events: Iterable[Mapping[str, Any]],
                 decision: tuple[str, str | None, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``POST /content`` answer. ``decision`` = (component, rule name or None, rule params) of the
    decision rules for this user (the ``hero`` slot); unknown slots raise KeyError naming the slot."""
    variant = setup.variant(user_id)
    model = setup.recommenders[variant]
    names = [_component(setup, slot, decision[0]) for slot in slots]
    wanted = max([setup.library.components[name].spec.products for name in names] + [0])
    suggested = recommend_for(model, list(events), wanted) if wanted else []
    out = []
    for slot, name in zip(slots, names, strict=True):
        shown = suggested[: setup.library.components[name].spec.products]
        products = [{**setup.catalogue.get(p["product_id"], {}), **p} for p in shown]
        variables = render_variables(features, probability, context, products, user_id)
        params = decision[2] if slot == "hero" else {}
        html = setup.library.render(name, variables, params)
        if setup.exposures is not None:
            setup.exposures.record(user_id, setup.experiment, variant, slot, name,
                                   [p["product_id"] for p in shown])
        out.append({"slot": slot, "component": name, "html": html, "products": shown,
                    "rule": decision[1] if slot == "hero" else None, "variant": variant})
    return {"user_id": user_id, "slots": out}


def _component(setup: ContentSetup, slot: str, decided: str) -> str:
    if slot == "hero":
        return decided
    if slot not in setup.slots:
        raise KeyError(slot)
    return setup.slots[slot]
