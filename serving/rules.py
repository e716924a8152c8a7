"""Content decision rules: an ordered list of ``when: <condition>`` -> ``action``, first match wins.

Conditions are written in the small language of :mod:`serving.conditions` (parsed once, at load,
checked against the known fields, compiled to closures; no ``eval``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from features.segments.config import SegmentsConfig, load_segments_config
from propensity.config import StrictModel, default_config_path, load_config
from propensity.errors import ConfigError
from serving.conditions import (
    ALIASES,
    CONTEXT_FIELDS,
    BoolOp,
    ConditionError,
    Evaluator,
    Node,
    Not,
    compile_condition,
    known_fields,
    parse_condition,
)

__all__ = ["ALIASES", "CONTEXT_FIELDS", "ConditionError", "Evaluator", "compile_condition", "known_fields",
           "parse_condition", "ActionSpec", "RuleSpec", "RulesFile", "Rule", "RuleSet", "build_rules",
           "load_rules"]


class ActionSpec(StrictModel):
    """An action that names a content component and the parameters it passes to its template
    (content/components.py checks both against configs/content.yaml)."""

    component: str = Field(min_length=1)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)


class RuleSpec(StrictModel):
    name: str = Field(min_length=1)
    when: str
    action: str | ActionSpec  # a component name, or {component, params}


class RulesFile(StrictModel):
    default: str = Field(min_length=1)
    rules: list[RuleSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    name: str
    when: str
    action: str
    condition: Node
    matches: Evaluator
    params: Mapping[str, Any] = field(default_factory=dict)  # template parameters of the action


@dataclass(frozen=True)
class RuleSet:
    """Ordered rules and a default action."""

    rules: tuple[Rule, ...]
    default: str

    @property
    def fields(self) -> set[str]:
        """Every context field some rule reads."""
        out: set[str] = set()

        def walk(node: Node) -> None:
            if isinstance(node, BoolOp):
                for n in node.operands:
                    walk(n)
            elif isinstance(node, Not):
                walk(node.operand)
            else:
                out.add(node.field)
        for rule in self.rules:
            walk(rule.condition)
        return out

    def match(self, context: Mapping[str, Any]) -> Rule | None:
        """The first rule whose condition holds, or None."""
        for rule in self.rules:
            if rule.matches(context):
                return rule
        return None

    def decide(self, context: Mapping[str, Any]) -> str:
        """The action of the first matching rule, else the default action."""
        rule = self.match(context)
        return self.default if rule is None else rule.action


def _allowed_values(segments: SegmentsConfig) -> dict[str, set[str]]:
    return {"journey_stage": set(segments.journey.stages), "segment": set(segments.engagement.segment_names)}


def build_rules(spec: RulesFile, where: str = "rules", segments: SegmentsConfig | None = None) -> RuleSet:
    """Parse and validate every rule of ``spec``; :class:`ConfigError` names the rule and position."""
    segments = segments or load_segments_config()
    fields = known_fields()
    allowed = _allowed_values(segments)
    rules = []
    seen: set[str] = set()
    for spec_rule in spec.rules:
        if spec_rule.name in seen:
            raise ConfigError(f"{where}: rule '{spec_rule.name}' is defined twice")
        seen.add(spec_rule.name)
        try:
            node = parse_condition(spec_rule.when, fields, allowed)
        except ConditionError as exc:
            raise ConfigError(f"{where}: rule '{spec_rule.name}': {exc.message} at position "
                              f"{exc.position + 1} of condition \"{spec_rule.when}\"") from None
        action = spec_rule.action
        name, params = (action, {}) if isinstance(action, str) else (action.component, dict(action.params))
        if not name:
            raise ConfigError(f"{where}: rule '{spec_rule.name}': empty action")
        rules.append(Rule(spec_rule.name, spec_rule.when, name, node, compile_condition(node), params))
    return RuleSet(tuple(rules), spec.default)


def load_rules(path: str | Path | None = None, segments: SegmentsConfig | None = None) -> RuleSet:
    """Read and compile ``path`` (default ``configs/rules.yaml``). Stage and segment values are
    checked against ``segments`` (default ``configs/segments.yaml``)."""
    path = Path(path) if path is not None else default_config_path("rules.yaml")
    return build_rules(load_config(RulesFile, path), str(path), segments)
