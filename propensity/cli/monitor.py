"""`propensity monitor`: flags in, :func:`monitoring.stage.monitor`, summary out."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from propensity.cli.common import emit_json, info


@click.command(help="Monitor a registered model over a prediction log (--predictions) or, in backfill "
                    "mode, over daily snapshots of an events file (--events --from --to): volume, "
                    "realised and estimated AUC, calibration, drift against the training data, "
                    "selection-rate ratios, alerts, an HTML report and a monitoring run in MLflow.")
@click.option("--model", "model_uri", required=True, help="models:/NAME/V, models:/NAME@alias or runs:/...")
@click.option("--predictions", default=None,
              help="Prediction log: a Parquet file or folder (what the service writes, "
                   "<work>/predictions), or redis://HOST:PORT/DB#STREAM (schema: monitoring/log.py).")
@click.option("--events", type=click.Path(path_type=Path), default=None,
              help="Events file: outcomes (purchases); in backfill mode also the snapshots scored.")
@click.option("--users", type=click.Path(path_type=Path), default=None, help="Users (CRM) file.")
@click.option("--from", "start", type=click.DateTime(), default=None, help="First window start (UTC).")
@click.option("--to", "end", type=click.DateTime(), default=None, help="End of the last window (UTC).")
@click.option("--every", default=None, help="Window length, e.g. 1d or 12h [config: 1d].")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Reference snapshot for drift [the model's registered training dataset].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Report folder [<work>/monitor/NAME-VERSION].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Monitor config YAML [configs/monitor.yaml].")
@click.option("--no-record", is_flag=True, help="Do not log a monitoring run to MLflow.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def monitor(model_uri: str, predictions: str | None, events: Path | None, users: Path | None,
            start: datetime | None, end: datetime | None, every: str | None, reference: Path | None,
            out: Path | None, config_path: Path | None, no_record: bool, as_json: bool) -> None:
    from features.batch.config import parse_duration
    from monitoring.config import load_monitor_config
    from monitoring.stage import monitor as run
    from propensity.errors import ConfigError

    cfg = load_monitor_config(config_path)
    try:
        window = parse_duration(every) if every else None
    except ValueError as exc:
        raise ConfigError(f"--every: {exc}") from None
    result = run(model_uri, predictions=predictions, events=events, users=users, start=start, end=end,
                 every=window, reference=reference, out_dir=out, cfg=cfg, record=not no_record,
                 progress=info)
    if as_json:
        emit_json(result.to_json())
        return
    name, version = result.model
    labelled = [w for w in result.windows if w.labelled]
    click.echo(f"monitored {name} v{version}: {len(result.windows)} windows "
               f"({len(labelled)} labelled), {sum(w.predictions for w in result.windows)} predictions, "
               f"{len(result.alerts)} alerts")
    for alert in result.alerts[:20]:
        click.echo(f"  {alert['window_start'][:16]} {alert['kind']}: {alert['subject']} "
                   f"{alert['value']:.3f} (threshold {alert['threshold']:.3f})")
    click.echo(f"report: {result.report}")
    if result.run_id:
        click.echo(f"MLflow monitoring run: {result.run_id}")
