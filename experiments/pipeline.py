"""Stage functions that tie reading, analysis and reporting together (called by the CLI and the demo)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.aggregate import read_table
from experiments.analysis import analyze_experiment
from experiments.config import load_experiments_config
from experiments.results import ExperimentResult
from experiments.verdict import verdict_lines


def analyze_file(data: str | Path, variant_col: str, control: str, metrics: Sequence[str], *,
                 covariate: str | None = None, segment_col: str | None = None,
                 timestamp_col: str | None = None, factors: Sequence[str] = (),
                 expected_split: Sequence[float] | Mapping[str, float] | None = None,
                 config_path: str | Path | None = None, report: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, sequential: bool | None = None
                 ) -> tuple[ExperimentResult, list[str], dict[str, str]]:
    """Read ``data``, analyse it, optionally write ``report`` (HTML, plus Markdown beside it).

    Returns the result, the verdict lines and the written report paths ({"html": ..., "markdown": ...}).
    """
    settings = load_experiments_config(config_path, overrides)
    if sequential is not None:
        settings.sequential.enabled = sequential
    frame = read_table(data)
    result = analyze_experiment(frame, variant_col, control, metrics, covariate=covariate,
                                segment_col=segment_col, expected_split=expected_split,
                                timestamp_col=timestamp_col, factors=factors, settings=settings)
    verdicts = verdict_lines(result)
    paths: dict[str, str] = {}
    if report is not None:
        from experiments.report import write_report

        paths = write_report(result, report, title=f"Experiment report: {Path(data).name}")
    return result, verdicts, paths


def demo_experiment(out_dir: str | Path, config_path: str | Path | None = None) -> dict[str, Any]:
    """Simulate an experiment (``demo`` settings), analyse it, write its report into ``out_dir``.

    Returns {"data", "html", "markdown", "verdicts", "warnings"} (paths as strings).
    """
    from experiments.report import write_report
    from experiments.simulate import simulate_experiment

    settings = load_experiments_config(config_path)
    demo = settings.demo
    data = simulate_experiment(out_dir, demo.users, demo.variants, demo.days, demo.seed)
    frame = read_table(data)
    control = next(iter(demo.variants))
    result = analyze_experiment(frame, "variant", control, ["converted", "revenue"], covariate="pre_revenue",
                                segment_col="device", timestamp_col="first_exposure", settings=settings)
    paths = write_report(result, Path(out_dir) / "experiment_report.html",
                         title="Demo experiment (simulated)")
    return {"data": str(data), "html": paths["html"], "markdown": paths["markdown"],
            "verdicts": verdict_lines(result), "warnings": result.warnings}
