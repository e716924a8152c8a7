"""Content components: Jinja2 templates checked at load, rendered in a sandbox at request time.

``configs/content.yaml`` declares each component (a kind, its parameters with defaults, how many
suggested products it shows, and a template). :func:`load_components` compiles every template in an
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (HTML autoescaping, ``StrictUndefined``, no
globals) and walks its syntax tree, so that everything a template can do is known before the first
request:

* every variable is a known one (:func:`template_variables`), a loop variable, or ``loop``;
* attributes are read only from ``context`` (the request context fields), a product (its fields)
  and ``loop``; no name or attribute starts with ``_``;
* no calls, no ``{% set %}``, no imports, includes, macros or blocks; filters and tests come from
  a short allow-list.

A problem is a :class:`ConfigError` naming the component and the template line. The sandbox stays as
a second wall. :meth:`ComponentLibrary.render` never raises: a failure (a ``None`` feature in a sum,
say) returns the component's ``fallback`` HTML and is counted in ``ComponentLibrary.failures``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import Field

from features.registry import FEATURES, SEGMENT_FEATURES
from propensity.config import StrictModel, default_config_path, load_config
from propensity.errors import ConfigError

CONTEXT_FIELDS: tuple[str, ...] = ("device", "page_type", "source")
PRODUCT_FIELDS: tuple[str, ...] = ("product_id", "name", "category", "price", "image_url", "score")
LOOP_FIELDS: tuple[str, ...] = ("index", "index0", "first", "last", "length", "revindex", "revindex0")
ALLOWED_FILTERS: frozenset[str] = frozenset({
    "abs", "capitalize", "default", "d", "e", "escape", "first", "float", "int", "join", "last", "length",
    "lower", "replace", "round", "title", "trim", "truncate", "upper", "wordcount"})
ALLOWED_TESTS: frozenset[str] = frozenset({"none", "number", "string", "even", "odd", "eq", "ne", "lt",
                                           "le", "gt", "ge", "in"})
_FORBIDDEN_NODES = (nodes.Call, nodes.Assign, nodes.AssignBlock, nodes.Macro, nodes.CallBlock,
                    nodes.Import, nodes.FromImport, nodes.Include, nodes.Extends, nodes.Block,
                    nodes.FilterBlock, nodes.With, nodes.Scope, nodes.ScopedEvalContextModifier)
ParamValue = str | int | float | bool


def template_variables() -> dict[str, str]:
    """Variable name -> meaning, for every variable a template may read (besides its parameters)."""
    out = {f.name: f"feature: {f.meaning}" for f in FEATURES + SEGMENT_FEATURES}
    out.update({
        "user_id": "the user's id (empty for an anonymous visitor)",
        "probability": "predicted conversion probability (0..1)",
        "context": f"request context; fields {', '.join(CONTEXT_FIELDS)}",
        "products": f"suggested products, best first; fields {', '.join(PRODUCT_FIELDS)}",
    })
    return out


class ComponentSpec(StrictModel):
    kind: Literal["banner", "carousel", "sidebar", "email"]
    params: dict[str, ParamValue] = Field(default_factory=dict)  # names and defaults a rule may override
    products: int = Field(0, ge=0, le=50)  # suggested products the component shows
    template: str
    fallback: str = ""  # HTML served when rendering fails at request time


class ContentFile(StrictModel):
    components: dict[str, ComponentSpec]


@dataclass(frozen=True)
class Component:
    name: str
    spec: ComponentSpec
    template: jinja2.Template


def sandbox() -> ImmutableSandboxedEnvironment:
    """The rendering environment: sandboxed, autoescaped, strict, with no globals."""
    env = ImmutableSandboxedEnvironment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals.clear()
    env.filters = {name: env.filters[name] for name in ALLOWED_FILTERS}
    env.tests = {name: env.tests[name] for name in ALLOWED_TESTS}
    return env


class _Checker:
    """Walks one template's syntax tree; :meth:`check` raises ConfigError on the first problem."""

    def __init__(self, where: str, known: set[str]) -> None:
        self.where = where
        self.known = known

    def fail(self, node: nodes.Node, message: str) -> None:
        raise ConfigError(f"{self.where}, line {node.lineno} of its template: {message}")

    def check(self, node: nodes.Node, scope: Mapping[str, str]) -> None:
        """``scope``: loop variable -> what it holds ("product" or "value")."""
        if isinstance(node, _FORBIDDEN_NODES):
            self.fail(node, f"'{type(node).__name__}' is not allowed in a component (no calls, set, "
                            f"macros, blocks, imports or includes)")
        if isinstance(node, nodes.For):
            self.check(node.iter, scope)
            inner = dict(scope)
            over_products = isinstance(node.iter, nodes.Name) and node.iter.name == "products"
            holds = "product" if over_products else "value"
            target = node.target
            targets = [target] if isinstance(target, nodes.Name) else target.find_all(nodes.Name)
            for target in targets:
                inner[target.name] = holds
            inner["loop"] = "loop"
            for child in (*node.body, *node.else_, *([node.test] if node.test else [])):
                self.check(child, inner)
            return
        if isinstance(node, nodes.Name) and node.ctx == "load":
            self.name(node, scope)
        elif isinstance(node, nodes.Getattr):
            self.attribute(node, node.node, node.attr, scope)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                and isinstance(node.arg.value, str):
            self.attribute(node, node.node, node.arg.value, scope)
        elif isinstance(node, nodes.Getitem) and not (isinstance(node.arg, nodes.Const)
                                                      and isinstance(node.arg.value, int)):
            self.fail(node, "subscripts must be constants (products[0], context['device'])")
        elif isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
            self.fail(node, f"filter '{node.name}' is not allowed "
                            f"(allowed: {', '.join(sorted(ALLOWED_FILTERS))})")
        elif isinstance(node, nodes.Test) and node.name not in ALLOWED_TESTS:
            self.fail(node, f"test '{node.name}' is not allowed "
                            f"(allowed: {', '.join(sorted(ALLOWED_TESTS))})")
        for child in node.iter_child_nodes():
            self.check(child, scope)

    def name(self, node: nodes.Name, scope: Mapping[str, str]) -> None:
        if node.name.startswith("_") or node.name == "self":
            self.fail(node, f"'{node.name}' is not available in a component")
        if node.name not in self.known and node.name not in scope:
            self.fail(node, f"unknown variable '{node.name}'")

    def attribute(self, node: nodes.Node, base: nodes.Node, attr: str, scope: Mapping[str, str]) -> None:
        if attr.startswith("_"):
            self.fail(node, f"attribute '{attr}' is not available (names starting with '_' are private)")
        holds = self._holds(base, scope)
        allowed = {"context": CONTEXT_FIELDS, "product": PRODUCT_FIELDS, "loop": LOOP_FIELDS}.get(holds)
        if allowed is None:
            self.fail(node, f"'.{attr}': attributes can be read only from context, a product or loop")
        elif attr not in allowed:
            self.fail(node, f"unknown field '{attr}' of {holds} (known: {', '.join(allowed)})")

    @staticmethod
    def _holds(base: nodes.Node, scope: Mapping[str, str]) -> str:
        if isinstance(base, nodes.Name):
            return "context" if base.name == "context" else scope.get(base.name, "value")
        if isinstance(base, nodes.Getitem) and isinstance(base.node, nodes.Name) \
                and base.node.name == "products":
            return "product"
        return "value"


def compile_component(name: str, spec: ComponentSpec, env: jinja2.Environment, where: str) -> Component:
    """Parse and check one component's template; :class:`ConfigError` names it and the line."""
    label = f"{where}: component '{name}'"
    clash = set(spec.params) & set(template_variables())
    if clash:
        raise ConfigError(f"{label}: parameter '{sorted(clash)[0]}' shadows a template variable")
    try:
        tree = env.parse(spec.template)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{label}, line {exc.lineno} of its template: {exc.message}") from None
    _Checker(label, set(template_variables()) | set(spec.params)).check(tree, {})
    return Component(name, spec, env.from_string(spec.template))


@dataclass
class ComponentLibrary:
    """The compiled components; :meth:`render` is safe to call on any request."""

    components: dict[str, Component]
    failures: Counter[str] = field(default_factory=Counter)  # component -> failed renders

    def __contains__(self, name: str) -> bool:
        return name in self.components

    def render(self, name: str, variables: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> str:
        """HTML of component ``name`` for ``variables`` (see :func:`render_variables`), with rule
        ``params`` over the component's defaults; the fallback HTML (counted) when rendering fails."""
        component = self.components[name]
        try:
            return component.template.render({**variables, **component.spec.params, **(params or {})})
        except Exception:  # noqa: BLE001 - any template failure must degrade, never fail the request
            self.failures[name] += 1
            return component.spec.fallback

    def check_actions(self, actions: Iterable[tuple[str, str, Mapping[str, Any]]], where: str) -> None:
        """Each (rule, component, params) names a component and only parameters it declares, of the
        declared type; :class:`ConfigError` names the rule."""
        for rule, name, params in actions:
            if name not in self.components:
                raise ConfigError(f"{where}: rule '{rule}': unknown component '{name}' "
                                  f"(known: {', '.join(sorted(self.components))})")
            declared = self.components[name].spec.params
            for key, value in params.items():
                if key not in declared:
                    raise ConfigError(f"{where}: rule '{rule}': component '{name}' has no parameter "
                                      f"'{key}' (declared: {', '.join(sorted(declared)) or 'none'})")
                if type(value) is not type(declared[key]) and not (
                        isinstance(value, int | float) and isinstance(declared[key], float)):
                    raise ConfigError(f"{where}: rule '{rule}': parameter '{key}' of '{name}' must be "
                                      f"{type(declared[key]).__name__}, not {value!r}")


def build_library(spec: ContentFile, where: str = "content") -> ComponentLibrary:
    """Compile every component of ``spec`` (see module docstring for the checks)."""
    env = sandbox()
    return ComponentLibrary({name: compile_component(name, c, env, where)
                             for name, c in spec.components.items()})


def load_components(path: str | Path | None = None) -> ComponentLibrary:
    """Read and compile ``path`` (default ``configs/content.yaml``)."""
    path = Path(path) if path is not None else default_config_path("content.yaml")
    return build_library(load_config(ContentFile, path), str(path))


def render_variables(features: Mapping[str, Any], probability: float | None, context: Mapping[str, Any],
                     products: Iterable[Mapping[str, Any]], user_id: str = "") -> dict[str, Any]:
    """Every template variable: features (missing ones None), probability, context (missing fields
    None), products (fields of :data:`PRODUCT_FIELDS`, missing ones None), user_id."""
    out: dict[str, Any] = {f.name: features.get(f.name) for f in FEATURES + SEGMENT_FEATURES}
    out["user_id"] = user_id
    out["probability"] = probability
    out["context"] = {k: context.get(k) for k in CONTEXT_FIELDS}
    out["products"] = [{k: p.get(k) for k in PRODUCT_FIELDS} for p in products]
    return out


def check_rules(rules: Any, where: str, path: str | Path | None = None) -> ComponentLibrary | None:
    """Load the components (``path``, default ``configs/content.yaml``; None when that default is
    absent) and check that every action of ``rules`` (a :class:`serving.rules.RuleSet`) names one of
    them with parameters it declares."""
    if path is None and not default_config_path("content.yaml").is_file():
        return None
    library = load_components(path)
    actions = [(r.name, r.action, r.params) for r in rules.rules] + [("default", rules.default, {})]
    library.check_actions(actions, where)
    return library
