"""A/B statistics, sample size and significance reports.

Public entry points: :func:`analyze_experiment` (data frame -> ExperimentResult),
:func:`analyze_file` (file -> result, verdicts, report), :func:`demo_experiment`, the planning
functions in :mod:`experiments.stats.power` and the pure tests in :mod:`experiments.stats`.
"""

from experiments.analysis import analyze_experiment
from experiments.pipeline import analyze_file, demo_experiment
from experiments.verdict import verdict_lines

__all__ = ["analyze_experiment", "analyze_file", "demo_experiment", "verdict_lines"]
