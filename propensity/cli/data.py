"""`propensity features` and `propensity forget`: flags in, stage function, summary out."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from propensity.cli.common import Steps, emit_json, info

if TYPE_CHECKING:
    from features.ingest.eventtime import TimestampUnit


class Duration(click.ParamType):
    """A duration flag such as 7d, 12h, 30m."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        from features.batch.config import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Moment(click.ParamType):
    """An ISO-8601 date or date-time flag (naive means UTC)."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        from features.batch.config import parse_as_of

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
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output Parquet file (.parquet).")
@click.option("--timestamp-unit", type=click.Choice(["s", "ms", "us"]), default=None,
              help="Unit of epoch-number timestamps [config: ingest.timestamp_unit; none: such rows are "
                   "quarantined]. ISO-8601 strings need no unit.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Feature config YAML [configs/features.yaml].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def features(events_path: Path, users_path: Path | None, as_of: datetime, horizon: timedelta | None,
             snapshots: int | None, every: timedelta | None, out: Path, timestamp_unit: str | None,
             config_path: Path | None, as_json: bool) -> None:
    from features.batch.pipeline import build_features

    with Steps("building features", as_json=as_json) as steps:
        result = build_features(events_path, users_path, as_of, horizon, snapshots, every, out,
                                config=config_path, progress=steps,
                                timestamp_unit=cast("TimestampUnit | None", timestamp_unit))
    for warning in result.warnings:
        info(f"warning: {warning}")
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
        for reason, count in result.quarantine_reasons.items():
            click.echo(f"  {count:>8}  {reason}")
    else:
        click.echo("quarantined 0 bad rows")
    click.echo(f"{result.duplicates} duplicate rows counted once; took {result.seconds:.1f} s")


@click.command(help="Record a privacy deletion: removed from a shared (Redis) online store, left out of "
                    "later feature builds and refused by every online path. `--undo ID --reason TEXT` "
                    "records an explicit re-consent instead.")
@click.argument("user_id", required=False)
@click.option("--undo", "undo_id", default=None, metavar="ID", help="Re-consent: register this user again.")
@click.option("--reason", default=None, help="Why the user is registered again (required with --undo).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Feature config YAML naming the ledger [configs/features.yaml].")
@click.option("--serving-config", "serving_config_path", type=click.Path(path_type=Path), default=None,
              help="Serving config YAML naming the online store [configs/serving.yaml].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def forget(user_id: str | None, undo_id: str | None, reason: str | None, config_path: Path | None,
           serving_config_path: Path | None, as_json: bool) -> None:
    from features.batch.config import load_features_config
    from features.live.store import make_profile_store
    from features.privacy import forget_everywhere, reconsent_everywhere, resolve_ledger
    from propensity.errors import PropensityError
    from serving.config import load_serving_config

    if (user_id is None) == (undo_id is None):
        raise PropensityError("forget: give a USER_ID to forget, or --undo ID --reason TEXT")
    if undo_id is not None and not (reason or "").strip():
        raise PropensityError("--reason: required with --undo (who asked to be registered again, and why)")
    store_cfg = load_serving_config(serving_config_path).store
    ledger = resolve_ledger(load_features_config(config_path), store_cfg)
    # An in-process store lives inside the running service: /users/{id} reaches it.
    store = make_profile_store(store_cfg) if store_cfg.backend != "inprocess" else None
    try:
        if undo_id is not None:
            record = reconsent_everywhere(undo_id, str(reason), ledger, store)
            removed = None
        else:
            outcome = forget_everywhere(str(user_id), ledger, store)
            record, removed = outcome.record, outcome.removed_from_store
    finally:
        if store is not None:
            store.close()
    if as_json:
        emit_json({"user_id": record.user_id, "action": record.action,
                   "forgotten_at": record.forgotten_at.isoformat(), "reason": record.reason,
                   "ledger": str(record.ledger_path), "online_store": store_cfg.backend,
                   "removed_from_store": removed})
        return
    if undo_id is not None:
        click.echo(f"re-consent of {record.user_id} recorded in {record.ledger_path}; "
                   "the user can be registered and personalised again")
        return
    click.echo(f"forgot {record.user_id}: recorded in {record.ledger_path}; "
               "later feature builds leave the user out")
    if store is None:
        click.echo("online store is in-process: a running service forgets the user on DELETE /users/{id}")
    else:
        state = "removed" if removed else "not present"
        click.echo(f"online store ({store_cfg.backend}): profile {state}")
