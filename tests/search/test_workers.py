"""Several workers and dead workers, with real processes: `scent-search run` subprocesses on real storage.

These start Python processes that import torch and train tiny configs: seconds each, so marked slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scent_search.search import count_trials, prepare_run, run_study
from scent_search.report import TerminalReporter

from tests.search.conftest import FakeProbe, FakeTrain, write_spec

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "scent_search", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _slow_spec(tmp_path: Path) -> Path:
    """Feasible everywhere and long enough to be caught mid-training (thousands of steps)."""
    path = write_spec(tmp_path, budget=100.0, name="slow.toml")
    path.write_text(path.read_text().replace("steps = 6", "steps = 5000"))
    return path


def _wait_for_training(url: str, name: str, proc: subprocess.Popen, timeout: float = 120.0) -> optuna.trial.FrozenTrial:
    """The first RUNNING trial past its constraint (so: training), polled from the database."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            study = optuna.load_study(study_name=name, storage=url)
        except KeyError:
            time.sleep(0.2)
            continue
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            if t.user_attrs.get("feasible"):
                return t
        time.sleep(0.2)
    raise AssertionError("no trial started training in time")


@pytest.mark.postgres
def test_two_workers_on_postgres_share_the_target(tmp_path, pg_url, study_name):
    spec = write_spec(tmp_path, budget=100.0)
    proc = subprocess.run(_cli("run", str(spec), "--storage", pg_url, "--study-name", study_name, "--n-trials", "6",
                               "--workers", "2", "--device", "cpu"),
                          capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    study = optuna.load_study(study_name=study_name, storage=pg_url)
    trials = study.trials
    assert [t.number for t in trials] == list(range(6))  # no lost trial, none past the target
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert count_trials(study).finished == 6
    assert all("peak_memory" in t.constraints for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6  # never the same config twice
    lines = [line for line in proc.stdout.splitlines() if line.startswith("#")]
    assert sorted(int(line[1:].split()[0]) for line in lines) == list(range(6))  # each trial reported once


@pytest.mark.postgres
def test_sigkilled_worker_trial_is_failed_by_heartbeat_and_retried(tmp_path, pg_url, study_name):
    spec = _slow_spec(tmp_path)
    proc = subprocess.Popen(_cli("run", str(spec), "--storage", pg_url, "--study-name", study_name,
                                 "--n-trials", "3", "--device", "cpu"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        killed = _wait_for_training(pg_url, study_name, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    study = optuna.load_study(study_name=study_name, storage=pg_url)
    assert study.trials[killed.number].state == TrialState.RUNNING  # a dead worker cannot say anything

    # Another worker (in-process: a stand-in probe and quick training) finishes the study. Its probe gives
    # other values than the killed worker's, so a copied constraint would show.
    probe = FakeProbe()
    plan = prepare_run(spec, storage=pg_url, study_name=study_name, n_trials=3)
    out = run_study(plan, TerminalReporter(bar=False), train_fn=FakeTrain(), probe=probe)
    assert out.finished == 3

    study = optuna.load_study(study_name=study_name, storage=pg_url)
    dead = study.trials[killed.number]
    assert dead.state == TrialState.FAIL and "fail_reason" not in dead.user_attrs
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    expected = probe(*_cfg(plan.spec, retry.params)).gib - plan.spec.budget_gib
    assert retry.constraints["peak_memory"] == pytest.approx(expected)
    assert retry.constraints["peak_memory"] != pytest.approx(dead.constraints["peak_memory"])
    assert retry.system_attrs["constraints"] == [retry.constraints["peak_memory"]]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert count_trials(study).finished == 3


def _cfg(spec, params):
    import optuna as _o

    from scent_search.search.space import suggest

    trial = _o.trial.FixedTrial(params)
    cfg = suggest(trial, spec)
    return cfg.model, cfg.shape


def test_ctrl_c_marks_the_running_trial_failed(tmp_path, sqlite_url, study_name):
    spec = _slow_spec(tmp_path)
    # The child gets SIGINT's default disposition, as in a terminal: a test run in the background
    # (`nohup ... &`) would otherwise hand it an ignored SIGINT, which Python keeps ignoring.
    proc = subprocess.Popen(_cli("run", str(spec), "--storage", sqlite_url, "--study-name", study_name,
                                 "--n-trials", "3", "--device", "cpu"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        running = _wait_for_training(sqlite_url, study_name, proc)
        time.sleep(1.0)  # into the training steps, past the trial's own storage writes
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "Interrupted" in output and "Traceback" not in output
    assert "retried or replaced when the study resumes" in output
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    t = study.trials[running.number]
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == "interrupted"
    assert not study.get_trials(states=(TrialState.RUNNING,))
