"""What optuna-dashboard shows of a study: custom figures, trial notes and legacy constraint values.

The search service keeps them current while a study runs:

    study.optimize(objective, callbacks=[DashboardArtifactsCallback()])   # after every trial
    mirror_legacy_constraints(trial.study, trial)                          # right after set_constraint

`refresh_study_artifacts` is idempotent and cheap: it reads the trials and the study's system attrs
once, and writes only what changed (normally the finished trial's note, the two figures and one
constraint row). `scent-search dashboard` calls it for every study (`attach_all`) before serving.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable

import optuna
import sqlalchemy
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
import sqlalchemy.exc
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models as rdb_models
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard import save_plotly_graph_object
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects
# The version-aware note writer behind `optuna_dashboard.save_note`, which accepts only a live Trial;
# the callback holds FrozenTrials of finished trials.
from optuna_dashboard._note import get_note_from_system_attrs, save_note_with_version

from scent_search.errors import StorageError
from scent_search.report.figures import dashboard_figures, record_note
from scent_search.report.pareto import RUNNING, summarize

_logger = logging.getLogger(__name__)
_UPSERT = {"sqlite": sqlalchemy.dialects.sqlite.insert, "postgresql": sqlalchemy.dialects.postgresql.insert}

LEGACY_CONSTRAINTS_KEY = "constraints"  # the only constraint attr optuna-dashboard 0.21 reads (a list)
_PREFIX = LEGACY_CONSTRAINTS_KEY + ":"  # Optuna 5: one system attr per constraint, "constraints:<key>"


def _legacy_value(system_attrs: dict[str, Any]) -> list[float] | None:
    """The legacy list mirroring the per-key constraints, ordered by key; None if there are none."""
    keyed = {k[len(_PREFIX):]: v for k, v in system_attrs.items() if k.startswith(_PREFIX)}
    return [float(keyed[k]) for k in sorted(keyed)] if keyed else None


def _backend(storage: BaseStorage) -> RDBStorage | None:
    """The RDBStorage under Optuna's cache wrapper, or None for other storages."""
    storage = getattr(storage, "_backend", storage)  # optuna.storages._CachedStorage wraps an RDBStorage
    return storage if isinstance(storage, RDBStorage) else None


def _write_finished(rdb: RDBStorage, values: dict[int, list[float]]) -> None:
    """Upsert the legacy attr of finished trials straight into the table: Optuna's API refuses to
    update a finished trial, and optuna-dashboard reads the table, not the API. An upsert, not a
    delete + insert, so that workers refreshing the same study at once do not collide."""
    table = rdb_models.TrialSystemAttributeModel.__table__
    rows = [{"trial_id": tid, "key": LEGACY_CONSTRAINTS_KEY, "value_json": json.dumps(v)} for tid, v in values.items()]
    dialect = rdb.engine.dialect.name
    try:
        with rdb.engine.begin() as conn:
            if dialect in _UPSERT:
                stmt = _UPSERT[dialect](table)
                conn.execute(stmt.on_conflict_do_update(index_elements=["trial_id", "key"],
                                                        set_={"value_json": stmt.excluded.value_json}), rows)
            else:  # e.g. MySQL: one transaction, but not race-free
                conn.execute(table.delete().where(table.c.trial_id.in_(list(values)),
                                                  table.c.key == LEGACY_CONSTRAINTS_KEY))
                conn.execute(table.insert(), rows)
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise StorageError(f"cannot write legacy constraint values: {str(e).splitlines()[0]}") from e


def mirror_legacy_constraints(study_or_storage: optuna.Study | BaseStorage, trial: FrozenTrial | optuna.Trial) -> bool:
    """Copy the trial's `constraints:<key>` values into the legacy `constraints` list attr.

    Call it right after `trial.set_constraint(...)`: the trial is running then and the normal storage
    API writes the attr. A finished trial is written directly in its RDB table. Returns whether the
    attr was written (False: nothing to mirror, already mirrored, or a finished trial in a non-RDB storage).
    """
    storage = study_or_storage._storage if isinstance(study_or_storage, optuna.Study) else study_or_storage
    trial_id = trial._trial_id
    attrs = storage.get_trial_system_attrs(trial_id)
    value = _legacy_value(attrs)
    if value is None or attrs.get(LEGACY_CONSTRAINTS_KEY) == value:
        return False
    if storage.get_trial(trial_id).state in (TrialState.RUNNING, TrialState.WAITING):
        storage.set_trial_system_attr(trial_id, LEGACY_CONSTRAINTS_KEY, value)
        return True
    rdb = _backend(storage)
    if rdb is None:
        return False
    _write_finished(rdb, {trial_id: value})
    return True


def _mirror_all(storage: BaseStorage, study_id: int, trials: Iterable[FrozenTrial]) -> int:
    """Mirror every trial of a study with one read of the table and one write; returns trials written."""
    rdb = _backend(storage)
    if rdb is None:  # only running trials can be written through the storage API
        return sum(t.state == TrialState.RUNNING and mirror_legacy_constraints(storage, t) for t in trials)
    # Read the constraint rows from the table itself: the cache wrapper does not see direct writes.
    attr, trial_t = rdb_models.TrialSystemAttributeModel.__table__, rdb_models.TrialModel.__table__
    query = (sqlalchemy.select(attr.c.trial_id, attr.c.key, attr.c.value_json)
             .join(trial_t, trial_t.c.trial_id == attr.c.trial_id)
             .where(trial_t.c.study_id == study_id, attr.c.key.like(LEGACY_CONSTRAINTS_KEY + "%")))
    try:
        with rdb.engine.connect() as conn:
            rows = conn.execute(query).all()
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise StorageError(f"cannot read constraint values: {str(e).splitlines()[0]}") from e
    per_trial: dict[int, dict[str, Any]] = {}
    todo: dict[int, list[float]] = {}
    for trial_id, key, value_json in rows:
        per_trial.setdefault(trial_id, {})[key] = json.loads(value_json)
    for trial_id, attrs in per_trial.items():
        value = _legacy_value(attrs)
        if value is not None and attrs.get(LEGACY_CONSTRAINTS_KEY) != value:
            todo[trial_id] = value
    if todo:
        _write_finished(rdb, todo)
    return len(todo)


def _is_ours(note: str, number: int) -> bool:
    """Notes we wrote start with our heading; a note a user wrote in the dashboard is left alone."""
    return note == "" or note.startswith(f"### Trial {number}: ")


def refresh_study_artifacts(study: optuna.Study) -> None:
    """Attach the Pareto-with-budget and breakdown figures, a breakdown note per finished trial, and the
    legacy constraint lists. Writes only what differs from what is stored."""
    storage, study_id = study._storage, study._study_id
    trials = study.get_trials(deepcopy=False)
    _mirror_all(storage, study_id, trials)
    summary = summarize(study, trials)
    system_attrs = storage.get_study_system_attrs(study_id)
    stored = get_plotly_graph_objects(system_attrs)
    for graph_id, figure in dashboard_figures(summary).items():
        if stored.get(graph_id) != figure.to_json():
            save_plotly_graph_object(study, figure, graph_object_id=graph_id)
    trial_ids = {t.number: t._trial_id for t in trials}
    for record in summary.records:
        if record.status == RUNNING:
            continue
        trial_id = trial_ids[record.number]
        note = get_note_from_system_attrs(system_attrs, trial_id)
        body = record_note(record, summary.budget_gib)
        if note["body"] != body and _is_ours(note["body"], record.number):
            save_note_with_version(storage, study_id, trial_id, note["version"] + 1, body)


class DashboardArtifactsCallback:
    """Optuna callback: `study.optimize(..., callbacks=[DashboardArtifactsCallback()])` refreshes the
    dashboard figures and notes after every finished trial.

    A storage error while refreshing is logged as a warning and does not end the study: the artifacts
    are a view of the trials, and the next trial's refresh writes whatever this one missed.
    """

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        try:
            refresh_study_artifacts(study)
        except (StorageError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
            _logger.warning(f"dashboard artifacts of study {study.study_name!r} not refreshed after trial "
                            f"{trial.number}: {e}")


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
