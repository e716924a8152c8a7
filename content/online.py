"""The logic of the content routes (``POST /content``, ``GET /recommendations``) on a running engine.

The service only translates HTTP; these functions do the work:

* :func:`load_content_setup` builds a :class:`~content.serve.ContentSetup` at start-up from the
  ``content`` section of ``configs/serving.yaml`` (components, recommenders from MLflow or files, the
  catalogue, the exposure log, the decision rules);
* :func:`content_answer` asks the engine for the user's prediction (probability, segment, journey
  stage, features and decision, exactly as ``/predict`` computes them), picks the decision rule's
  component for the ``hero`` slot, and renders every slot with suggestions from the live profile;
* :func:`recommendations_answer` suggests products from the live profile without a model call.

Both log one exposure per answer (per slot for ``/content``) with the products shown. Users without
a personalized profile (no consent, deleted, unknown) get the non-personalized suggestions: their
stored history is never read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from content.online_config import ContentServingConfig
from content.serve import ContentExposureLog, ContentSetup, recommend_for, render_slots
from propensity.errors import ConfigError, DataError

MAX_SLOTS = 10
_PERSONAL = ("profile",)


def _load_recommender(uri: str, tracking_uri: str | None) -> Any:
    from content.model import RecommenderModel, load_recommender

    if uri.startswith(("models:/", "runs:/")):
        from training.registry import use_store

        use_store(tracking_uri)
        try:
            return load_recommender(uri)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a missing model
            raise ConfigError(f"content.recommenders: cannot load '{uri}' ({str(exc).splitlines()[0][:160]})"
                              ) from None
    if not Path(uri).is_file():
        raise ConfigError(f"content.recommenders: '{uri}' is neither an MLflow URI nor a recommender file")
    return RecommenderModel.load(uri)


def read_catalogue(path: str | Path) -> dict[str, dict[str, Any]]:
    """product_id -> {name, category, price, image_url} of a shop's ``catalogue.parquet``."""
    import polars as pl

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"content.catalogue: {path} not found (`propensity generate` writes it)")
    frame = pl.read_parquet(path, columns=["product_id", "name", "category", "price", "image_url"])
    return {row.pop("product_id"): row for row in frame.to_dicts()}


def _rules(rules_path: str | None) -> Any:
    from propensity.config import default_config_path
    from serving.rules import load_rules

    path = rules_path or default_config_path("rules.yaml")
    return load_rules(path) if Path(path).is_file() else None


def load_content_setup(cfg: ContentServingConfig, tracking_uri: str | None = None,
                       rules_path: str | None = None) -> ContentSetup | None:
    """The content routes' start-up objects (None when ``cfg.enabled`` is false); ConfigError names the
    key at fault. Every slot's component must exist in the components file."""
    if not cfg.enabled:
        return None
    from content.components import load_components
    from propensity.paths import work_dir

    library = load_components(cfg.components)
    for slot, name in cfg.slots.items():
        if name not in library:
            raise ConfigError(f"content.slots.{slot}: unknown component '{name}' "
                              f"(known: {', '.join(sorted(library.components))})")
    recommenders = {variant: _load_recommender(uri, tracking_uri)
                    for variant, uri in cfg.recommenders.items()}
    catalogue = read_catalogue(cfg.catalogue or work_dir() / "shop" / "catalogue.parquet")
    log = ContentExposureLog(cfg.exposure_log or work_dir() / "content_exposures.jsonl")
    return ContentSetup(library, recommenders, catalogue, salt=cfg.salt, experiment=cfg.experiment,
                        shares=dict(cfg.shares), slots=dict(cfg.slots), exposures=log,
                        rules=_rules(rules_path), max_k=cfg.max_k)


def check_slots(setup: ContentSetup, slots: Sequence[str]) -> None:
    """DataError naming ``slots[i]`` for an unknown slot, a repeated one, or too many."""
    if not slots:
        raise DataError("slots: give at least one slot (hero, " + ", ".join(setup.slots) + ")")
    if len(slots) > MAX_SLOTS:
        raise DataError(f"slots: at most {MAX_SLOTS} slots per request, got {len(slots)}")
    for i, slot in enumerate(slots):
        if slot != "hero" and slot not in setup.slots:
            raise DataError(f"slots[{i}]: unknown slot '{slot}' (known: hero, {', '.join(setup.slots)})")
        if slot in slots[:i]:
            raise DataError(f"slots[{i}]: slot '{slot}' is asked twice")


def _product_events(engine: Any, user_id: str, personalized: bool) -> list[dict[str, Any]]:
    """The live profile's product events (what the visitor viewed a second ago included)."""
    if not personalized:
        return []
    profile = engine.store.get_profile(user_id)
    return [{"event": r.event, "product_id": r.product_id} for r in profile.events if r.product_id]


def _decision(setup: ContentSetup, answer: Mapping[str, Any], facts: Mapping[str, Any]
              ) -> tuple[str, str | None, Mapping[str, Any]]:
    """(component, rule name, rule params) of the hero slot: the rule the engine's decision came from."""
    rules = setup.rules
    decided = str(answer["decision"])
    if rules is not None:
        rule = rules.match(facts)
        if rule is not None and rule.action == decided:
            return decided, rule.name, rule.params
    component = decided if decided in setup.library else setup.slots.get("carousel", "")
    if component not in setup.library:
        component = next(iter(setup.library.components))
    return component, None, {}


async def content_answer(engine: Any, setup: ContentSetup, user_id: str, context: Mapping[str, Any],
                         slots: Sequence[str]) -> dict[str, Any]:
    """The ``POST /content`` answer (see the module docstring); DataError names a bad field."""
    check_slots(setup, slots)
    answer = await engine.predict_async({"user_id": user_id, "context": context, "debug": True})
    features = dict(answer.get("features") or {})
    for key in ("segment", "cluster", "journey_stage", "engagement_score"):
        features[key] = answer.get(key)
    facts = {**features, **context, "probability": answer["probability"],
             "personalized": answer["personalized"], "source": answer["source"], "cluster": answer["cluster"]}
    events = _product_events(engine, user_id, answer["source"] in _PERSONAL)
    return render_slots(setup, user_id, slots, features, answer["probability"], context, events,
                        _decision(setup, answer, facts))


def recommendations_answer(engine: Any, setup: ContentSetup, user_id: str, k: int) -> dict[str, Any]:
    """The ``GET /recommendations`` answer: ``k`` products from the user's recommender variant and live
    profile (bought products excluded), with catalogue details; one exposure logged."""
    if k > setup.max_k:
        raise DataError(f"k: at most {setup.max_k} products per request, got {k}")
    profile = engine.store.get_profile(user_id)
    consent = profile.attributes.get("consent")
    consents = engine.cfg.consent_default if consent is None else bool(consent)
    personalized = profile.known and not profile.deleted and consents
    events = ([{"event": r.event, "product_id": r.product_id} for r in profile.events if r.product_id]
              if personalized else [])
    variant = setup.variant(user_id)
    shown = recommend_for(setup.recommenders[variant], events, k)
    if setup.exposures is not None:
        setup.exposures.record(user_id, setup.experiment, variant, "recommendations", "",
                               [p["product_id"] for p in shown])
    products = [{**setup.catalogue.get(p["product_id"], {}), **p} for p in shown]
    return {"user_id": user_id, "products": products, "variant": variant}
