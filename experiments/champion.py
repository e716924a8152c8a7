"""The champion/challenger decision from a live A/B: non-inferiority on conversion, then promotion.

The exposure log (``ab analyze``'s format: user_id, variant ``champion``/``challenger``,
first_exposure, optionally experiment) and the events give each exposed user's conversion (a
purchase within the configured window). The sequential read-out of
:mod:`experiments.analysis` gives the always-valid confidence sequence of the difference
challenger - champion; :func:`experiments.stats.noninferiority.non_inferiority` judges it against
the margin. The challenger is promoted (:func:`fairness.promote.promote`) only when the split is
sound (no sample ratio mismatch), its fairness gate did not fail and it is non-inferior; otherwise
the champion stays and the decision says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from experiments.aggregate import read_table
from experiments.analysis import analyze_experiment
from experiments.config import ExperimentsConfig, load_experiments_config
from experiments.pipeline import read_exposures, units_from_exposures
from experiments.stats.noninferiority import INFERIOR, NON_INFERIOR, NonInferiority, non_inferiority
from propensity.errors import DataError

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class ChallengeDecision:
    """Whether the challenger was promoted, why, and the numbers the decision rests on."""

    promoted: bool
    reason: str
    name: str
    champion_version: str
    challenger_version: str
    fairness_gate: str | None
    test: NonInferiority
    users: dict[str, int]
    conversion: dict[str, float]
    srm_p_value: float

    def to_json(self) -> dict[str, Any]:
        """The ``propensity promote --from-experiment --json`` document."""
        return {"promoted": self.promoted, "reason": self.reason, "model": self.name,
                "champion_version": self.champion_version, "challenger_version": self.challenger_version,
                "fairness_gate": self.fairness_gate, "non_inferiority": asdict(self.test),
                "users": self.users, "conversion": self.conversion, "srm_p_value": self.srm_p_value}


def conversion_units(exposures: pl.DataFrame, events: pl.DataFrame, settings: ExperimentsConfig,
                     experiment: str | None = None) -> pl.DataFrame:
    """One row per exposed user with ``converted``; the variants must be champion and challenger."""
    if experiment is None and "experiment" in exposures.columns:
        names = exposures.get_column("experiment").unique().drop_nulls().to_list()
        if len(names) > 1:
            listed = ", ".join(map(str, sorted(names)))
            raise DataError(f"the exposure log holds several experiments ({listed}): pass --experiment NAME")
    units = units_from_exposures(exposures, events, settings, experiment=experiment)
    variants = set(units.get_column("variant").unique().to_list())
    if variants != {CHAMPION, CHALLENGER}:
        raise DataError(f"the exposure log's variants are {', '.join(sorted(variants))}; a model experiment "
                        f"has exactly '{CHAMPION}' and '{CHALLENGER}'")
    return units


def read_challenge(units: pl.DataFrame, margin: float, settings: ExperimentsConfig,
                   challenger_share: float | None = None) -> tuple[NonInferiority, dict[str, Any]]:
    """The non-inferiority verdict on conversion (sequential confidence sequence of challenger -
    champion) and the facts behind it: users and conversion per variant, the SRM p-value."""
    settings = settings.model_copy(deep=True)
    settings.sequential.enabled = True
    split = None if challenger_share is None else {CHAMPION: 1 - challenger_share,
                                                   CHALLENGER: challenger_share}
    result = analyze_experiment(units, "variant", CHAMPION, ["converted"], timestamp_col="first_exposure",
                                expected_split=split, settings=settings)
    metric = result.metrics["converted"]
    seq = metric.sequential.get(CHALLENGER)
    difference = metric.comparisons[0].difference
    if seq is None:
        raise DataError("too few exposed users per variant for a sequential read-out")
    test = non_inferiority(difference, seq.ci_low, seq.ci_high, margin)
    facts = {"users": {v.name: v.n for v in metric.variants},
             "conversion": {v.name: v.mean for v in metric.variants},
             "srm_p_value": result.srm.p_value, "srm": result.srm.mismatch}
    return test, facts


def _pp(test: NonInferiority) -> str:
    """The difference and its interval in percentage points."""
    return (f"conversion difference {test.difference * 100:+.2f} pp, interval "
            f"{test.ci_low * 100:+.2f}..{test.ci_high * 100:+.2f} pp")


def _reason(test: NonInferiority, gate: str | None, srm: bool, srm_p: float) -> str | None:
    """Why the champion stays (None: nothing stands in the challenger's way)."""
    margin = f"{test.margin * 100:.2f} pp"
    if srm:
        return (f"sample ratio mismatch (p = {srm_p:.2g}): the split is broken, the comparison is not "
                f"trusted; fix the assignment and rerun the test")
    if gate not in ("pass", "insufficient_evidence"):
        why = "was never audited" if gate is None else "failed its fairness gate"
        return f"refused: the challenger {why}"
    if test.verdict == INFERIOR:
        return f"the challenger is worse than the champion beyond the margin: {_pp(test)}, below -{margin}"
    if test.verdict != NON_INFERIOR:
        return (f"not shown non-inferior yet: {_pp(test)}; the challenger may be worse by up to "
                f"{-test.ci_low * 100:.2f} pp, more than the margin {margin}; keep the test running")
    return None


def decide_challenge(exposures: str | Path | pl.DataFrame, events: str | Path | pl.DataFrame, *,
                     name: str = "propensity-conversion", margin: float = 0.005,
                     experiment: str | None = None, challenger_share: float | None = None,
                     tracking_uri: str | None = None,
                     champion_alias: str = CHAMPION, challenger_alias: str = CHALLENGER,
                     config_path: str | Path | None = None,
                     serving_config: str | Path | None = None) -> ChallengeDecision:
    """Read the A/B and promote the ``challenger_alias`` version of ``name`` to ``champion_alias``
    when it is non-inferior within ``margin`` (conversion, absolute: 0.005 = 0.5 pp), its gate did not
    fail and the split matches ``challenger_share`` (when given). Otherwise the champion stays and
    ``reason`` says why. On promotion an existing ``serving_config`` file gets the split switched off
    (both arms would serve the same version). Raises :class:`DataError` for an unusable log,
    :class:`ConfigError` for a missing model version or alias.
    """
    from fairness.promote import GATE_TAG, promote
    from training.registry import resolve_version, use_store, version_tags

    settings = load_experiments_config(config_path)
    exp_frame = exposures if isinstance(exposures, pl.DataFrame) else read_exposures(exposures)
    ev_frame = events if isinstance(events, pl.DataFrame) else read_table(events)
    units = conversion_units(exp_frame, ev_frame, settings, experiment)
    test, facts = read_challenge(units, margin, settings, challenger_share)
    use_store(tracking_uri)
    champion = resolve_version(f"models:/{name}@{champion_alias}")
    challenger = resolve_version(f"models:/{name}@{challenger_alias}")
    assert champion is not None and challenger is not None
    gate = version_tags(name, challenger[1]).get(GATE_TAG)
    reason = _reason(test, gate, facts["srm"], facts["srm_p_value"])
    if reason is None:
        promote(name, challenger[1], alias=champion_alias, tracking_uri=tracking_uri)
        reason = (f"non-inferior: {_pp(test)}, above -{margin * 100:.2f} pp; version {challenger[1]} "
                  f"is now '{champion_alias}'")
        _split_off(serving_config, name, champion_alias, challenger_alias)
    return ChallengeDecision(reason.startswith("non-inferior"), reason, name, champion[1], challenger[1],
                             gate, test, facts["users"], facts["conversion"], facts["srm_p_value"])


def _split_off(path: str | Path | None, name: str, champion_alias: str, challenger_alias: str) -> None:
    if path is None or not Path(path).is_file():
        return
    from serving.config import write_split_config

    write_split_config(path, f"models:/{name}@{champion_alias}", f"models:/{name}@{challenger_alias}",
                       enabled=False)
