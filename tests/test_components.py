"""Content components: load-time checks, the sandbox, autoescaping, fallbacks, rule actions."""

from __future__ import annotations

import pytest

from content.components import (
    ComponentSpec,
    ContentFile,
    build_library,
    check_rules,
    load_components,
    render_variables,
)
from propensity.errors import ConfigError
from serving.rules import RulesFile, build_rules, load_rules

PRODUCT = {"product_id": "p0007", "name": "Trail <b>boot</b>", "category": "shoes", "price": 89.5,
           "image_url": "/img/p0007.jpg", "score": 0.4}


def library(template: str, **spec: object):
    component = ComponentSpec(kind="banner", template=template, **spec)
    return build_library(ContentFile(components={"c": component}), "content.yaml")


def variables(**features: object) -> dict:
    return render_variables(features, 0.42, {"device": "mobile"}, [PRODUCT], "u1")


def test_default_components_load_and_cover_every_rule_action() -> None:
    lib = check_rules(load_rules(), "rules.yaml")
    assert lib is not None
    kinds = {c.spec.kind for c in lib.components.values()}
    assert kinds == {"banner", "carousel", "sidebar", "email"}


def test_rule_parameters_reach_the_template_and_override_defaults() -> None:
    lib = library("<p>{{ discount_percentage }}% off {{ products[0].name }}</p>",
                  params={"discount_percentage": 5})
    assert lib.render("c", variables(), {"discount_percentage": 10}) == \
        "<p>10% off Trail &lt;b&gt;boot&lt;/b&gt;</p>"
    assert lib.render("c", variables()).startswith("<p>5% off")


def test_rule_action_with_params_keeps_decision_a_string() -> None:
    spec = RulesFile.model_validate({"default": "educational_content", "rules": [
        {"name": "cart", "when": "hours_since_cart_abandoned > 24",
         "action": {"component": "cart_reminder_discount", "params": {"discount_percentage": 20}}}]})
    rules = build_rules(spec)
    assert rules.decide({"hours_since_cart_abandoned": 30.0}) == "cart_reminder_discount"
    assert rules.rules[0].params == {"discount_percentage": 20}


@pytest.mark.parametrize(("params", "message"), [
    ({"discount": 10}, "has no parameter 'discount'"),
    ({"discount_percentage": "ten"}, "must be int"),
])
def test_rule_params_are_checked_against_the_component(params: dict, message: str) -> None:
    lib = load_components()
    with pytest.raises(ConfigError, match=message):
        lib.check_actions([("cart", "cart_reminder_discount", params)], "rules.yaml")
    with pytest.raises(ConfigError, match="rule 'x': unknown component 'nope'"):
        lib.check_actions([("x", "nope", {})], "rules.yaml")


@pytest.mark.parametrize(("template", "line", "message"), [
    ("<p>\n{{ discount_percentage }}</p>", 2, "unknown variable 'discount_percentage'"),
    ("<p>\n\n{{ probabilty }}</p>", 3, "unknown variable 'probabilty'"),
    ("{% for p in products %}\n{{ p.nmae }}{% endfor %}", 2, "unknown field 'nmae' of product"),
    ("{{ context.browser }}", 1, "unknown field 'browser' of context"),
    ("<p>\n{% if x %}</p>", 2, "Unexpected end of template"),
    ("{{ products|map(attribute='name')|join }}", 1, "filter 'map' is not allowed"),
])
def test_template_errors_name_component_and_line(template: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        library(template)
    assert f"content.yaml: component 'c', line {line} of its template" in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize("escape", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ products|attr('__class__') }}",
    "{{ context['__class__'] }}",
    "{{ probability.__class__.__base__ }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    "{% set x = ''.__class__ %}{{ x }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% macro m() %}{% endmacro %}{{ m() }}",
    "{{ products[0].name.upper() }}",
    "{{ '%s' % products.__len__ }}",
])
def test_sandbox_escapes_are_load_time_errors(escape: str) -> None:
    with pytest.raises(ConfigError, match="component 'c', line 1 of its template"):
        library(escape)


def test_html_in_values_is_escaped() -> None:
    lib = library("<p>{{ context.device }} {{ products[0].name }}</p>")
    html = lib.render("c", render_variables({}, None, {"device": "<script>x</script>"}, [PRODUCT]))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_render_failure_falls_back_and_is_counted() -> None:
    # purchases_total is None for an unknown user: None + 1 fails at request time.
    lib = library("<p>{{ purchases_total + 1 }}</p>", fallback="<p>hello</p>")
    assert lib.render("c", variables()) == "<p>hello</p>"
    assert lib.failures["c"] == 1
    assert lib.render("c", variables(purchases_total=2)) == "<p>3</p>"
    assert lib.failures["c"] == 1


def test_loops_and_guards_on_missing_values() -> None:
    lib = library("{% for p in products %}{{ loop.index }}:{{ p.product_id }}{% else %}none{% endfor %}"
                  "{% if journey_stage is not none %} {{ journey_stage }}{% endif %}")
    assert lib.render("c", variables()) == "1:p0007"
    assert lib.render("c", render_variables({"journey_stage": "decision"}, None, {}, [])) == "none decision"


def test_a_parameter_may_not_shadow_a_variable() -> None:
    with pytest.raises(ConfigError, match="parameter 'probability' shadows"):
        library("{{ probability }}", params={"probability": 1})


def test_the_service_refuses_rules_whose_action_names_no_component(tmp_path) -> None:
    from serving.config import ServingConfig
    from serving.loader import _rules

    rules = tmp_path / "rules.yaml"
    rules.write_text("default: educational_content\nrules:\n  - name: cart\n    when: add_to_cart_7d >= 1\n"
                     "    action: {component: cart_reminder_discount, params: {discount_pct: 10}}\n")
    with pytest.raises(ConfigError, match="rule 'cart': component 'cart_reminder_discount' has no parameter"):
        _rules(ServingConfig(rules=str(rules)))
    rules.write_text("default: educational_content\nrules: []\n")
    assert _rules(ServingConfig(rules=str(rules)))({}) == "educational_content"
