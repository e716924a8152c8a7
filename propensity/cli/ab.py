"""`propensity ab`: A/B test planning (sample-size, power, mde) and analysis. No logic of its own."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from propensity.cli.common import Steps, emit_json, info, took
from propensity.errors import PropensityError


@click.group()
def ab() -> None:
    """A/B test planning and analysis."""


def _design_options(fn: Any) -> Any:
    opts = [
        click.option("--metric", type=click.Choice(["proportion", "mean"]), default="proportion",
                     show_default=True),
        click.option("--baseline", type=float, required=True, help="control rate (0..1) or control mean"),
        click.option("--mde", type=float, required=True,
                     help="minimum detectable effect: absolute difference, or a share with --relative"),
        click.option("--relative", is_flag=True, help="--mde is relative to the baseline (0.05 = +5%)"),
        click.option("--sd", type=float, default=None, help="per-unit standard deviation (mean metrics)"),
        click.option("--alpha", type=float, default=0.05, show_default=True),
        click.option("--ratio", type=float, default=1.0, show_default=True, help="n_treatment / n_control"),
        click.option("--variants", type=int, default=2, show_default=True,
                     help="number of arms including the control; alpha is split over the comparisons"),
        click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _design(metric: str, baseline: float, mde: float, relative: bool, sd: float | None, alpha: float,
            ratio: float, variants: int) -> Any:
    from experiments.stats.power import Design

    effect = baseline * mde if relative else mde
    return Design(metric, baseline, effect, sd, alpha, ratio, variants)  # type: ignore[arg-type]


def _design_dict(d: Any) -> dict[str, Any]:
    relative = d.effect / d.baseline if d.baseline else None
    return {**asdict(d), "treatment": d.treatment, "relative_effect": relative,
            "alpha_per_comparison": d.alpha_per_comparison}


@ab.command("sample-size")
@_design_options
@click.option("--power", type=float, default=0.8, show_default=True)
def sample_size(metric: str, baseline: float, mde: float, relative: bool, sd: float | None, alpha: float,
                ratio: float, variants: int, as_json: bool, power: float) -> None:
    """Units per variant needed to detect the MDE (R power.prop.test / power.t.test, rounded up)."""
    from experiments.stats.power import sample_size as plan

    p = plan(_design(metric, baseline, mde, relative, sd, alpha, ratio, variants), power)
    if as_json:
        emit_json({"n_per_variant": p.n_per_variant, "n_total": p.n_total, "n_control": p.n_control,
                   "n_treatment": p.n_treatment, "n_control_exact": p.n_control_exact, "power": power,
                   **_design_dict(p.design)})
        return
    info(f"{p.n_per_variant:,} units per variant"
         + (f" (control {p.n_control:,}, each treatment {p.n_treatment:,})" if ratio != 1 else "")
         + f", {p.n_total:,} in total, for power {power:.0%} at alpha {alpha:g}"
         + (f" ({p.design.alpha_per_comparison:.4g} per comparison)" if variants > 2 else ""))


@ab.command("power")
@_design_options
@click.option("--n-per-variant", type=float, required=True, help="control units (each arm when ratio = 1)")
def power_cmd(metric: str, baseline: float, mde: float, relative: bool, sd: float | None, alpha: float,
              ratio: float, variants: int, as_json: bool, n_per_variant: float) -> None:
    """Power reached with N units per variant."""
    from experiments.stats.power import power_for

    d = _design(metric, baseline, mde, relative, sd, alpha, ratio, variants)
    value = power_for(d, n_per_variant)
    if as_json:
        emit_json({"power": value, "n_per_variant": n_per_variant, **_design_dict(d)})
        return
    info(f"power {value:.1%} with {n_per_variant:,.0f} units per variant")


def _parse_split(text: str | None) -> Any:
    if text is None:
        return None
    try:
        if "=" in text:
            return {k.strip(): float(v) for k, v in (part.split("=", 1) for part in text.split(","))}
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise PropensityError(f"--expected-split: cannot parse '{text}' (0.5,0.5 or A=0.5,B=0.5)") from None


@ab.command("analyze")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="unit-level rows or a per-variant summary table (.parquet, .csv, .jsonl)")
@click.option("--exposures", default=None,
              help="exposure log instead of --data: user_id, variant, first_exposure[, experiment], or "
                   "what the service writes (its prediction log folder <work>/predictions, a Redis "
                   "stream redis://HOST:PORT/DB#STREAM, or exposures.jsonl): first time per user; a "
                   "content exposure log (it lists the products shown) is analysed on clicked, "
                   "converted and revenue of the shown products")
@click.option("--events", type=click.Path(dir_okay=False), default=None, help="events (SPEC contract)")
@click.option("--attributes", type=click.Path(dir_okay=False), default=None,
              help="per-user columns (covariates, segments) joined to the exposure log")
@click.option("--experiment", default=None, help="experiment name to select in the exposure log")
@click.option("--variant-col", default="variant", show_default=True)
@click.option("--control", required=True, help="name of the control variant")
@click.option("--metric", "metrics", multiple=True,
              help="metric column (repeatable); exposure logs default to converted and revenue")
@click.option("--covariate", default=None, help="pre-period column for CUPED")
@click.option("--segment-col", default=None, help="break results down by this column")
@click.option("--timestamp-col", default=None, help="first exposure time: timeline and sequential read-out")
@click.option("--factor", "factors", multiple=True, help="factor column of a factorial design (repeatable)")
@click.option("--expected-split", default=None, help="planned shares, sorted variant order or A=0.5,B=0.5")
@click.option("--correction", type=click.Choice(["holm", "bh", "bonferroni", "none"]), default=None)
@click.option("--alpha", type=float, default=None)
@click.option("--equal-var", is_flag=True, default=None, help="Student instead of Welch t-test")
@click.option("--sequential", is_flag=True, default=None, help="decide on always-valid p-values")
@click.option("--looks", type=int, default=None, help="times results were examined (peeking warning)")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="experiment config (default configs/experiments.yaml; may name the experiment, its "
                   "hypothesis and planned effect)")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="write an HTML report (+ .md)")
@click.option("--name", default=None, help="experiment name for the report title [config: name, else "
                                           "--experiment or the input file name]")
@click.option("--hypothesis", default=None, help="what the experiment tests, shown first in the report "
                                                 "[config: hypothesis]")
@click.option("--planned-mde", type=float, default=None,
              help="relative lift the test was sized for, e.g. 0.05 [config: planned_mde_relative]")
@click.option("--json", "as_json", is_flag=True)
def analyze(data: str | None, exposures: str | None, events: str | None, attributes: str | None,
            experiment: str | None, variant_col: str, control: str, metrics: tuple[str, ...],
            covariate: str | None, segment_col: str | None, timestamp_col: str | None,
            factors: tuple[str, ...],
            expected_split: str | None, correction: str | None, alpha: float | None, equal_var: bool | None,
            sequential: bool | None, looks: int | None, config_path: str | None, report: str | None,
            name: str | None, hypothesis: str | None, planned_mde: float | None, as_json: bool) -> None:
    """Significance analysis of an experiment (SRM, tests, corrections, CUPED, sequential, report)."""
    from experiments.pipeline import analyze_file

    with Steps("analysing the experiment", as_json=as_json) as steps:
        result, verdicts, paths = analyze_file(
            data, variant_col, control, list(metrics), exposures=exposures, events=events,
            attributes=attributes, experiment=experiment, covariate=covariate, segment_col=segment_col,
            timestamp_col=timestamp_col, factors=list(factors), expected_split=_parse_split(expected_split),
            config_path=config_path, report=report,
            overrides={"correction": correction, "alpha": alpha, "equal_var": equal_var, "looks": looks,
                       "hypothesis": hypothesis, "planned_mde_relative": planned_mde},
            sequential=sequential, name=name, progress=steps)
    named = {"report_html": paths.get("html"), "report_md": paths.get("markdown"),
             "plots": paths.get("plots")}
    if as_json:
        emit_json({**result.to_dict(), "verdicts": verdicts, "report": paths,
                   "paths": {k: v for k, v in named.items() if v}, "seconds": steps.seconds})
        return
    for w in result.warnings:
        info(f"warning: {w}")
    for line in verdicts:
        info(line)
    for kind, path in paths.items():
        info(f"{kind} report: {path}")
    info(took(steps.seconds))


@ab.command("mde")
@click.option("--metric", type=click.Choice(["proportion", "mean"]), default="proportion", show_default=True)
@click.option("--baseline", type=float, required=True, help="control rate (0..1) or control mean")
@click.option("--sd", type=float, default=None, help="per-unit standard deviation (mean metrics)")
@click.option("--n-per-variant", type=float, required=True, help="control units (each arm when ratio = 1)")
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--power", type=float, default=0.8, show_default=True)
@click.option("--ratio", type=float, default=1.0, show_default=True, help="n_treatment / n_control")
@click.option("--variants", type=int, default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def mde(metric: str, baseline: float, sd: float | None, n_per_variant: float, alpha: float, power: float,
        ratio: float, variants: int, as_json: bool) -> None:
    """Smallest upward effect detectable with N units per variant."""
    from experiments.stats.power import minimum_detectable_effect

    d = _design(metric, baseline, 0.0, False, sd, alpha, ratio, variants)
    effect = minimum_detectable_effect(d, n_per_variant, power)
    relative = effect / baseline if baseline else None
    if as_json:
        emit_json({"mde": effect, "mde_relative": relative, "n_per_variant": n_per_variant, "power": power,
                   **_design_dict(d)})
        return
    info(f"minimum detectable effect {effect:+.4g}" + (f" ({relative:+.1%} relative)" if relative else "")
         + f" with {n_per_variant:,.0f} units per variant at power {power:.0%}")
