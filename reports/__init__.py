"""The shared reporting layer: one look for every HTML report (experiment, fairness, segments, ...).

Reports are rendered from the Jinja2 templates in ``reports/templates`` (a shared ``base.html.j2``
with the title block, the decision first, then the evidence), with numbers formatted by
:mod:`reports.numbers` and plots drawn under :func:`reports.style.plot_style` (a colour-blind-safe
palette that never leaks into, or inherits from, the process-wide matplotlib style).
Every report is one self-contained HTML file: CSS inline, plots as base64 PNG, no script, no network.
"""

from reports.page import Decision, Figure, Header, Section, Table, render_page
from reports.style import PALETTE, figure_base64, figure_png, plot_style

__all__ = ["PALETTE", "Decision", "Figure", "Header", "Section", "Table", "figure_base64", "figure_png",
           "plot_style", "render_page"]
