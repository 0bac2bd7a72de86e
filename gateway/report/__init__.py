"""The rollout report: a self-contained HTML page (inline CSS and SVG, no external
references) from a rollout's timeline (`gateway.control.timeline.Timeline.to_dict()`).
`html.render_report` builds the page, `svg` draws its charts. Imports no project package
but itself: it renders plain data, so the entry points (CLI, admin API) can call it.
"""

from gateway.report.html import render_report

__all__ = ["render_report"]
