"""The demo's content stage (a stage of :mod:`propensity.cli.demo`): render content for the sample
user, and an A/B of collaborative against content-based suggestions with simulated visitors. Printing
only; the work is :mod:`content.ab_demo`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def content_stage(result: Any, out: Path, shop_dir: Path, user: str, answer: dict[str, Any],
                  say: Callable[[str], Any]) -> None:
    """Run the stage; adds its files and numbers to the demo's ``result``."""
    from content.ab_demo import fit_on_shop, recommender_ab, render_sample
    from experiments.config import load_experiments_config

    settings = load_experiments_config()
    demo = settings.recommendations.demo
    shop = fit_on_shop(shop_dir, ["popularity", demo.control, demo.treatment])
    sample = render_sample(shop, user, out / "content", _decision(answer), _features(answer),
                           answer.get("probability"), recommender=demo.treatment)
    for slot in sample["answer"]["slots"]:
        names = [p["product_id"] for p in slot["products"]]
        say(f"{slot['slot']}: {slot['component']}" + (f" (rule {slot['rule']})" if slot["rule"] else "")
            + (f", shows {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}" if names else ""))
    say(f"rendered HTML: {sample['html']}")
    ab = recommender_ab(shop, out / "content", settings)
    recall = ab.recall
    say("recall@10 on held-out purchases: " + ", ".join(f"{k} {v:.3f}" for k, v in recall.items())
        + f" (collaborative {recall[demo.treatment] / recall['popularity']:.1f}x popularity)")
    for variant, row in ab.per_variant.items():
        say(f"{variant}: {row['visitors']:,.0f} visitors, click-through {row['clicked']:.1%}, "
            f"conversion {row['converted']:.2%}, revenue per user {row['revenue']:.2f} EUR")
    for verdict in ab.verdicts:
        say(f"- {verdict}")
    say(f"report: {ab.files['recommender_report']}")
    result.files.update(content_sample=sample["html"], **ab.files)
    result.numbers.update(recall_at_10=recall, recommender_ab=ab.per_variant)


def _decision(answer: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """The hero slot: /predict's decision, with the name and parameters of the rule whose action it is."""
    from serving.rules import load_rules

    decided = str(answer.get("decision"))
    rule = next((r for r in load_rules().rules if r.action == decided), None)
    return decided, rule.name if rule else None, dict(rule.params) if rule else {}


def _features(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: answer.get(k) for k in ("segment", "cluster", "journey_stage", "engagement_score")}
