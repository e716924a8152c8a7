"""Promotion: the ``champion`` alias moves only to a model version whose fairness audit passed.

The audit records its verdict as the model-version tag ``fairness_gate`` (pass|fail). ``--force``
promotes anyway and records ``promotion_forced`` (the reason) on the version.
"""

from __future__ import annotations

from dataclasses import dataclass

from propensity.errors import PropensityError
from training.registry import set_alias, tag_version, use_store, version_tags

GATE_TAG = "fairness_gate"
FORCED_TAG = "promotion_forced"
# insufficient_evidence: the gate's intervals straddle a limit (too few rows to tell); it does not block
PROMOTABLE = ("pass", "insufficient_evidence")


@dataclass
class Promotion:
    """The outcome of a promotion: which version is now ``alias``, whether forced, the audit verdict."""

    name: str
    version: str
    alias: str
    forced: bool
    gate: str | None  # "pass", "fail" or None (never audited)
    previous: str | None  # the version that held the alias before


def promote(name: str, version: str | int, force: bool = False, reason: str | None = None,
            alias: str = "champion", tracking_uri: str | None = None) -> Promotion:
    """Set ``alias`` on ``name``/``version`` when its audit did not fail (tag ``fairness_gate`` = pass
    or insufficient_evidence).

    ``force`` promotes a failed or unaudited version and needs a ``reason``, recorded as the
    version tag ``promotion_forced``. Raises :class:`PropensityError` (one line) on refusal.
    """
    use_store(tracking_uri)
    version = str(version)
    gate = version_tags(name, version).get(GATE_TAG)
    if gate not in PROMOTABLE and not force:
        why = "was never audited" if gate is None else "failed its fairness audit"
        raise PropensityError(f"refusing to promote {name} version {version}: it {why} "
                              f"(run `propensity audit`, or --force --reason TEXT)")
    if force and gate not in PROMOTABLE:
        if not reason or not reason.strip():
            raise PropensityError("--force needs --reason TEXT (it is recorded on the model version)")
        tag_version(name, version, FORCED_TAG, reason.strip())
    previous = set_alias(name, alias, version)
    return Promotion(name, version, alias, force and gate not in PROMOTABLE, gate, previous)
