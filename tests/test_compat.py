"""The Optuna / optuna-dashboard internals scent-search reaches (scent_search/compat.py), checked against
the installed versions: a new release that moves one of them fails here, not in a user's study."""

from __future__ import annotations

import importlib.metadata
import json
import time
from pathlib import Path

import optuna
import optuna_dashboard
import plotly.graph_objects as go
import pytest
from optuna.trial import TrialState

from scent_search import compat

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", sorted(compat.WRITTEN_AGAINST))
def test_installed_versions_are_the_ones_compat_was_written_against(package):
    minor = ".".join(importlib.metadata.version(package).split(".")[:2])
    assert minor == compat.WRITTEN_AGAINST[package], \
        f"{package} {minor} is installed; scent_search/compat.py was written against {compat.WRITTEN_AGAINST[package]}"


def test_pyproject_bounds_the_packages_below_their_next_minor():
    deps = (ROOT / "pyproject.toml").read_text()
    for package, minor in compat.WRITTEN_AGAINST.items():
        major, sub = minor.split(".")
        assert f'"{package}>={minor},<{major}.{int(sub) + 1}"' in deps


def test_private_access_lives_in_compat_only():
    """No other module of the package, and no other test, names an Optuna / optuna-dashboard internal."""
    for path in sorted([*(ROOT / "scent_search").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]):
        if path.name in ("compat.py", "test_compat.py"):
            continue
        text = path.read_text()
        for needle in ("optuna.storages._", "optuna_dashboard._", "optuna._", "._storage", "._study_id",
                       "._trial_id", "._backend"):
            assert needle not in text, f"{path.relative_to(ROOT)} uses {needle!r}"


@pytest.fixture
def study(tmp_path) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'c.db'}", heartbeat_interval=1, grace_period=2)
    return optuna.create_study(study_name="c", storage=storage)


def test_ids_storage_and_stored_trial(study):
    trial = study.ask()
    assert compat.trial_id(trial) == compat.trial_id(study.trials[0])
    assert compat.study_id(study) == compat.study_storage(study).get_study_id_from_name("c")
    assert isinstance(compat.rdb_storage(compat.study_storage(study)), optuna.storages.RDBStorage)
    assert compat.rdb_storage(optuna.storages.InMemoryStorage()) is None
    trial.set_user_attr("x", 1)
    assert compat.stored_trial(study, trial).user_attrs == {"x": 1}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning", "ignore:Heartbeat of storage")
def test_heartbeat_keeps_a_running_trial_alive(study):
    trial = study.ask()
    with compat.heartbeat(study, trial):
        time.sleep(2.5)  # past the grace period: only the heartbeat keeps it from being stale
        optuna.storages.fail_stale_trials(study)
        assert study.trials[0].state == TrialState.RUNNING
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.FAIL


def test_system_attrs_of_running_and_finished_trials(study):
    trial = study.ask()
    compat.set_trial_system_attr(trial, "k", [1.0])
    study.tell(trial, 1.0)
    rdb = compat.rdb_storage(compat.study_storage(study))
    tid = compat.trial_id(study.trials[0])
    compat.upsert_trial_system_attr(rdb, "k", {tid: [2.0]})  # finished: Optuna's API would refuse
    compat.upsert_trial_system_attr(rdb, "k", {tid: [3.0]})  # the upsert meets the existing row
    assert compat.read_trial_system_attrs(rdb, compat.study_id(study), "k") == {tid: {"k": [3.0]}}
    fresh = optuna.load_study(study_name="c", storage=rdb.url)
    assert fresh.trials[0].system_attrs["k"] == [3.0]


def test_dashboard_notes_and_figures_round_trip(study):
    trial = study.ask()
    optuna_dashboard.save_note(trial, "written by optuna-dashboard")
    study.tell(trial, 1.0)
    frozen = study.trials[0]
    assert compat.dashboard_notes(study, [frozen]) == {0: ("written by optuna-dashboard", 1)}
    compat.save_dashboard_note(study, frozen, 2, "x" * 3000)  # longer than one system attr holds
    assert compat.dashboard_notes(study, [frozen]) == {0: ("x" * 3000, 2)}
    figure = go.Figure(go.Scatter(x=[1], y=[2]))
    optuna_dashboard.save_plotly_graph_object(study, figure, graph_object_id="g")
    assert json.loads(compat.dashboard_figures_json(study)["g"]) == json.loads(figure.to_json())


def test_study_system_attrs_and_enqueued_params(study):
    compat.set_study_system_attr(study, "feasibility_map", {"cells": [[16, 0.5]]})
    fresh = optuna.load_study(study_name="c", storage=compat.rdb_storage(compat.study_storage(study)).url)
    assert compat.study_system_attrs(fresh)["feasibility_map"] == {"cells": [[16, 0.5]]}
    assert "feasibility_map" not in fresh.user_attrs  # the dashboard lists user attrs
    study.enqueue_trial({"hidden_dim": 32})
    assert compat.enqueued_params(study.trials[0]) == {"hidden_dim": 32}
    trial = study.ask()
    assert trial.suggest_categorical("hidden_dim", [16, 32]) == 32
    assert compat.enqueued_params(study.trials[0]) == {"hidden_dim": 32}
    study.tell(trial, 1.0)
    assert compat.enqueued_params(study.ask().study.trials[1]) == {}


def test_user_attrs_of_a_running_trial_in_one_go(study):
    trial = study.ask()
    trial.set_user_attr("kept", 1)
    compat.set_trial_user_attrs(trial, {"a": 1.5, "b": {"x": [1, 2]}, "kept": 2})
    assert trial.user_attrs == {"a": 1.5, "b": {"x": [1, 2]}, "kept": 2}
    assert compat.stored_trial(study, trial).user_attrs == {"a": 1.5, "b": {"x": [1, 2]}, "kept": 2}
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError):  # finished: refused, as by set_user_attr
        compat.set_trial_user_attrs(trial, {"a": 3})
