"""Old path of the evaluation report, kept as an alias for one release: use `utils.eval.report` and
`utils.eval.render` instead."""
from utils.eval.render import render_markdown, render_table  # noqa: F401
from utils.eval.report import DEFAULT_VUS_WINDOW, evaluate_scores, predictions, summary_row  # noqa: F401
