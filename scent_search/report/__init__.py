"""Reports of a study: the Pareto front of PSNR against peak memory, as HTML, CSV and JSON, what
optuna-dashboard shows of it (custom figures, trial notes, legacy constraint values), and what the terminal
shows of a run and of a storage (`run`'s lines and summary, `studies`, `best`).

Public surface:
- `summarize(study)` -> `StudySummary` (header facts + one `records.TrialRecord` per trial, Pareto marked)
- `render_report(study)`, `write_report(study, path)`: the self-contained HTML page
- `write_csv(summary, path)`, `write_json(summary, path)`: every trial, `pareto` as a column
- `DashboardArtifactsCallback`, `refresh_study_artifacts(study)`: keep optuna-dashboard current (the CLI
  hands the callback to `search.run_study`); `attach_all(storage)`, `serve(storage, host, port)`
- `TerminalReporter`: what `scent-search run` prints; `list_studies(url)`, `best_of(url, name)`, `study_table`
"""

from scent_search.report.dashboard import DashboardArtifactsCallback, attach_all, refresh_study_artifacts, serve
from scent_search.report.export import write_csv, write_json
from scent_search.report.html import render_report, write_report
from scent_search.report.pareto import StudySummary, non_dominated, summarize
from scent_search.report.progress import TerminalReporter
from scent_search.report.results import best_of, list_studies, study_table

__all__ = [
    "DashboardArtifactsCallback", "StudySummary", "TerminalReporter", "attach_all", "best_of", "list_studies",
    "non_dominated", "refresh_study_artifacts", "render_report", "serve", "study_table", "summarize",
    "write_csv", "write_json", "write_report",
]
