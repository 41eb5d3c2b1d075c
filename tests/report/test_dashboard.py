"""What optuna-dashboard shows: custom figures, trial notes, legacy constraints, kept current while a
study runs, and served over its HTTP API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error

import optuna
import pytest
from optuna.trial import TrialState

from scent_search import compat
from scent_search.errors import StorageError
from scent_search.records import LEGACY_CONSTRAINTS_KEY, mirror_legacy_constraints, set_constraint
from scent_search.report import DashboardArtifactsCallback, attach_all, refresh_study_artifacts
from tests.report.studies import (BUDGET, P_DEFAULT, dashboard_server, get_json, make_study, random_trials,
                                  trial_record)

FIGURES = {"scent-pareto-budget", "scent-memory-breakdown"}


def fresh(storage_url: str, name: str) -> optuna.Study:
    """The study read through a new storage object (no cache shared with the writer)."""
    return optuna.load_study(study_name=name, storage=storage_url)


def test_legacy_constraints_of_running_and_finished_trials(storage_url: str) -> None:
    study = make_study(storage_url, "m", [trial_record(P_DEFAULT, TrialState.COMPLETE, psnr=27.0)])
    finished = study.trials[0]
    assert LEGACY_CONSTRAINTS_KEY not in finished.system_attrs
    trial = study.ask()
    set_constraint(trial, "peak_memory", 1.5)  # running: both forms at once
    assert mirror_legacy_constraints(study) == 1  # the finished trial, written in the table directly
    assert mirror_legacy_constraints(study) == 0  # already mirrored
    study.tell(trial, 20.0)
    trials = fresh(storage_url, "m").trials
    assert trials[0].system_attrs[LEGACY_CONSTRAINTS_KEY] == [finished.system_attrs["constraints:peak_memory"]]
    assert trials[1].system_attrs[LEGACY_CONSTRAINTS_KEY] == [1.5]
    # Feasibility as Optuna sees it is unchanged by the mirror.
    assert [all(v <= 0 for v in t.constraints.values()) for t in trials] == [True, False]


@pytest.mark.postgres
def test_refresh_on_postgresql_mirrors_finished_trials_and_is_idempotent(pg_url: str, pg_study_name: str) -> None:
    study = make_study(pg_url, pg_study_name, random_trials(6))
    refresh_study_artifacts(study)
    refresh_study_artifacts(study)  # the upsert meets existing rows
    trials = fresh(pg_url, pg_study_name).trials
    assert all(t.system_attrs[LEGACY_CONSTRAINTS_KEY] == [t.system_attrs["constraints:peak_memory"]] for t in trials)
    assert all(optuna_dashboard_note(study, t).startswith(f"### Trial {t.number}: ") for t in trials)


def test_refresh_attaches_figures_notes_constraints_and_is_idempotent(rich_study: optuna.Study,
                                                                      storage_url: str) -> None:
    refresh_study_artifacts(rich_study)
    study = fresh(storage_url, "rich")
    assert set(compat.dashboard_figures_json(study)) == FIGURES
    notes = compat.dashboard_notes(study, study.trials)
    for t in study.trials:
        assert t.system_attrs[LEGACY_CONSTRAINTS_KEY] == [t.system_attrs["constraints:peak_memory"]]
        note = optuna_dashboard_note(study, t)
        assert note.startswith(f"### Trial {t.number}: ") and "| modulation_ca |" in note
    refresh_study_artifacts(study)
    assert compat.dashboard_notes(study, study.trials) == notes  # nothing rewritten: every version unchanged


def optuna_dashboard_note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    return compat.dashboard_notes(study, [trial])[trial.number][0]


def test_refresh_leaves_a_users_note_alone(storage_url: str) -> None:
    import optuna_dashboard

    study = make_study(storage_url, "u", [])
    trial = study.ask({"hidden_dim": optuna.distributions.CategoricalDistribution([256])})
    optuna_dashboard.save_note(trial, "my own words")
    study.tell(trial, 27.0)
    refresh_study_artifacts(study)
    assert optuna_dashboard_note(study, study.trials[0]) == "my own words"


def _objective(trial: optuna.Trial) -> float:
    """A stand-in for the search service's objective: constraint, mirror, user attrs, PSNR."""
    hidden = trial.suggest_categorical("hidden_dim", [128, 256, 512])
    peak = hidden / 128
    set_constraint(trial, "peak_memory", peak - BUDGET)
    trial.set_user_attr("peak_gib", peak)
    trial.set_user_attr("breakdown", {"encoder": 2**29, "hv_lins": int((peak - 0.5) * 2**30)})
    if peak > BUDGET:
        return 24.0
    trial.set_user_attr("psnr", 25.0 + hidden / 256)
    return 25.0 + hidden / 256


def test_callback_refreshes_after_every_trial(storage_url: str) -> None:
    study = make_study(storage_url, "live", [])
    seen: list[bool] = []

    def probe(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        s = fresh(storage_url, "live")
        figure = compat.dashboard_figures_json(s).get("scent-pareto-budget", "")
        seen.append(f'"trial-{trial.number}"' in figure and optuna_dashboard_note(s, trial) != "")

    study.sampler = optuna.samplers.RandomSampler(seed=1)
    study.optimize(_objective, n_trials=4, callbacks=[DashboardArtifactsCallback(min_interval_s=0), probe])
    assert seen == [True] * 4


def test_callback_refreshes_at_most_once_per_interval_and_at_the_end(storage_url: str, monkeypatch) -> None:
    import scent_search.report.dashboard as dashboard

    clock = [1000.0]
    monkeypatch.setattr(dashboard.time, "monotonic", lambda: clock[0])
    study = make_study(storage_url, "throttled", [])
    callback = DashboardArtifactsCallback(min_interval_s=30)

    def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        clock[0] += 20.0  # each trial takes 20 s

    study.sampler = optuna.samplers.RandomSampler(seed=1)
    study.optimize(_objective, n_trials=3, callbacks=[tick, callback])  # trials end at 20, 40, 60 s
    s = fresh(storage_url, "throttled")
    assert [optuna_dashboard_note(s, t) != "" for t in s.trials] == [True, True, False]  # refreshed at 40 s only
    callback.final(s)
    assert all(optuna_dashboard_note(s, t) != "" for t in fresh(storage_url, "throttled").trials)


def test_a_storage_error_in_the_callback_is_logged_and_does_not_end_the_study(
        storage_url: str, monkeypatch, caplog) -> None:
    import scent_search.report.dashboard as dashboard

    def broken(study: optuna.Study) -> None:
        raise StorageError("database is locked")

    monkeypatch.setattr(dashboard, "refresh_study_artifacts", broken)
    study = make_study(storage_url, "locked", [])
    study.optimize(_objective, n_trials=2, callbacks=[DashboardArtifactsCallback(min_interval_s=0)])
    assert len(study.trials) == 2
    assert "not refreshed after trial 1: database is locked" in caplog.text


def test_dashboard_api_lists_the_study_with_figures_notes_and_constraints(rich_study: optuna.Study,
                                                                          storage_url: str) -> None:
    storage = optuna.storages.RDBStorage(storage_url)
    assert attach_all(storage) == ["rich"]
    with dashboard_server(storage) as base:
        studies = get_json(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["rich"]
        detail = get_json(f"{base}/api/studies/{studies[0]['study_id']}")
    assert {g["id"] for g in detail["plotly_graph_objects"]} == FIGURES
    assert len(detail["trials"]) == len(rich_study.trials)
    for t in detail["trials"]:
        assert t["note"]["body"].startswith(f"### Trial {t['number']}: ")
        assert len(t["constraints"]) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_command_serves_the_storage(rich_study: optuna.Study, storage_url: str, tmp_path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "scent_search", "dashboard", "--storage", storage_url,
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.3)
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}")
        assert {g["id"] for g in detail["plotly_graph_objects"]} == FIGURES
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert f"http://127.0.0.1:{port}/dashboard" in proc.stdout.read().decode()


def test_multi_objective_study_in_the_dashboard_report_and_best(tmp_path) -> None:
    """objectives = ["psnr", "peak_memory"]: optuna-dashboard's own Pareto front holds trained feasible
    trials only, both metrics are named, and the report and `best` read the study as before."""
    from scent_search.report import best_of, render_report, summarize
    from scent_search.search import Peak, load_spec, prepare_run, run_study
    from tests.search.conftest import FakeProbe, FakeTrain, budget_between, write_spec

    path = write_spec(tmp_path, multi_objective=True)
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    plan = prepare_run(path, storage=url, n_trials=10, memory_budget=budget_between(load_spec(path), 0.4))
    # the map foresees every config fitting; the trials' own peaks make some infeasible (as a measurement can)
    run_study(plan, train_fn=FakeTrain(), probe=FakeProbe(), map_probe=lambda m, s: Peak(0, 0, 0, "predicted"))
    storage = optuna.storages.RDBStorage(url)
    attach_all(storage)
    study = optuna.load_study(study_name="tiny", storage=storage)
    summary = summarize(study)
    assert any(r.status == "infeasible" for r in summary.records)
    with dashboard_server(storage) as base:
        detail = get_json(f"{base}/api/studies/{compat.study_id(study)}")
    assert detail["objective_names"] == ["PSNR ×4 (dB)", "peak memory (GiB)"]
    assert detail["directions"] == ["maximize", "minimize"]
    front = {t["number"] for t in detail["best_trials"]}
    trained = {r.number for r in summary.records if r.status == "feasible" and r.psnr is not None}
    assert front and front <= trained
    assert {r.number for r in summary.pareto} <= front  # ours leaves repeats out; the dashboard's may keep them
    assert "PSNR against peak memory" in render_report(study)
    best = best_of(url, "tiny")
    assert best["best"]["trial"] in front
    assert {r["trial"] for r in best["pareto"]} == {r.number for r in summary.pareto}
