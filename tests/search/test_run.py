"""Run semantics: the target is the study's total, resume never repeats a finished trial, a changed spec
cannot join an old study, and everything refusable is refused before a trial starts."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from scent_search.errors import ConfigError, StorageError
from scent_search.search import prepare_run, run_study
from scent_search.report import TerminalReporter


def _run(spec_path, url, name, n, train, probe, **kw):
    plan = prepare_run(spec_path, storage=url, study_name=name, n_trials=n, memory_budget=100.0, **kw)
    return run_study(plan, TerminalReporter(bar=False), train_fn=train, probe=probe)


def test_resume_reaches_the_total_without_repeating(spec_path, storage_url, study_name, fake_probe, fake_train):
    first = _run(spec_path, storage_url, study_name, 2, fake_train, fake_probe)
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    before = {t.number: (t.datetime_complete, t.params) for t in study.trials}
    assert first.finished == 2 and sorted(before) == [0, 1]

    second = _run(spec_path, storage_url, study_name, 5, fake_train, fake_probe)
    assert second.finished == 5 and second.ran == [2, 3, 4]  # only the missing three
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {n: (study.trials[n].datetime_complete, study.trials[n].params) for n in before} == before

    third = _run(spec_path, storage_url, study_name, 5, fake_train, fake_probe)  # already there: no trial
    assert third.ran == [] and len(optuna.load_study(study_name=study_name, storage=storage_url).trials) == 5


def test_resume_with_another_budget_is_refused(spec_path, sqlite_url, study_name, fake_probe, fake_train):
    _run(spec_path, sqlite_url, study_name, 1, fake_train, fake_probe)
    with pytest.raises(ConfigError, match="budget_gib: differs from the stored study"):
        prepare_run(spec_path, storage=sqlite_url, study_name=study_name, memory_budget=3.0)


def test_interrupted_and_unfinished_trials_do_not_count(spec_path, sqlite_url, study_name, fake_probe, fake_train):
    _run(spec_path, sqlite_url, study_name, 1, fake_train, fake_probe)
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    t = study.ask()  # a trial that a Ctrl-C ended
    t.set_user_attr("fail_reason", "interrupted")
    study.tell(t, state=TrialState.FAIL)
    out = _run(spec_path, sqlite_url, study_name, 2, fake_train, fake_probe)
    assert out.finished == 2 and out.ran == [2]


def test_sqlite_refuses_several_workers(spec_path, sqlite_url):
    with pytest.raises(ConfigError, match="PostgreSQL"):
        prepare_run(spec_path, storage=sqlite_url, workers=2)


def test_unreachable_database_is_a_storage_error_without_password(spec_path):
    url = "postgresql+psycopg://scent:hunter2@127.0.0.1:1/nowhere"
    with pytest.raises(StorageError) as e:
        prepare_run(spec_path, storage=url)
    assert "hunter2" not in str(e.value) and "***" in str(e.value)


def test_cuda_device_without_cuda_is_refused(spec_path, sqlite_url):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match="--device"):
        prepare_run(spec_path, storage=sqlite_url, device="cuda")


def test_timeout_stops_starting_trials(spec_path, sqlite_url, study_name, fake_probe):
    import time as _time

    from tests.search.conftest import FakeTrain

    class SlowTrain(FakeTrain):
        def __call__(self, *a, **k):
            _time.sleep(0.3)
            return super().__call__(*a, **k)

    out = _run(spec_path, sqlite_url, study_name, 50, SlowTrain(), fake_probe, timeout=0.5)
    assert 1 <= len(out.ran) < 50 and out.finished == len(out.ran)
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_no_spec_uses_the_default_study_and_its_sqlite_file(tmp_path, monkeypatch):
    """Without ./studies/default.toml, the packaged copy; the study goes to ./studies/default.db."""
    from scent_search.search import default_spec_path, packaged_default_spec

    monkeypatch.chdir(tmp_path)
    assert default_spec_path() == packaged_default_spec()
    plan = prepare_run(device="cpu")
    assert plan.spec.name == "default" and plan.url == "sqlite:///studies/default.db"
    assert (tmp_path / "studies" / "default.db").is_file()


def test_space_override_replaces_the_specs_choices(spec_path, sqlite_url, study_name, fake_probe, fake_train):
    """`run --space hidden_dim=[16]`: every trial uses the given choices; the study stores them."""
    plan = prepare_run(spec_path, storage=sqlite_url, study_name=study_name, n_trials=3, memory_budget=100.0,
                       space={"hidden_dim": [16], "precision": ["fp32", "bf16"]})
    assert plan.spec.space["hidden_dim"] == (16,) and plan.spec.space["mult"] == (1, 2)
    run_study(plan, train_fn=fake_train, probe=fake_probe)
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    assert {t.params["hidden_dim"] for t in study.trials} == {16}
    assert all(t.params["precision"] in ("fp32", "bf16") for t in study.trials)
    assert study.user_attrs["spec"]["space"]["hidden_dim"] == [16]


@pytest.mark.parametrize("space, words", [({"hidden_dim": [0]}, "hidden_dim: every choice must be >= 1"),
                                          ({"mult": [2, 2]}, "mult: has duplicate choices"),
                                          ({"colour": [1]}, "colour: unknown key")])
def test_bad_space_override_names_the_flag_and_knob(spec_path, sqlite_url, space, words):
    with pytest.raises(ConfigError) as e:
        prepare_run(spec_path, storage=sqlite_url, space=space)
    assert e.value.key == "--space" and words in str(e.value)
