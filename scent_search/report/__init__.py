"""Reports of a study: the Pareto front of PSNR against peak memory, as HTML, CSV and JSON, and what
optuna-dashboard shows of it (custom figures, trial notes, legacy constraint values).

Public surface:
- `summarize(study)` -> `StudySummary` (header facts + one `TrialRecord` per trial, Pareto marked)
- `render_report(study)`, `write_report(study, path)`: the self-contained HTML page
- `write_csv(summary, path)`, `write_json(summary, path)`: every trial, `pareto` as a column
- `DashboardArtifactsCallback`, `refresh_study_artifacts(study)`, `mirror_legacy_constraints(study, trial)`:
  called by the search service to keep optuna-dashboard current
- `open_storage(url)`, `load_study(storage, name)`, `serve(storage, host, port)`: used by the CLI
"""

from scent_search.report.dashboard import (DashboardArtifactsCallback, attach_all, mirror_legacy_constraints,
                                           refresh_study_artifacts, serve)
from scent_search.report.export import write_csv, write_json
from scent_search.report.html import render_report, write_report
from scent_search.report.pareto import COMPONENTS, StudySummary, TrialRecord, non_dominated, summarize
from scent_search.report.storage import DEFAULT_STORAGE, load_study, open_storage

__all__ = [
    "COMPONENTS", "DEFAULT_STORAGE", "DashboardArtifactsCallback", "StudySummary", "TrialRecord", "attach_all",
    "load_study", "mirror_legacy_constraints", "non_dominated", "open_storage", "refresh_study_artifacts",
    "render_report", "serve", "summarize", "write_csv", "write_json", "write_report",
]
