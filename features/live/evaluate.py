"""The online evaluator: feature specs compiled into one Python function over a profile's events.

The function runs on every request, so the specs are compiled once into the source of a single loop
(the way :func:`collections.namedtuple` and :mod:`dataclasses` build their methods): one pass over
the events, each accumulator guarded by its event types, field filters and window, with local
variables only. The arithmetic is that of the batch evaluator (:mod:`features.batch.evaluate`): event
ages in integer microseconds, sums and means of float columns as integer millionths
(``round(x * 1_000_000)``, half to even like Polars), divisions done last in the same order, so
both give the same floats. Events may come in any order; only those with ``ts < as_of`` count.

All-history accumulators that the profile store folds into :class:`~features.live.profile.CompactedHistory`
(event count, first/last event, last add_to_cart / purchase, purchase count and value) start from
those scalars; other all-history specs see the retained events (``retention_days`` of the store).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from features.contract import EVENT_FIELDS
from features.definitions import FeatureSet, FeatureSpec, Special

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
FIXED_POINT = 1_000_000
Evaluator = Callable[[Sequence[Any], int, Any, Mapping[str, Any]], dict[str, Any]]
# Record layout of features.live.profile.EventRecord (positions are part of the stored format).
RECORD_FIELDS: tuple[str, ...] = ("ts", "event_id", "event", "session_id", "page_type", "value", "duration_s",
                                  "scroll_depth", "device", "source", "product_id", "category")
_KIND = {"count": "count", "sum": "sum", "mean": "mean", "min": "min", "max": "max", "share": "share",
         "distinct_count": "distinct", "days_since_last": "last", "hours_since_last": "last",
         "us_since_last": "last", "days_since_first": "first"}
_ATC_LAST = FeatureSpec("__last_atc", "us_since_last", ("add_to_cart",))
_BUY_LAST = FeatureSpec("__last_buy", "us_since_last", ("purchase",))


@dataclass(frozen=True)
class _Acc:
    """One accumulator: what it folds (kind, column, share value) over which events."""

    kind: str
    events: tuple[str, ...]
    where: tuple[tuple[str, tuple[str, ...]], ...]
    column: str | None
    value: str | None
    window_days: int | None


def _acc(spec: FeatureSpec) -> _Acc:
    kind = _KIND[spec.aggregate]
    return _Acc(kind, spec.events, spec.where, spec.column, spec.value if kind == "share" else None,
                spec.window_days)


def _den(acc: _Acc) -> _Acc:
    return _Acc("count_present", acc.events, acc.where, acc.column, None, acc.window_days)


class _Source:
    """The generated source, with the constants it refers to."""

    def __init__(self) -> None:
        self.consts: dict[str, Any] = {}
        self.accs: dict[_Acc, str] = {}

    def const(self, value: Any) -> str:
        name = f"_K{len(self.consts)}"
        self.consts[name] = value
        return name

    def var(self, acc: _Acc) -> str:
        if acc not in self.accs:
            self.accs[acc] = f"a{len(self.accs)}"
        return self.accs[acc]


def _init(acc: _Acc, var: str) -> str:
    """The initial value, from the compacted scalars when the store keeps this all-history one."""
    seed = None
    if acc.window_days is None and not acc.where:
        seed = {("last", ()): "comp.last_ts", ("first", ()): "comp.first_ts",
                ("last", ("add_to_cart",)): "comp.last_add_to_cart_ts",
                ("last", ("purchase",)): "comp.last_purchase_ts", ("count", ()): "comp.n_events",
                ("count", ("purchase",)): "comp.purchases",
                }.get((acc.kind, acc.events))
        if acc.kind == "sum" and acc.events == ("purchase",) and acc.column == "value":
            seed = "_round(comp.purchase_value * 1000000)"
    if acc.kind == "mean":
        return f"{var} = 0; {var}n = 0"
    if acc.kind == "distinct":
        return f"{var} = set()"
    if acc.kind in ("last", "first", "min", "max"):
        return f"{var} = {seed or 'None'}"
    return f"{var} = {seed or '0'}"


def _update(acc: _Acc, var: str) -> list[str]:
    x = f"f_{acc.column}"
    return {
        "count": [f"{var} += 1"],
        "count_present": [f"{var} += 1"],
        "share": [f"{var} += 1"],
        "sum": [f"{var} += _round({x} * 1000000)"],
        "mean": [f"{var} += _round({x} * 1000000)", f"{var}n += 1"],
        "min": [f"if {var} is None or {x} < {var}: {var} = {x}"],
        "max": [f"if {var} is None or {x} > {var}: {var} = {x}"],
        "distinct": [f"{var}.add({x})"],
        "last": [f"if {var} is None or ts > {var}: {var} = ts"],
        "first": [f"if {var} is None or ts < {var}: {var} = ts"],
    }[acc.kind]


def _guards(src: _Source, acc: _Acc, largest: int | None) -> list[str]:
    out = []
    if acc.window_days is not None and acc.window_days != largest:  # older events were skipped
        out.append(f"ts >= s{acc.window_days}")
    for name, values in acc.where:
        out.append(f"f_{name} == {values[0]!r}" if len(values) == 1
                   else f"f_{name} in {src.const(frozenset(values))}")
    if acc.column is not None and acc.kind != "count":
        out.append(f"f_{acc.column} is not None")
    if acc.kind == "share":
        out.append(f"f_{acc.column} == {acc.value!r}")
    return out


def _block(src: _Source, accs: list[_Acc], indent: str, largest: int | None = None) -> list[str]:
    """Accumulator updates grouped by event types (singleton types in one if/elif chain, the most
    frequent types of the contract first)."""
    groups: dict[tuple[str, ...], list[_Acc]] = {}
    for acc in accs:
        groups.setdefault(acc.events, []).append(acc)
    lines: list[str] = []
    chain = False
    order = {name: i for i, name in enumerate(EVENT_FIELDS["event"].values)}
    def rank(events: tuple[str, ...]) -> tuple[bool, list[int], tuple[str, ...]]:
        return len(events) != 1, [order.get(e, 99) for e in events], events

    for events, members in sorted(groups.items(), key=lambda kv: rank(kv[0])):
        inner = indent
        if len(events) == 1:
            lines.append(f"{indent}{'elif' if chain else 'if'} ev == {events[0]!r}:")
            chain, inner = True, indent + "    "
        elif events:
            lines.append(f"{indent}if ev in {src.const(frozenset(events))}:")
            chain, inner = False, indent + "    "
        else:
            chain = False
        for acc in members:
            guards, body = _guards(src, acc, largest), _update(acc, src.var(acc))
            if guards:
                lines.append(f"{inner}if {' and '.join(guards)}:")
                lines += [f"{inner}    {b}" for b in body]
            else:
                lines += [f"{inner}{b}" for b in body]
    return lines


def _output(spec: FeatureSpec, src: _Source) -> str:
    acc = _acc(spec)
    v = src.var(acc)
    agg = spec.aggregate
    if agg == "count":
        return f"float({v})"
    if agg == "sum":
        return f"{v} / 1000000"
    if agg == "mean":
        return f"({v} / {v}n / 1000000 if {v}n else NAN)"
    if agg in ("min", "max"):
        return f"(float({v}) if {v} is not None else NAN)"
    if agg == "distinct_count":
        return f"float(len({v}))"
    if agg == "share":
        d = src.var(_den(acc))
        return f"({v} / {d} if {d} else NAN)"
    if agg == "us_since_last":
        return f"(as_of - {v} if {v} is not None else None)"
    scale = {"days_since_last": US_PER_DAY, "days_since_first": US_PER_DAY, "hours_since_last": US_PER_HOUR}
    return f"((as_of - {v}) / {scale[agg]} if {v} is not None else NAN)"


NEVER = 2**62  # "no membership change ahead" (epoch µs far beyond any event)


def _boundary(windows: list[int]) -> list[str]:
    """Lines keeping ``until``: the first later ``as_of`` at which this event (counted now) leaves
    its smallest window, ``ts + W days + 1`` (an event counts while ``ts >= as_of - W days``)."""
    lines = []
    for i, w in enumerate(windows):
        lines.append(f"        {'if' if i == 0 else 'elif'} ts + {w * US_PER_DAY} >= as_of:")
        lines.append(f"            b = ts + {w * US_PER_DAY + 1}")
        lines.append("            if b < until:")
        lines.append("                until = b")
    return lines


def generate_source(feature_set: FeatureSet) -> tuple[str, dict[str, Any]]:
    """The Python source of the evaluator of ``feature_set`` and the constants it refers to.

    Two functions: ``parts(events, as_of, comp)`` folds the events once and returns the outputs
    that depend on ``as_of`` only through which events count (counts, sums, shares, ... of each
    window), the raw timestamps of the "time since" outputs, the cart's abandon rate, and
    ``until``: the first later ``as_of`` at which an event enters or leaves a window (so the parts
    hold for every ``as_of`` in ``[as_of, until)``); ``finish(fixed, stamps, rate, as_of, attrs)``
    turns them into the feature dict at ``as_of``. ``evaluate`` is ``finish`` of ``parts``.
    """
    from features.special import CART_WINDOW_DAYS  # Polars with it: imported when first compiled

    src = _Source()
    specs = list(feature_set.specs) + [_ATC_LAST, _BUY_LAST]
    outputs = {s.name: _output(s, src) for s in specs}  # registers accumulators in a stable order
    for acc in list(src.accs):
        if acc.kind == "share":
            src.var(_den(acc))
    accs = list(src.accs)
    def used(group: list[_Acc]) -> set[str]:
        return ({a.column for a in group if a.column} | {n for a in group for n, _ in a.where}) - {"event"}

    history = [a for a in accs if a.window_days is None]
    windowed = [a for a in accs if a.window_days is not None]
    early = used(history)  # read for every event; the others only for events inside a window
    late = used(windowed) - early
    windows = sorted({a.window_days for a in windowed if a.window_days is not None})
    boundaries = sorted(set(windows) | {CART_WINDOW_DAYS})
    lines = ["def parts(events, as_of, comp):", f"    until = {NEVER}"]
    lines += [f"    s{w} = as_of - {w * US_PER_DAY}" for w in windows]
    lines += [f"    {_init(a, src.accs[a])}" for a in accs]
    lines += ["    for rec in events:", "        ts = rec[0]", "        if ts >= as_of:",
              "            if ts < until:", "                until = ts + 1",  # counts from as_of = ts + 1
              "            continue", "        ev = rec[2]"]
    lines += _boundary(boundaries)
    lines += [f"        f_{name} = rec[{RECORD_FIELDS.index(name)}]" for name in sorted(early)]
    lines += _block(src, history, "        ")
    if windows:
        lines += [f"        if ts < s{windows[-1]}:", "            continue"]
        lines += [f"        f_{name} = rec[{RECORD_FIELDS.index(name)}]" for name in sorted(late)]
        lines += _block(src, windowed, "        ", windows[-1])
    timed = {s.name: src.var(_acc(s)) for s in specs if _KIND[s.aggregate] in ("last", "first")}
    stamp_names = list(dict.fromkeys(timed.values()))
    fixed = [e.name for e in feature_set.entries if isinstance(e, FeatureSpec) and e.name not in timed]
    lines.append("    fixed = (" + "".join(f"{outputs[n]}, " for n in fixed) + ")")
    lines.append("    stamps = (" + "".join(f"{v}, " for v in stamp_names) + ")")
    lines.append("    return fixed, stamps, _cart_rate(events, as_of), until")
    last_atc, last_buy = src.var(_acc(_ATC_LAST)), src.var(_acc(_BUY_LAST))
    lines.append("def finish(fixed, stamps, rate, as_of, attrs):")
    if stamp_names:
        lines.append("    " + "".join(f"{v}, " for v in stamp_names) + "= stamps")
    lines.append(f"    cart = _cart(rate, as_of, {last_atc}, {last_buy})")
    lines.append("    crm = _profile(attrs, as_of)")
    lines.append("    return {")
    for entry in feature_set.entries:
        where = "cart" if entry.feature.group == "cart" else "crm"
        if not isinstance(entry, FeatureSpec):
            value = f"{where}[{entry.name!r}]"
        else:
            value = outputs[entry.name] if entry.name in timed else f"fixed[{fixed.index(entry.name)}]"
        lines.append(f"        {entry.name!r}: {value},")
    lines.append("    }")
    lines.append("def evaluate(events, as_of, comp, attrs):")
    lines.append("    fixed, stamps, rate, _ = parts(events, as_of, comp)")
    lines.append("    return finish(fixed, stamps, rate, as_of, attrs)")
    return "\n".join(lines) + "\n", src.consts


@dataclass(frozen=True)
class Compiled:
    """The compiled functions of one feature set (see :func:`generate_source`)."""

    evaluate: Evaluator
    parts: Callable[[Sequence[Any], int, Any], tuple[tuple, tuple, float, int]]
    finish: Callable[[tuple, tuple, float, int, Mapping[str, Any]], dict[str, Any]]


def _compile(feature_set: FeatureSet) -> Compiled:
    from features.special import NAN, online_cart_hours, online_cart_rate, profile_attributes

    code, consts = generate_source(feature_set)
    namespace: dict[str, Any] = {"_round": round, "NAN": NAN, "_cart": online_cart_hours,
                                 "_cart_rate": online_cart_rate, "_profile": profile_attributes, **consts}
    exec(compile(code, f"<online evaluator of {len(feature_set.entries)} features>", "exec"), namespace)
    return Compiled(namespace["evaluate"], namespace["parts"], namespace["finish"])


def compiled_for(feature_set: FeatureSet) -> Compiled:
    """The compiled functions of ``feature_set`` (compiled once, kept on the set object)."""
    found: Compiled | None = feature_set.__dict__.get("_online_compiled")
    if found is None:
        found = _compile(feature_set)
        feature_set.__dict__["_online_compiled"] = found  # a cache, not state: frozen dataclass stays equal
    return found


def evaluator_for(feature_set: FeatureSet) -> Evaluator:
    """The evaluator ``(events, as_of_us, compacted, attributes) -> {feature: value}`` of
    ``feature_set`` (compiled once, kept on the set object)."""
    return compiled_for(feature_set).evaluate


__all__ = ["Compiled", "Special", "compiled_for", "evaluator_for", "generate_source"]
