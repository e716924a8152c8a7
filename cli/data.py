"""`propensity features` and `propensity forget`: flags in, stage function, summary out."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from cli.common import Steps, emit_json


class Duration(click.ParamType):
    """A duration flag such as 7d, 12h, 30m."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        from features.build_config import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Moment(click.ParamType):
    """An ISO-8601 date or date-time flag (naive means UTC)."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        from features.build_config import parse_as_of

        try:
            return parse_as_of(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command(help="Build point-in-time feature snapshots from raw events (and CRM users).")
@click.option("--events", "events_path", required=True, type=click.Path(path_type=Path),
              help="Events file (.parquet, .csv or .jsonl).")
@click.option("--users", "users_path", type=click.Path(path_type=Path), default=None,
              help="Users (CRM) file (.parquet, .csv or .jsonl).")
@click.option("--as-of", "as_of", required=True, type=Moment(),
              help="Cut-off of the (latest) snapshot, ISO-8601; naive means UTC.")
@click.option("--horizon", type=Duration(), default=None, help="Label window, e.g. 7d [config: 7d].")
@click.option("--snapshots", type=click.IntRange(min=1), default=None,
              help="Number of stacked snapshots [config: 1].")
@click.option("--every", type=Duration(), default=None, help="Spacing of stacked snapshots [config: 7d].")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output Parquet file.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Feature config YAML [configs/features.yaml].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def features(events_path: Path, users_path: Path | None, as_of: datetime, horizon: timedelta | None,
             snapshots: int | None, every: timedelta | None, out: Path, config_path: Path | None,
             as_json: bool) -> None:
    from features.pipeline import build_features

    with Steps("building features", as_json=as_json) as steps:
        result = build_features(events_path, users_path, as_of, horizon, snapshots, every, out,
                                config=config_path, progress=steps)
    if as_json:
        paths = {"snapshot": result.output, "metadata": result.metadata_path,
                 "quarantine": result.quarantine_path}
        emit_json({**result.summary(), "paths": {k: str(v) for k, v in paths.items() if v is not None},
                   "seconds": steps.seconds})
        return
    rate = "n/a" if result.label_rate is None else f"{result.label_rate:.2%}"
    click.echo(f"wrote {result.rows} rows ({result.users} users, label rate {rate}) to {result.output}")
    click.echo(f"metadata: {result.metadata_path} (digest {result.digest[:19]}...)")
    if result.quarantined:
        click.echo(f"quarantined {result.quarantined} bad rows: {result.quarantine_path}")
    else:
        click.echo("quarantined 0 bad rows")
    click.echo(f"{result.duplicates} duplicate rows counted once; took {result.seconds:.1f} s")


@click.command(help="Record a privacy deletion: removed from a shared (Redis) online store, left out of "
                    "later feature builds.")
@click.argument("user_id")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Feature config YAML naming the ledger [configs/features.yaml].")
@click.option("--serving-config", "serving_config_path", type=click.Path(path_type=Path), default=None,
              help="Serving config YAML naming the online store [configs/serving.yaml].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def forget(user_id: str, config_path: Path | None, serving_config_path: Path | None, as_json: bool) -> None:
    from features.build_config import ledger_path, load_features_config
    from features.privacy import forget_everywhere
    from features.profile_store import make_profile_store
    from serving.config import load_serving_config

    store_cfg = load_serving_config(serving_config_path).store
    # An in-process store lives inside the running service: DELETE /users/{id} reaches it.
    store = make_profile_store(store_cfg) if store_cfg.backend != "inprocess" else None
    try:
        outcome = forget_everywhere(user_id, ledger_path(load_features_config(config_path)), store)
    finally:
        if store is not None:
            store.close()
    record = outcome.record
    if as_json:
        emit_json({"user_id": record.user_id, "forgotten_at": record.forgotten_at.isoformat(),
                   "ledger": str(record.ledger_path), "online_store": store_cfg.backend,
                   "removed_from_store": outcome.removed_from_store})
        return
    click.echo(f"forgot {record.user_id}: recorded in {record.ledger_path}; "
               "later feature builds leave the user out")
    if store is None:
        click.echo("online store is in-process: a running service forgets the user on DELETE /users/{id}")
    else:
        state = "removed" if outcome.removed_from_store else "not present"
        click.echo(f"online store ({store_cfg.backend}): profile {state}")
