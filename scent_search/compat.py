"""The one place that touches Optuna's and optuna-dashboard's private internals.

Written against the versions in WRITTEN_AGAINST (pyproject bounds both below their next minor release;
tests/test_compat.py checks the installed versions and each access below). Everything else in
scent-search uses the public APIs only, and these functions where no public one exists:

- the ids and the storage behind a `Study` / `Trial` (`_study_id`, `_trial_id`, `_storage`, the cache
  wrapper's `_backend`), and the study's system attrs (Optuna's `Study` has no public accessor for them);
- the params an enqueued trial will take (the `fixed_params` system attr `Study.enqueue_trial` writes);
- several user attrs of a running trial in one transaction (`RDBStorage` commits each `set_user_attr` on
  its own: ~20 commits per trial, the bulk of a trial's storage time on PostgreSQL);
- the heartbeat thread `Study.optimize` runs around each trial (`optuna.storages._heartbeat`);
- rows of Optuna's trial system-attr table (`optuna.storages._rdb.models`): optuna-dashboard 0.21 reads the
  legacy `constraints` list, and Optuna's API refuses to write attrs of a finished trial;
- optuna-dashboard's stored notes and figures (`optuna_dashboard._note`, `._custom_plot_data`): its public
  `save_note` takes only a live Trial, and it has no reader for either.
"""

from __future__ import annotations

import json
from typing import Any, ContextManager, Iterable

import optuna
import sqlalchemy
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.storages._rdb import models as _rdb_models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects
from optuna_dashboard._note import get_note_from_system_attrs, save_note_with_version

# package -> the minor release whose internals this module was written against
WRITTEN_AGAINST = {"optuna": "5.0", "optuna-dashboard": "0.21"}

_UPSERT = {"sqlite": sqlalchemy.dialects.sqlite.insert, "postgresql": sqlalchemy.dialects.postgresql.insert}


# ---- ids and storages ----------------------------------------------------------------------------


def study_storage(study: optuna.Study) -> BaseStorage:
    return study._storage


def study_id(study: optuna.Study) -> int:
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    return trial._trial_id


def rdb_storage(storage: BaseStorage) -> RDBStorage | None:
    """The RDBStorage under Optuna's cache wrapper (or the storage itself); None for other storages."""
    storage = getattr(storage, "_backend", storage)  # optuna.storages._CachedStorage wraps an RDBStorage
    return storage if isinstance(storage, RDBStorage) else None


def stored_trial(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The trial as stored now (a fresh read, past any cache of the Trial object)."""
    return study_storage(study).get_trial(trial_id(trial))


def set_trial_system_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    """A system attr of a running trial (Optuna has no public setter for them)."""
    trial.storage.set_trial_system_attr(trial_id(trial), key, value)


def set_trial_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """`trial.set_user_attr(k, v)` for every item, as one multi-row upsert in one transaction on an RDB
    storage (Optuna's API commits each item on its own, after looking the trial up again). The trial must be
    running, as for `set_user_attr`."""
    rdb = rdb_storage(trial.storage)
    if not attrs:
        return
    if rdb is None or rdb.engine.dialect.name not in _UPSERT:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    tid = trial_id(trial)
    table = _rdb_models.TrialUserAttributeModel.__table__
    rows = [{"trial_id": tid, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    with _create_scoped_session(rdb.scoped_session) as session:
        rdb.check_trial_is_updatable(tid, _rdb_models.TrialModel.find_or_raise_by_id(tid, session).state)
        stmt = _UPSERT[rdb.engine.dialect.name](table)
        session.execute(stmt.on_conflict_do_update(index_elements=["trial_id", "key"],
                                                   set_={"value_json": stmt.excluded.value_json}), rows)
    trial._cached_frozen_trial.user_attrs.update(attrs)  # what `trial.user_attrs` reads


def enqueued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The params `Study.enqueue_trial` fixed for a trial ({} for any other trial)."""
    return dict(trial.system_attrs.get("fixed_params", {}))


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    return study_storage(study).get_study_system_attrs(study_id(study))


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    """A study system attr (JSON-able): data the study keeps for our views that the dashboard does not list
    among the user attrs."""
    study_storage(study).set_study_system_attr(study_id(study), key, value)


def heartbeat(study: optuna.Study, trial: optuna.Trial) -> ContextManager[Any]:
    """The heartbeat `Study.optimize` keeps for each trial (a no-op where heartbeats are off)."""
    return get_heartbeat_thread(trial_id(trial), study_storage(study))


# ---- rows of Optuna's trial system-attr table ----------------------------------------------------


def read_trial_system_attrs(rdb: RDBStorage, study_id: int, key_prefix: str) -> dict[int, dict[str, Any]]:
    """trial id -> {key: value} of the study's trial system attrs whose key starts with `key_prefix`, read
    from the table itself (Optuna's cache wrapper does not see rows written by `upsert_trial_system_attr`)."""
    attr, trial_t = _rdb_models.TrialSystemAttributeModel.__table__, _rdb_models.TrialModel.__table__
    query = (sqlalchemy.select(attr.c.trial_id, attr.c.key, attr.c.value_json)
             .join(trial_t, trial_t.c.trial_id == attr.c.trial_id)
             .where(trial_t.c.study_id == study_id, attr.c.key.like(key_prefix + "%")))
    out: dict[int, dict[str, Any]] = {}
    with rdb.engine.connect() as conn:
        for tid, key, value_json in conn.execute(query):
            out.setdefault(tid, {})[key] = json.loads(value_json)
    return out


def upsert_trial_system_attr(rdb: RDBStorage, key: str, values: dict[int, Any]) -> None:
    """Write system attr `key` of the trials `values` (trial id -> value) straight into the table, finished
    or not. An upsert, not a delete + insert, so that two workers writing the same rows do not collide.
    Raises SQLAlchemyError."""
    table = _rdb_models.TrialSystemAttributeModel.__table__
    rows = [{"trial_id": tid, "key": key, "value_json": json.dumps(v)} for tid, v in values.items()]
    dialect = rdb.engine.dialect.name
    with rdb.engine.begin() as conn:
        if dialect in _UPSERT:
            stmt = _UPSERT[dialect](table)
            conn.execute(stmt.on_conflict_do_update(index_elements=["trial_id", "key"],
                                                    set_={"value_json": stmt.excluded.value_json}), rows)
        else:  # e.g. MySQL: one transaction, but not race-free
            conn.execute(table.delete().where(table.c.trial_id.in_(list(values)), table.c.key == key))
            conn.execute(table.insert(), rows)


# ---- optuna-dashboard's notes and figures --------------------------------------------------------


def dashboard_figures_json(study: optuna.Study) -> dict[str, str]:
    """graph-object id -> the plotly JSON optuna-dashboard stores for the study."""
    return get_plotly_graph_objects(study_system_attrs(study))


def dashboard_notes(study: optuna.Study, trials: Iterable[FrozenTrial]) -> dict[int, tuple[str, int]]:
    """trial number -> (note body, note version) as optuna-dashboard stores them ("" and 0: no note)."""
    attrs = study_system_attrs(study)
    notes = {}
    for t in trials:
        note = get_note_from_system_attrs(attrs, trial_id(t))
        notes[t.number] = (note["body"], int(note["version"]))
    return notes


def save_dashboard_note(study: optuna.Study, trial: FrozenTrial, version: int, body: str) -> None:
    """Store `body` as the trial's note at `version` (the stored version + 1), finished trial or not."""
    save_note_with_version(study_storage(study), study_id(study), trial_id(trial), version, body)


__all__ = ["WRITTEN_AGAINST", "dashboard_figures_json", "dashboard_notes", "enqueued_params", "heartbeat",
           "rdb_storage", "read_trial_system_attrs", "save_dashboard_note", "set_study_system_attr",
           "set_trial_system_attr", "set_trial_user_attrs", "stored_trial", "study_id",
           "study_storage", "study_system_attrs", "trial_id", "upsert_trial_system_attr"]
