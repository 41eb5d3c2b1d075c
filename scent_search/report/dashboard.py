"""What optuna-dashboard shows of a study: custom figures, trial notes and legacy constraint values.

The search service keeps them current while a study runs, through the callback the CLI hands it:

    run_study(plan, reporter, after_trial=DashboardArtifactsCallback())   # after trials, throttled

`refresh_study_artifacts` is idempotent and cheap: it reads the trials and the study's system attrs
once, and writes only what changed (normally the finished trial's note, the two figures and one
constraint row). `scent-search dashboard` calls it for every study (`attach_all`) before serving.
optuna-dashboard's private storage formats are reached through `scent_search.compat` only.
"""

from __future__ import annotations

import logging
import time

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial
from optuna_dashboard import save_plotly_graph_object

from scent_search import compat
from scent_search.errors import StorageError
from scent_search.records import RUNNING, mirror_legacy_constraints
from scent_search.report import feasibility
from scent_search.report.figures import dashboard_figures, record_note
from scent_search.report.pareto import summarize

_logger = logging.getLogger(__name__)


def _is_ours(note: str, number: int) -> bool:
    """Notes we wrote start with our heading; a note a user wrote in the dashboard is left alone."""
    return note == "" or note.startswith(f"### Trial {number}: ")


def refresh_study_artifacts(study: optuna.Study) -> None:
    """Attach the Pareto-with-budget and breakdown figures, a breakdown note per finished trial, and the
    legacy constraint lists. Writes only what differs from what is stored."""
    trials = study.get_trials(deepcopy=False)
    try:
        mirror_legacy_constraints(study)
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise StorageError(f"cannot mirror the legacy constraint values: {str(e).splitlines()[0]}") from e
    summary = summarize(study, trials)
    stored = compat.dashboard_figures_json(study)
    for graph_id, figure in {**dashboard_figures(summary), **feasibility.dashboard_figures(study, summary)}.items():
        if stored.get(graph_id) != figure.to_json():
            save_plotly_graph_object(study, figure, graph_object_id=graph_id)
    notes = compat.dashboard_notes(study, trials)
    by_number = {t.number: t for t in trials}
    for record in summary.records:
        if record.status == RUNNING:
            continue
        note, version = notes[record.number]
        body = record_note(record, summary.budget_gib, summary.eval_points)
        if note != body and _is_ours(note, record.number):
            compat.save_dashboard_note(study, by_number[record.number], version + 1, body)


class DashboardArtifactsCallback:
    """Optuna callback: `study.optimize(..., callbacks=[DashboardArtifactsCallback()])` refreshes the
    dashboard figures and notes after a finished trial, at most once every `min_interval_s` seconds: drawing
    the figures costs more than all the rest of a trial's bookkeeping (docs/benchmarks.md, "Search"), and a
    dashboard a few seconds behind shows the same study. The interval counts from the callback's creation
    (a run shorter than it is refreshed at its end only). `final(study)` refreshes once more when the run
    ends (the CLI calls it), so the last trials show.

    A storage error while refreshing is logged as a warning and does not end the study: the artifacts
    are a view of the trials, and the next refresh (the next trial's: a failed one does not count toward
    the interval) writes whatever this one missed.
    """

    def __init__(self, min_interval_s: float = 30.0) -> None:
        self.min_interval_s = min_interval_s
        self._last = time.monotonic()  # of the last refresh that succeeded; the interval counts from here

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if time.monotonic() - self._last < self.min_interval_s:
            return
        self._refresh(study, f"after trial {trial.number}")

    def final(self, study: optuna.Study) -> None:
        self._refresh(study, "at the end of the run")

    def _refresh(self, study: optuna.Study, when: str) -> None:
        try:
            refresh_study_artifacts(study)
            self._last = time.monotonic()
        except (StorageError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
            _logger.warning(f"dashboard artifacts of study {study.study_name!r} not refreshed {when}: {e}")


def attach_all(storage: BaseStorage) -> list[str]:
    """Refresh the artifacts of every study in the storage; returns the study names."""
    names = optuna.get_all_study_names(storage)
    for name in names:
        refresh_study_artifacts(optuna.load_study(study_name=name, storage=storage))
    return names


def serve(storage: BaseStorage, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run optuna-dashboard on the storage until interrupted (call `attach_all` first). Bound to the
    loopback address by default: the dashboard can edit and delete studies."""
    import optuna_dashboard

    optuna_dashboard.run_server(storage, host=host, port=port)
