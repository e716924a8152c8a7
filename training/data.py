"""Training data: reading a feature snapshot, choosing model inputs, splitting by time, digesting.

Validation is by time (SPEC): the latest ``validation_snapshots`` distinct ``as_of`` values
validate, all earlier ones train. A file with a single ``as_of`` cannot be split by time; by
default that is an error, or (``single_snapshot: user_holdout``) a seeded split by user.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features import registry
from features.batch.dataset import content_digest, metadata_path, read_snapshot
from features.feature_set import FeatureSet
from propensity.errors import DataError
from training.config import DataConfig

KNOWN_COLUMNS = {f.name: f for f in registry.FEATURES + registry.SEGMENT_FEATURES}


@dataclass
class TrainingData:
    """A snapshot frame with its provenance: where it came from and its content digest."""

    frame: pl.DataFrame
    digest: str  # content digest "sha256:..." (features.batch.dataset.content_digest, or the sidecar's)
    source: str  # file path, or "<frame>"
    meta: dict[str, Any]

    @property
    def mlflow_digest(self) -> str:
        """The first 32 hex characters of the digest (MLflow caps dataset digests at 36 characters)."""
        return self.digest.split(":")[-1][:32]

    @property
    def short_digest(self) -> str:
        """The first 12 hex characters of the digest (for names)."""
        return self.digest.split(":")[-1][:12]


@dataclass
class Split:
    """The time split: training rows (earlier as_of) and validation rows (latest as_of)."""

    train: pl.DataFrame
    valid: pl.DataFrame
    train_as_of: list[str]
    valid_as_of: list[str]
    kind: str  # "time" or "user_holdout"


def load_training_data(source: str | Path | pl.DataFrame | Any) -> TrainingData:
    """Read a snapshot file (via ``features.batch.dataset.read_snapshot`` when available) or take a frame.

    Raises :class:`DataError` for a missing or unreadable file and a missing label column.
    """
    meta: dict[str, Any] = {}
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: features file not found")
        if metadata_path(path).is_file():
            frame, meta = read_snapshot(path)
        else:  # a Parquet file without sidecar (not written by `propensity features`)
            try:
                frame = pl.read_parquet(path)
            except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
                reason = str(exc).splitlines()[0][:200]
                raise DataError(f"{path}: cannot read features file ({reason})") from None
        origin = str(path)
    else:
        frame = source if isinstance(source, pl.DataFrame) else pl.from_pandas(source)
        origin = "<frame>"
    objects = [c for c, t in frame.schema.items() if t == pl.Object]
    if objects:  # e.g. pandas object columns of strings and None
        frame = frame.with_columns([pl.Series(c, [None if v is None else str(v) for v in frame.get_column(c)],
                                              dtype=pl.String) for c in objects])
    if registry.LABEL_COLUMN not in frame.columns:
        raise DataError(f"{origin}: no '{registry.LABEL_COLUMN}' column (build the snapshot with a horizon)")
    if "as_of" not in frame.columns:
        raise DataError(f"{origin}: no 'as_of' column")
    if frame.height == 0:
        raise DataError(f"{origin}: the features file has no rows")
    digest = str(meta.get("digest") or content_digest(frame))
    return TrainingData(frame=frame, digest=digest, source=origin, meta=meta)


def snapshot_feature_set(meta: dict[str, Any] | None) -> FeatureSet | None:
    """The feature definitions a snapshot was built with (its metadata), None when it has none."""
    specs = (meta or {}).get("feature_specs")
    return FeatureSet.from_dicts(specs) if specs else None


def select_features(frame: pl.DataFrame, cfg: DataConfig, meta: dict[str, Any] | None = None
                    ) -> tuple[list[str], list[str]]:
    """The (numeric, categorical) model inputs: the configured list, else registry features + extras.

    The registry features are those the snapshot was built with (``meta["feature_specs"]``, written
    by the feature build) when ``meta`` carries them, else the configured ones. Sensitive attributes
    are excluded unless ``include_sensitive``; an explicitly listed column missing from the frame is
    a :class:`DataError`.
    """
    if cfg.features is not None:
        missing = [c for c in cfg.features if c not in frame.columns]
        if missing:
            raise DataError(f"configured feature columns not in the snapshot: {', '.join(missing)}")
        names = list(cfg.features)
    else:
        names = [c for c in registry.model_features(include_sensitive=cfg.include_sensitive,
                                                    feature_set=snapshot_feature_set(meta))
                 if c in frame.columns]
        names += [c for c in cfg.extra_features if c in frame.columns and c not in names]
    names = [c for c in names if c not in cfg.drop_features]
    if not names:
        raise DataError("no model feature columns found in the snapshot")
    numeric: list[str] = []
    categorical: list[str] = []
    for name in names:
        dtype = frame.schema[name]
        known = KNOWN_COLUMNS.get(name)
        is_cat = (known.kind == "categorical" if known is not None
                  else dtype in (pl.String, pl.Categorical, pl.Boolean) or isinstance(dtype, pl.Enum))
        (categorical if is_cat else numeric).append(name)
    return numeric, categorical


def without_empty(train: pl.DataFrame, numeric: list[str], categorical: list[str]
                  ) -> tuple[list[str], list[str], list[str]]:
    """Leave out inputs with no observed value in the training rows (e.g. CRM columns without a users
    file): they carry nothing, and some estimators refuse all-missing columns. Returns (numeric,
    categorical, left out)."""
    def observed(name: str) -> bool:
        col = pl.col(name)
        dtype = train.schema[name]
        missing = col.is_null() | col.is_nan() if dtype.is_float() else col.is_null()
        return not bool(train.select(missing.all()).item())

    empty = [c for c in numeric + categorical if not observed(c)]
    return ([c for c in numeric if c not in empty], [c for c in categorical if c not in empty], empty)


def recency_weights(as_of: pl.Series, half_life_days: float | None) -> np.ndarray | None:
    """Sample weights that favour recent snapshots: ``0.5 ** (age / half_life_days)``, the age being
    the days from a row's ``as_of`` to the latest ``as_of`` of ``as_of``, scaled to a mean of 1 (so
    weight-based regularisation such as xgboost's ``min_child_weight`` keeps its scale). ``None``
    when ``half_life_days`` is ``None`` (equal weights) or there are no rows."""
    if half_life_days is None or as_of.len() == 0:
        return None
    if as_of.dtype == pl.String:
        as_of = as_of.str.to_datetime()
    times = as_of.cast(pl.Datetime("us")).dt.epoch("us").to_numpy().astype(np.float64)
    age_days = (times.max() - times) / 86_400e6
    weights = np.power(0.5, age_days / half_life_days)
    return weights / weights.mean()


def time_split(frame: pl.DataFrame, cfg: DataConfig, seed: int) -> Split:
    """Train on earlier snapshots, validate on the latest ``cfg.validation_snapshots`` ones."""
    as_of = sorted(frame.get_column("as_of").unique().to_list())
    labels = frame.get_column(registry.LABEL_COLUMN)
    if labels.null_count() or not set(labels.unique().to_list()) <= {0, 1}:
        raise DataError(f"'{registry.LABEL_COLUMN}' must be 0/1 without nulls")
    if len(as_of) <= cfg.validation_snapshots:
        if cfg.single_snapshot == "error":
            raise DataError(
                f"the features file has {len(as_of)} snapshot(s) (as_of) but validation by time needs "
                f"more than {cfg.validation_snapshots}; build several with `propensity features "
                "--snapshots K --every 7d` (or set data.single_snapshot: user_holdout)")
        users = frame.get_column("user_id").unique().sort()
        rng = np.random.default_rng(seed)
        held = set(users.filter(rng.random(len(users)) < cfg.holdout_share).to_list())
        mask = frame.get_column("user_id").is_in(list(held))
        split = Split(frame.filter(~mask), frame.filter(mask), [str(a) for a in as_of],
                      [str(a) for a in as_of], "user_holdout")
    else:
        cut = as_of[-cfg.validation_snapshots]
        split = Split(frame.filter(pl.col("as_of") < cut), frame.filter(pl.col("as_of") >= cut),
                      [str(a) for a in as_of if a < cut], [str(a) for a in as_of if a >= cut], "time")
    for name, part in (("training", split.train), ("validation", split.valid)):
        if part.get_column(registry.LABEL_COLUMN).n_unique() < 2:
            raise DataError(f"the {name} rows have only one label value; "
                            "need both converters and non-converters")
    return split
