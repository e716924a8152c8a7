"""Promotion: the ``champion`` alias moves only to a model version whose fairness audit passed.

The audit records its verdict as the model-version tag ``fairness_gate`` (pass|fail). ``--force``
promotes anyway and records ``promotion_forced`` (the reason) on the version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.errors import PropensityError
from training.tracking import default_tracking_uri, quiet_mlflow

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


def use_tracking(uri: str | None) -> str:
    """Point MLflow (tracking and registry) at ``uri`` or the default local store; returns the URI."""
    quiet_mlflow()
    uri = uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def resolve_version(model_uri: str) -> tuple[str, str] | None:
    """(name, version) of a ``models:/NAME/VERSION`` or ``models:/NAME@alias`` URI; None for other URIs."""
    match = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w-]+))", model_uri)
    if match is None:
        return None
    name, version, alias = match.groups()
    if version is not None:
        return name, version
    try:
        return name, str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        raise PropensityError(f"{model_uri}: no model version has alias '{alias}'") from None


def promote(name: str, version: str | int, force: bool = False, reason: str | None = None,
            alias: str = "champion", tracking_uri: str | None = None) -> Promotion:
    """Set ``alias`` on ``name``/``version`` when its audit did not fail (tag ``fairness_gate`` = pass
    or insufficient_evidence).

    ``force`` promotes a failed or unaudited version and needs a ``reason``, recorded as the
    version tag ``promotion_forced``. Raises :class:`PropensityError` (one line) on refusal.
    """
    use_tracking(tracking_uri)
    client = MlflowClient()
    version = str(version)
    try:
        mv = client.get_model_version(name, version)
    except MlflowException:
        raise PropensityError(f"model {name!r} has no version {version}") from None
    gate = mv.tags.get(GATE_TAG)
    if gate not in PROMOTABLE and not force:
        why = "was never audited" if gate is None else "failed its fairness audit"
        raise PropensityError(f"refusing to promote {name} version {version}: it {why} "
                              f"(run `propensity audit`, or --force --reason TEXT)")
    if force and gate not in PROMOTABLE:
        if not reason or not reason.strip():
            raise PropensityError("--force needs --reason TEXT (it is recorded on the model version)")
        client.set_model_version_tag(name, version, FORCED_TAG, reason.strip())
    try:
        previous: str | None = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        previous = None
    client.set_registered_model_alias(name, alias, version)
    return Promotion(name, version, alias, force and gate not in PROMOTABLE, gate, previous)
