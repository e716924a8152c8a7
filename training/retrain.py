"""The ``retrain`` stage: fresh snapshots → a challenger seeded with the champion → fairness gate →
alias ``challenger`` and the champion/challenger split in the serving config.

"Now" is the latest valid event time of the events given; the snapshots end at the latest cut-off
whose label window is complete (``now - horizon``, floored to midnight UTC); the events are read and
validated once, with the features config's timestamp unit (:func:`fresh_snapshots`). The training
rows can be weighted by recency (``retrain.recency_half_life_days`` of the training config: a row's
weight halves every that many days of its snapshot's age; default equal weights, which with the
refit on the validation snapshot, ``retrain.refit_with_validation``, win back the most of a concept
shift: BENCHMARKS.md, Retraining). The Optuna search tries
the champion's family and parameters first (``study.enqueue_trial``), then each family's defaults,
then its sampler; the champion's pre-transform (the segmenter) is reused, so both models see the same
segments. The challenger is registered by :func:`training.train.train` without an alias; the
audit (:func:`fairness.stage.audit_model`) tags it, and only when its gate does not fail (pass or
insufficient_evidence) does it get the alias ``challenger`` and does the serving config get the
split. A running service reads that config at start-up: restart it to apply the split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fairness.config import FairnessConfig, load_fairness_config
from propensity.paths import work_dir
from propensity.progress import Progress
from training.config import TrainConfig
from training.registry import load_model, resolve_version, set_alias, use_store
from training.train import TrainResult, train

CHALLENGER_ALIAS = "challenger"


@dataclass
class RetrainResult:
    """What a retrain built, trained, judged and switched on."""

    now: datetime  # latest valid event time
    as_of: datetime  # latest snapshot cut-off (its label window ends at or before ``now``)
    features: Path
    champion: tuple[str, str]  # (name, version) challenged
    seeded: dict[str, Any]  # the champion's Optuna parameters tried first ({} when unknown)
    trained: TrainResult = field(repr=False)
    gate: str  # pass | fail | insufficient_evidence
    audit_report: Path
    alias_set: bool  # the challenger alias points at the new version
    serving_config: Path | None  # written with the split on (None: the gate failed)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``propensity retrain --json`` document."""
        t = self.trained
        return {
            "now": self.now.isoformat(), "as_of": self.as_of.isoformat(), "features": str(self.features),
            "champion": {"name": self.champion[0], "version": self.champion[1]},
            "seeded_with": self.seeded,
            "challenger": {"name": t.registered_name, "version": t.registered_version,
                           "model_uri": t.model_uri,
                           "family": t.best_family, "auc": t.metrics.get("auc"), "oracle_auc": t.oracle_auc,
                           "alias": CHALLENGER_ALIAS if self.alias_set else None},
            "fairness_gate": self.gate, "audit_report": str(self.audit_report),
            "serving_config": str(self.serving_config) if self.serving_config else None,
            "seconds": self.seconds,
        }


def latest_cutoff(now: datetime, horizon: timedelta) -> datetime:
    """The latest midnight (UTC) whose label window ``[cut-off, cut-off + horizon)`` ends by ``now``."""
    end = (now - horizon).astimezone(UTC)
    return datetime(end.year, end.month, end.day, tzinfo=UTC)


def challenger_config(train_cfg: TrainConfig) -> TrainConfig:
    """The training settings of a challenger: ``train_cfg`` with the retrain section's recency
    weighting as ``data.recency_half_life_days``, its refit as ``data.refit_with_validation``, and
    no alias (the alias waits for the gate)."""
    cfg = train_cfg.model_copy(deep=True)
    cfg.data.recency_half_life_days = train_cfg.retrain.recency_half_life_days
    cfg.data.refit_with_validation = train_cfg.retrain.refit_with_validation
    cfg.tracking.alias = None
    return cfg


def champion_trial(model: Any, families: list[str]) -> dict[str, Any]:
    """The champion's family and parameters as one Optuna trial (``{"family": F, "F.k": v}``); {} when
    the model does not record them (e.g. a mitigated model) or its family is not searched."""
    params = (getattr(model, "metadata", None) or {}).get("params")
    family = getattr(model, "family", None)
    if not isinstance(params, dict) or family not in families:
        return {}
    return {"family": family, **{f"{family}.{k}": v for k, v in params.items()}}


def retrain(events: str | Path, users: str | Path | None, train_cfg: TrainConfig, *,
            fairness_cfg: FairnessConfig | None = None, champion: str | None = None,
            out_dir: str | Path | None = None, serving_config: str | Path | None = None,
            snapshots: int = 4, every: timedelta = timedelta(days=7), horizon: timedelta = timedelta(days=7),
            challenger_share: float | None = None, explain: bool = True,
            progress: Progress | None = None) -> RetrainResult:
    """Build snapshots up to the latest complete label window of ``events``, train a challenger seeded
    with the champion's parameters, audit it, and when the gate does not fail set its alias
    ``challenger`` and write ``serving_config`` (default ``<work>/serving.yaml``) with the split on.

    ``champion`` defaults to ``models:/<registered model>@<champion alias>``; ``out_dir`` (default
    ``<work>/retrain``) receives ``features.parquet`` and the audit report; ``challenger_share`` sets
    the split's share (default: the serving config's); ``explain`` adds SHAP to the audit. Raises
    :class:`ConfigError` when there is no champion, :class:`DataError` for unusable events.
    """
    import time

    started = time.perf_counter()
    say = progress or (lambda _m: None)
    fairness_cfg = fairness_cfg or load_fairness_config()
    out = Path(out_dir) if out_dir is not None else work_dir() / "retrain"
    out.mkdir(parents=True, exist_ok=True)
    use_store(train_cfg.tracking.uri)
    name = train_cfg.tracking.registered_model
    champion = champion or f"models:/{name}@{fairness_cfg.tracking.champion_alias}"
    resolved = resolve_version(champion)
    assert resolved is not None, "the champion must be a models:/ URI"
    champ_model = load_model(champion)
    now, as_of, features = fresh_snapshots(events, users, horizon, snapshots, every,
                                           out / "features.parquet", say)
    seed = champion_trial(champ_model, list(train_cfg.search.families))
    say(f"challenger search seeded with the champion (v{resolved[1]}): {seed or 'no recorded parameters'}")
    cfg = challenger_config(train_cfg)
    trained = train(features, cfg, pre_transform=champ_model.pre_transform, progress=say,
                    seed_trials=[seed] if seed else None)
    verdict, report = _audit(trained, features, users, fairness_cfg, out, explain)
    written = None
    if verdict != "fail":
        set_alias(trained.registered_name, CHALLENGER_ALIAS, trained.registered_version)
        written = _switch_on_split(serving_config, champion, trained.registered_name, challenger_share)
    return RetrainResult(now, as_of, features, resolved, seed, trained, verdict, report, verdict != "fail",
                         written, time.perf_counter() - started)


def fresh_snapshots(events: str | Path, users: str | Path | None, horizon: timedelta, snapshots: int,
                    every: timedelta, out: Path,
                    say: Progress | None = None) -> tuple[datetime, datetime, Path]:
    """Build the snapshots up to the latest complete label window, reading and validating the events
    once (with the features config's timestamp unit); returns (now, latest cut-off, the file)."""
    from features.batch.pipeline import build_features

    say = say or (lambda _m: None)
    built = build_features(events, users, lambda latest: latest_cutoff(latest, horizon), horizon, snapshots,
                           every, out, progress=say)
    assert built.latest_event is not None  # build_features refuses events without a valid one
    as_of = datetime.fromisoformat(built.metadata["as_of"][-1])
    say(f"{built.rows} rows in {snapshots} snapshots up to {as_of.date()} (labels to "
        f"{(as_of + horizon).date()})")
    return built.latest_event, as_of, Path(built.output)


def _audit(trained: TrainResult, features: Path, users: str | Path | None, cfg: FairnessConfig, out: Path,
           explain: bool) -> tuple[str, Path]:
    from fairness.stage import audit_model

    audited = audit_model(trained.model_uri, features, users, cfg, out / "audit", mitigation="never",
                          explain=explain)
    return audited.verdict.verdict, audited.html_path


def _switch_on_split(path: str | Path | None, champion: str, name: str, share: float | None) -> Path:
    from content.serve import ContentSetup
    from serving.config import write_split_config

    target = Path(path) if path is not None else work_dir() / "serving.yaml"
    write_split_config(target, champion, f"models:/{name}@{CHALLENGER_ALIAS}",
                       reserved_salts=(ContentSetup.salt,), challenger_share=share)
    return target
