"""`propensity generate`: flags in, :func:`features.shop.generate.generate`, summary out."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click

from propensity.cli.common import Steps, emit_json, took


@click.command(help="Generate a synthetic shop: events.parquet, users.parquet, oracle.parquet "
                    "(true conversion probability), catalogue.parquet, product_oracle.parquet (true "
                    "next-purchase probability per product) and shop.json, deterministic by --seed.")
@click.option("--users", type=click.IntRange(min=1), default=None, help="Number of users [config: 20000].")
@click.option("--days", type=click.IntRange(min=1), default=None, help="Days of events [config: 60].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [<work>/shop, work = $PROPENSITY_HOME or ./work].")
@click.option("--seed", type=int, default=None, help="Random seed [config: 42].")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="First day of events, YYYY-MM-DD [config: 2026-09-01].")
@click.option("--horizon-days", type=click.IntRange(min=1), default=None,
              help="Oracle horizon in days [config: 7].")
@click.option("--disparity", default=None, metavar="[KIND:]FEATURE=VALUE[:FACTOR]",
              help="Plant a group for the fairness gate: country=fr:0.3 makes it convert much less "
                   "(kind intent); tracking:country=fr:0.3 records only 30% of its client-side events, "
                   "so models under-rate it.")
@click.option("--shift", "shifts", multiple=True, metavar="KIND:FEATURE=VALUE:ARG@DAY",
              help="Plant a shift from a day on (repeatable): covariate:source=ads:3@40 (a source's "
                   "traffic triples with low-intent newcomers), tracking:device=mobile:scroll_depth@40 "
                   "(a device stops sending a field), concept:country=fr:0.5@40 (a group's intent halves).")
@click.option("--no-sale", is_flag=True, help="Switch the sale days off (a stable period).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Generator config YAML [configs/generate.yaml].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def generate(users: int | None, days: int | None, out: Path | None, seed: int | None,
             start: datetime | None, horizon_days: int | None, disparity: str | None,
             shifts: tuple[str, ...], no_sale: bool, config_path: Path | None, as_json: bool) -> None:
    from features.shop.config import load_generate_config, parse_disparity
    from features.shop.generate import generate as run
    from features.shop.shifts import parse_shift
    from propensity.paths import work_dir

    start_day: date | None = start.date() if start is not None else None
    spec = parse_disparity(disparity).model_dump() if disparity is not None else None
    cfg = load_generate_config(config_path, users=users, days=days, seed=seed, start=start_day,
                               horizon_days=horizon_days, disparity=spec)
    if shifts or no_sale:  # added to the config's shifts; validated against the shop (days, groups)
        planted = [s.model_dump() for s in cfg.shifts] + [parse_shift(t).model_dump() for t in shifts]
        sale = {**cfg.sale.model_dump(), **({"days": 0} if no_sale else {})}
        cfg = load_generate_config(config_path, users=users, days=days, seed=seed, start=start_day,
                                   horizon_days=horizon_days, disparity=spec, shifts=planted, sale=sale)
    with Steps("generating a synthetic shop", as_json=as_json) as steps:
        files = run(out or work_dir() / "shop", cfg, progress=steps)
    if as_json:
        paths = {"events": files.events, "users": files.users, "oracle": files.oracle,
                 "manifest": files.manifest}
        emit_json({**files.stats, "paths": {k: str(v) for k, v in paths.items()}, "seconds": steps.seconds})
        return
    s = files.stats
    click.echo(f"generated {s['users']} users over {s['days']} days (seed {s['seed']}): "
               f"{s['events']} event rows ({s['duplicates']} duplicate deliveries, "
               f"{s['malformed']} malformed), {s['purchases']} purchases")
    click.echo(f"events: {files.events}\nusers: {files.users}\noracle: {files.oracle} "
               f"(mean p_true {s['oracle_mean_p']:.3f})")
    click.echo(took(steps.seconds))
