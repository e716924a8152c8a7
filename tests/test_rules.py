"""Content decision rules: the issue's examples, precedence, missing values and every error path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from propensity.errors import ConfigError
from serving.rules import ConditionError, load_rules, parse_condition

ISSUE_RULES = {
    "default": "educational_content",
    "rules": [
        {"name": "considering", "action": "review_snippet",
         "when": "stage == consideration and product_view_7d >= 3 and add_to_cart_7d == 0"},
        {"name": "abandoned", "action": "cart_reminder_discount", "when": "hours_since_cart_abandoned > 24"},
    ],
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def rules_with(tmp_path: Path, *conditions: str, default: str = "none"):
    data = {"default": default,
            "rules": [{"name": f"r{i}", "when": c, "action": f"a{i}"} for i, c in enumerate(conditions)]}
    return load_rules(write(tmp_path, data))


@pytest.fixture
def issue_rules(tmp_path: Path):
    return load_rules(write(tmp_path, ISSUE_RULES))


def test_considering_users_without_cart_get_the_review_snippet(issue_rules) -> None:
    ctx = {"journey_stage": "consideration", "product_view_7d": 3.0, "add_to_cart_7d": 0.0}
    assert issue_rules.decide(ctx) == "review_snippet"
    assert issue_rules.decide({**ctx, "product_view_7d": 2.0}) == "educational_content"
    assert issue_rules.decide({**ctx, "add_to_cart_7d": 1.0}) == "educational_content"
    assert issue_rules.decide({**ctx, "journey_stage": "decision"}) == "educational_content"


def test_a_cart_abandoned_over_a_day_ago_gets_the_reminder(issue_rules) -> None:
    assert issue_rules.decide({"hours_since_cart_abandoned": 24.5}) == "cart_reminder_discount"
    assert issue_rules.decide({"hours_since_cart_abandoned": 24.0}) == "educational_content"


def test_the_first_matching_rule_wins(issue_rules) -> None:
    ctx = {"journey_stage": "consideration", "product_view_7d": 5, "add_to_cart_7d": 0,
           "hours_since_cart_abandoned": 48}
    assert issue_rules.decide(ctx) == "review_snippet"
    assert issue_rules.match(ctx).name == "considering"


def test_nothing_matching_gives_the_default(issue_rules) -> None:
    assert issue_rules.decide({}) == "educational_content"
    assert issue_rules.match({}) is None


def test_the_shipped_rules_file_loads() -> None:
    rules = load_rules()
    assert rules.default == "educational_content"
    assert {"journey_stage", "hours_since_cart_abandoned", "probability"} <= rules.fields


@pytest.mark.parametrize("condition,ctx,expected", [
    # and binds tighter than or: a or (b and c)
    ("purchases_total > 0 or cart_open == 1 and probability > 0.5", {"purchases_total": 1, "cart_open": 0},
     True),
    ("purchases_total > 0 or cart_open == 1 and probability > 0.5", {"purchases_total": 0, "cart_open": 1,
                                                                     "probability": 0.2}, False),
    # parentheses override it: (a or b) and c
    ("(purchases_total > 0 or cart_open == 1) and probability > 0.5", {"purchases_total": 1,
                                                                       "probability": 0.2}, False),
    # not binds tighter than and: (not a) and b
    ("not cart_open == 1 and probability > 0.5", {"cart_open": 0, "probability": 0.9}, True),
    ("not (cart_open == 1 and probability > 0.5)", {"cart_open": 1, "probability": 0.2}, True),
    ("not not cart_open == 1", {"cart_open": 1}, True),
])
def test_precedence(tmp_path: Path, condition: str, ctx: dict, expected: bool) -> None:
    assert (rules_with(tmp_path, condition).decide(ctx) == "a0") is expected


@pytest.mark.parametrize("condition,ctx,expected", [
    ("segment in [engaged, 'loyal']", {"segment": "loyal"}, True),
    ("segment in [engaged, loyal]", {"segment": "dormant"}, False),
    ("segment not in [engaged, loyal]", {"segment": "dormant"}, True),
    ("device == \"mobile\" and page_type != 'checkout'", {"device": "mobile", "page_type": "product"}, True),
    ("cart_open == true", {"cart_open": 1.0}, True),
    ("cart_open == false", {"cart_open": 1.0}, False),
    ("cluster == 2", {"cluster": "2"}, True),
    ("cluster in [0, noise]", {"cluster": "noise"}, True),
    ("engagement_score >= -1.5e0", {"engagement_score": -1.0}, True),
    ("product_view_7d in [1, 2]", {"product_view_7d": 2.0}, True),
    ("stage == retention", {"journey_stage": "retention"}, True),
])
def test_comparisons(tmp_path: Path, condition: str, ctx: dict, expected: bool) -> None:
    assert (rules_with(tmp_path, condition).decide(ctx) == "a0") is expected


@pytest.mark.parametrize("missing", [None, math.nan, "absent"])
def test_a_missing_value_makes_a_comparison_false_and_its_negation_true(tmp_path: Path, missing) -> None:
    rules = rules_with(tmp_path, "hours_since_cart_abandoned > 24", "not hours_since_cart_abandoned > 24")
    ctx = {} if missing == "absent" else {"hours_since_cart_abandoned": missing}
    assert rules.decide(ctx) == "a1"
    assert rules_with(tmp_path, "segment != loyal").decide({"segment": None}) == "none"


ERRORS = [
    ("product_views_7d >= 3", "unknown field 'product_views_7d' \\(did you mean 'product_view_7d'\\?\\) "
                              "at position 1"),
    ("stage == consideration and", "expected a field name, found 'end of condition' at position 27"),
    ("(cart_open == 1", "expected '\\)', found 'end of condition' at position 16"),
    ("cart_open == 1)", "unexpected '\\)' .* at position 15"),
    ("cart_open = 1", "unexpected character '=' at position 11"),
    ("cart_open 1", "expected a comparison .* found '1' at position 11"),
    ("cart_open ==", "expected a value, found 'end of condition' at position 13"),
    ("segment in [loyal", "expected '\\]' or ',', found 'end of condition'"),
    ("segment in loyal", "expected '\\[', found 'loyal'"),
    ("segment > loyal", "'>' needs a numeric field"),
    ("product_view_7d == many", "'product_view_7d' is numeric"),
    ("segment == true", "'segment' is categorical"),
    ("segment == 1.5", "'segment' is categorical"),
    ("stage == considration", "'considration' is not a journey_stage"),
    ("segment == vip", "'vip' is not a segment"),
    ("__import__('os')", "unknown field '__import__'"),
    ("   ", "empty condition"),
    ("and == 1", "expected a field name, found 'and' at position 1"),
]


@pytest.mark.parametrize("condition,message", ERRORS)
def test_a_malformed_condition_is_a_config_error_naming_the_rule_and_position(tmp_path: Path, condition: str,
                                                                              message: str) -> None:
    data = {"default": "x", "rules": [{"name": "fine", "when": "cart_open == 1", "action": "y"},
                                      {"name": "broken_rule", "when": condition, "action": "z"}]}
    with pytest.raises(ConfigError, match=f"rule 'broken_rule': {message}"):
        load_rules(write(tmp_path, data))


def test_parse_errors_carry_the_offset() -> None:
    with pytest.raises(ConditionError) as err:
        parse_condition("cart_open == 1 or ~")
    assert err.value.position == 18


@pytest.mark.parametrize("data,message", [
    ({"rules": []}, "invalid value for 'default'"),
    ({"default": "x", "rules": [{"name": "a", "when": "cart_open == 1"}]}, "'rules.0.action'"),
    ({"default": "x", "rules": [{"name": "a", "when": "cart_open == 1", "action": "b", "then": 1}]},
     "unknown key 'rules.0.then'"),
    ({"default": "x", "rules": [{"name": "a", "when": "cart_open == 1", "action": "b"},
                                {"name": "a", "when": "cart_open == 0", "action": "c"}]},
     "rule 'a' is defined twice"),
    ({"default": "x", "rules": [{"name": "a", "when": True, "action": "b"}]}, "'rules.0.when'"),
    ("- just a list", "expected a mapping"),
])
def test_a_malformed_rules_file_is_a_config_error(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_rules(write(tmp_path, data))


def test_a_missing_rules_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_rules(tmp_path / "nope.yaml")


ALPHABET = list("()[],=!<> '\"-.0123456789") + ["and ", "or ", "not ", "in ", "cart_open ", "segment ",
                                                  "loyal ", "true "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), max_size=25).map("".join))
def test_any_text_either_parses_or_is_a_condition_error(text: str) -> None:
    try:
        parse_condition(text)
    except ConditionError as exc:
        assert 0 <= exc.position <= len(text)
