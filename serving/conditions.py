"""The condition language of the content decision rules (:mod:`serving.rules`).

Conditions are parsed once, at load, by a small tokenizer and recursive-descent parser (no
``eval``), checked against the known fields, and compiled to closures. Grammar::

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" condition ")" | comparison
    comparison := FIELD op value | FIELD ["not"] "in" "[" value ("," value)* "]"
    op         := "==" | "!=" | "<" | "<=" | ">" | ">="
    value      := number | 'string' | "string" | true | false | bare_word (a string)

Evaluation: a comparison whose field is missing from the context (absent, None or NaN) is false;
``not`` then makes it true, as in Python.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from features.registry import FEATURES, SEGMENT_FEATURES

CONTEXT_FIELDS: tuple[str, ...] = ("device", "page_type", "source")
ALIASES: dict[str, str] = {"stage": "journey_stage"}
Evaluator = Callable[[Mapping[str, Any]], bool]


def known_fields() -> dict[str, str]:
    """Field name -> kind ("numeric" or "categorical") that conditions may use."""
    fields = {f.name: f.kind for f in FEATURES + SEGMENT_FEATURES}
    fields["probability"] = "numeric"
    fields.update({name: "categorical" for name in CONTEXT_FIELDS})
    return fields


class ConditionError(ValueError):
    """A malformed condition; ``position`` is the 0-based character offset of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "str", "word", "op", "(", ")", "[", "]", ",", "end"
    text: str
    value: Any
    pos: int


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],])
""", re.VERBOSE)


def tokenize(text: str) -> list[Token]:
    """Tokens of a condition, ending with an ``end`` token."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ConditionError(f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "num":
            tokens.append(Token("num", raw, float(raw), pos))
        elif kind == "str":
            tokens.append(Token("str", raw, raw[1:-1], pos))
        elif kind == "punct":
            tokens.append(Token(raw, raw, raw, pos))
        elif kind != "space":
            tokens.append(Token(kind, raw, raw, pos))
        pos = match.end()
    tokens.append(Token("end", "end of condition", None, len(text)))
    return tokens


_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class InList:
    field: str
    values: tuple[Any, ...]
    negated: bool


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" / "or"
    operands: tuple[Node, ...]


Node = Compare | InList | Not | BoolOp


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, str], allowed: Mapping[str, set[str]]) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.fields = fields
        self.allowed = allowed

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text == word

    def expect(self, kind: str, what: str) -> Token:
        token = self.take()
        if token.kind != kind:
            raise ConditionError(f"expected {what}, found '{token.text}'", token.pos)
        return token

    def parse(self) -> Node:
        node = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            raise ConditionError(f"unexpected '{token.text}' (expected 'and', 'or' or the end)", token.pos)
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.is_word("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.not_expr()]
        while self.is_word("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def not_expr(self) -> Node:
        if self.is_word("not"):
            self.take()
            return Not(self.not_expr())
        if self.peek().kind == "(":
            self.take()
            node = self.or_expr()
            self.expect(")", "')'")
            return node
        return self.comparison()

    def field(self) -> tuple[str, Token]:
        token = self.take()
        if token.kind != "word" or token.text in _KEYWORDS:
            raise ConditionError(f"expected a field name, found '{token.text}'", token.pos)
        name = ALIASES.get(token.text, token.text)
        if name not in self.fields:
            close = difflib.get_close_matches(name, list(self.fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConditionError(f"unknown field '{token.text}'{hint}", token.pos)
        return name, token

    def comparison(self) -> Node:
        name, _ = self.field()
        token = self.take()
        if token.kind == "op":
            return Compare(name, token.text, self.value(name, token.text))
        negated = False
        if token.kind == "word" and token.text == "not":
            negated = True
            token = self.take()
        if token.kind == "word" and token.text == "in":
            self.expect("[", "'['")
            values = [self.value(name, "in")]
            while self.peek().kind == ",":
                self.take()
                values.append(self.value(name, "in"))
            self.expect("]", "']' or ','")
            return InList(name, tuple(values), negated)
        raise ConditionError(f"expected a comparison (==, !=, <, <=, >, >=, in) after '{name}', "
                             f"found '{token.text}'", token.pos)

    def value(self, field_name: str, op: str) -> Any:
        token = self.take()
        numeric = self.fields[field_name] == "numeric"
        not_text = f"'{field_name}' is categorical: compare it with a string, not {token.text}"
        if token.kind == "num":
            if numeric:
                return token.value
            if token.value.is_integer():  # e.g. cluster == 2
                return self.check_allowed(field_name, str(int(token.value)), token)
            raise ConditionError(not_text, token.pos)
        if token.kind == "word" and token.text in ("true", "false"):
            if not numeric:
                raise ConditionError(not_text, token.pos)
            return 1.0 if token.text == "true" else 0.0
        if token.kind in ("str", "word") and token.text not in _KEYWORDS:
            if numeric:
                raise ConditionError(f"'{field_name}' is numeric: compare it with a number, "
                                     f"not '{token.value}'", token.pos)
            if op in ("<", "<=", ">", ">="):
                raise ConditionError(f"'{op}' needs a numeric field, '{field_name}' is categorical",
                                     token.pos)
            return self.check_allowed(field_name, str(token.value), token)
        raise ConditionError(f"expected a value, found '{token.text}'", token.pos)

    def check_allowed(self, field_name: str, value: str, token: Token) -> str:
        allowed = self.allowed.get(field_name)
        if allowed is not None and value not in allowed:
            raise ConditionError(f"'{value}' is not a {field_name} (known: {', '.join(sorted(allowed))})",
                                 token.pos)
        return value


def parse_condition(text: str, fields: Mapping[str, str] | None = None,
                    allowed_values: Mapping[str, set[str]] | None = None) -> Node:
    """The AST of a condition; :class:`ConditionError` (with a position) when it is malformed or
    uses an unknown field or value."""
    if not text.strip():
        raise ConditionError("empty condition", 0)
    return _Parser(text, fields if fields is not None else known_fields(), allowed_values or {}).parse()


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def compile_condition(node: Node) -> Evaluator:
    """A function context -> bool evaluating ``node`` (missing values make comparisons false)."""
    if isinstance(node, BoolOp):
        parts = tuple(compile_condition(n) for n in node.operands)
        # plain loops, not all()/any() over a generator: one generator less per rule per request
        if node.op == "and":
            def all_of(ctx: Mapping[str, Any]) -> bool:
                for part in parts:
                    if not part(ctx):
                        return False
                return True
            return all_of

        def any_of(ctx: Mapping[str, Any]) -> bool:
            for part in parts:
                if part(ctx):
                    return True
            return False
        return any_of
    if isinstance(node, Not):
        inner = compile_condition(node.operand)
        return lambda ctx: not inner(ctx)
    if isinstance(node, InList):
        field_name, negated = node.field, node.negated
        values = frozenset(node.values)
        numeric = any(isinstance(v, float) for v in values)

        def in_list(ctx: Mapping[str, Any]) -> bool:
            value = ctx.get(field_name)
            key = _as_number(value) if numeric else (None if _missing(value) else str(value))
            return key is not None and (key in values) != negated
        return in_list
    field_name, op, literal = node.field, _OPS[node.op], node.value
    if isinstance(literal, float):
        def compare_number(ctx: Mapping[str, Any]) -> bool:
            value = _as_number(ctx.get(field_name))
            return value is not None and op(value, literal)
        return compare_number

    def compare_text(ctx: Mapping[str, Any]) -> bool:
        value = ctx.get(field_name)
        return not _missing(value) and op(str(value), literal)
    return compare_text


def _as_number(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
