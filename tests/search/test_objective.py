"""The trial contract (docs/design.md, "The search service"), run in-process with a stand-in probe and training function."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from scent_search import compat
from scent_search.records import INFEASIBLE, TrialRecord
from scent_search.search import Peak, RetryStaleTrial, prepare_run, run_study
from scent_search.report import TerminalReporter

from tests.search.conftest import FakeTrain, budget_between

RECORD_ATTRS = {"peak_allocated_bytes", "peak_reserved_bytes", "peak_gib", "peak_source", "budget_gib", "feasible",
                "breakdown", "n_params", "backend", "device"}
TRAINED_ATTRS = {"psnr", "bicubic_psnr", "steps_per_s", "samples_per_s", "flops_per_step"}


def _run(spec_path, url, name, n_trials, *, budget=None, train=None, probe=None, map_probe=None, capsys=None):
    plan = prepare_run(spec_path, storage=url, study_name=name, n_trials=n_trials, memory_budget=budget)
    out = run_study(plan, TerminalReporter(bar=False), train_fn=train, probe=probe, map_probe=map_probe)
    return out, optuna.load_study(study_name=name, storage=url)


def _fits_everything(model_cfg, shape) -> Peak:
    """A map that foresees every config fitting (what a prediction below a GPU's measurement looks like)."""
    return Peak(0, 0, 0, "predicted")


def test_infeasible_config_ends_without_training_or_value(spec_path, sqlite_url, study_name, fake_probe, fake_train):
    """A trial's peak over the budget that the map did not foresee (on CUDA: measured above the prediction):
    every trial ends PRUNED, with no value and no report (nothing any view could rank or plot it by), its
    constraint and peak recorded, and nothing is trained."""
    out, study = _run(spec_path, sqlite_url, study_name, 3, budget=1e-6, train=fake_train, probe=fake_probe,
                      map_probe=_fits_everything)
    assert out.finished == 3 and fake_train.runs == [] and fake_train.steps == 0
    for t in study.trials:
        assert t.state == TrialState.PRUNED and t.values is None and t.intermediate_values == {}
        assert t.constraints["peak_memory"] > 0
        assert t.system_attrs["constraints"] == [t.constraints["peak_memory"]]  # optuna-dashboard 0.21
        assert t.user_attrs["feasible"] is False and t.user_attrs["steps_done"] == 0
        assert RECORD_ATTRS <= set(t.user_attrs) and "psnr" not in t.user_attrs
        assert TrialRecord.from_trial(t).status == INFEASIBLE
    with pytest.raises(ValueError):
        study.best_trial  # no feasible trial: Optuna itself does not pick an infeasible one
    assert study.get_trials(states=(TrialState.COMPLETE,)) == []  # what optuna-dashboard ranks: nothing


def test_tpe_reads_a_pruned_infeasible_trial_as_it_read_a_completed_one():
    """Optuna 5's TPE checks the constraint before the state: ending infeasible trials PRUNED without a
    value, instead of COMPLETE with the bicubic PSNR, leaves its next suggestions unchanged."""
    space = {"h": optuna.distributions.CategoricalDistribution([16, 32, 64, 128]),
             "L": optuna.distributions.CategoricalDistribution([1, 2, 3])}

    def next_params(infeasible_state: TrialState) -> list[dict]:
        sampler = optuna.samplers.TPESampler(seed=3, n_startup_trials=0)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for h in (16, 32, 64, 128):
            for L in (1, 2, 3):
                fits = h * L <= 96
                value = (20.0 + h / 64 + L) if fits else (24.0 if infeasible_state == TrialState.COMPLETE else None)
                study.add_trial(optuna.trial.create_trial(
                    params={"h": h, "L": L}, distributions=space, value=value,
                    state=TrialState.COMPLETE if fits else infeasible_state,
                    system_attrs={"constraints:peak_memory": h * L / 96 - 1.0}))
        return [study.ask(space).params for _ in range(5)]

    assert next_params(TrialState.PRUNED) == next_params(TrialState.COMPLETE)


def test_feasible_trials_train_and_record(spec_path, storage_url, study_name, fake_probe, fake_train):
    out, study = _run(spec_path, storage_url, study_name, 4, budget=100.0, train=fake_train, probe=fake_probe)
    assert out.finished == 4
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and t.constraints["peak_memory"] <= 0
        assert RECORD_ATTRS | TRAINED_ATTRS <= set(t.user_attrs)
        assert t.value == t.user_attrs["psnr"]
        assert len(t.intermediate_values) == 2  # one report per eval point
    spec = study.user_attrs["spec"]
    assert spec["budget_gib"] == 100.0 and spec["target"]["batch_size"] == 4


def test_oom_and_nan_are_recorded_and_the_study_continues(spec_path, sqlite_url, study_name, fake_probe):
    train = FakeTrain(fail={0: "oom", 1: "nan"})  # the first two training runs fail
    out, study = _run(spec_path, sqlite_url, study_name, 5, budget=100.0, train=train, probe=fake_probe)
    assert out.finished == 5 and not out.errors
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert [t.user_attrs["fail_reason"] for t in failed] == ["oom", "nan"]
    assert all("peak_memory" in t.constraints for t in failed)  # set before training could fail
    assert all("simulated OOM" in failed[0].user_attrs["fail_message"] for _ in [0])
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3  # the study went on to its target


def test_pruned_trials_are_pruned_not_failed(tmp_path, sqlite_url, study_name, fake_probe, fake_train):
    from tests.search.conftest import write_spec

    path = write_spec(tmp_path, extra="", name="p.toml")
    text = path.read_text().replace('[pruner]\nname = "nop"',
                                    '[pruner]\nname = "percentile"\noptions = { percentile = 99.0, n_startup_trials = 1, n_warmup_steps = 0 }')
    path.write_text(text)
    out, study = _run(path, sqlite_url, study_name, 5, budget=100.0, train=fake_train, probe=fake_probe)
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states and out.finished == 5


def test_configs_the_map_finds_infeasible_are_never_trials(spec_path, tiny_spec, sqlite_url, study_name, fake_probe,
                                                           fake_train):
    budget = budget_between(tiny_spec)
    out, study = _run(spec_path, sqlite_url, study_name, 10, budget=budget, train=fake_train, probe=fake_probe)
    assert out.finished == 10 and all(t.user_attrs["feasible"] for t in study.trials)
    assert all(t.user_attrs["peak_gib"] <= budget for t in study.trials)
    assert len(fake_train.runs) == 10  # each trial a new config: all trained


def test_retry_drops_stale_constraints(sqlite_url, study_name):
    """Optuna's retry copies system attrs; ours re-enqueues the params with no constraint values."""
    study = optuna.create_study(study_name=study_name, storage=sqlite_url, direction="maximize")
    trial = study.ask()
    trial.suggest_categorical("hidden_dim", [16, 32])
    trial.set_constraint("peak_memory", 0.25)
    compat.set_trial_system_attr(trial, "constraints", [0.25])
    trial.set_user_attr("peak_gib", 1.25)
    study.tell(trial, state=TrialState.FAIL)
    RetryStaleTrial(max_retry=2)(study, study.trials[0])
    retry = study.trials[1]
    assert retry.state == TrialState.WAITING and retry.params == study.trials[0].params
    assert not any(k == "constraints" or k.startswith("constraints:") for k in retry.system_attrs)
    assert retry.user_attrs == {}
    assert retry.system_attrs["failed_trial"] == 0 and retry.system_attrs["retry_history"] == [0]
    # The retry can record its own value.
    new = study.ask()
    assert new.number == 1
    new.set_constraint("peak_memory", -0.5)
    assert new.constraints == {"peak_memory": -0.5}


def test_retry_respects_max_retry(sqlite_url, study_name):
    study = optuna.create_study(study_name=study_name, storage=sqlite_url)
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, system_attrs={"retry_history": [0, 1]}))
    RetryStaleTrial(max_retry=2)(study, study.trials[0])
    assert len(study.trials) == 1


def _multi_objective_spec(tmp_path):
    from tests.search.conftest import write_spec

    return write_spec(tmp_path, name="mo.toml", multi_objective=True)


def test_studies_name_their_metric_for_the_dashboard(spec_path, sqlite_url, study_name, fake_probe, fake_train):
    _, study = _run(spec_path, sqlite_url, study_name, 1, budget=100.0, train=fake_train, probe=fake_probe)
    assert study.metric_names == ["PSNR ×4 (dB)"]


def test_resuming_an_older_study_names_its_metric(spec_path, sqlite_url, study_name, fake_probe, fake_train):
    optuna.create_study(study_name=study_name, storage=sqlite_url, direction="maximize")  # before metric names
    _, study = _run(spec_path, sqlite_url, study_name, 1, budget=100.0, train=fake_train, probe=fake_probe)
    assert study.metric_names == ["PSNR ×4 (dB)"]


def test_multi_objective_study_maximises_psnr_and_minimises_the_peak(tmp_path, sqlite_url, study_name, fake_probe,
                                                                    fake_train):
    from scent_search.search import load_spec

    path = _multi_objective_spec(tmp_path)
    # the map foresees every config fitting; the trials' own peaks make some infeasible (as a measurement can)
    out, study = _run(path, sqlite_url, study_name, 8, budget=budget_between(load_spec(path)), train=fake_train,
                      probe=fake_probe, map_probe=_fits_everything)
    assert out.finished == 8 and not out.errors
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert study.metric_names == ["PSNR ×4 (dB)", "peak memory (GiB)"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    infeasible = [t for t in study.trials if t.user_attrs["feasible"] is False]
    assert complete and infeasible
    for t in complete:
        assert t.values == [t.user_attrs["psnr"], pytest.approx(t.user_attrs["peak_gib"])]
        assert t.intermediate_values == {}  # Optuna cannot report (or prune) a multi-objective trial
    assert all(t.state == TrialState.PRUNED and t.values is None for t in infeasible)
    assert study.best_trials and all(t.user_attrs["feasible"] for t in study.best_trials)


def test_resume_refuses_to_switch_modes(tmp_path, spec_path, sqlite_url, study_name, fake_probe, fake_train):
    from scent_search.errors import ConfigError

    _run(spec_path, sqlite_url, study_name, 1, budget=100.0, train=fake_train, probe=fake_probe)
    with pytest.raises(ConfigError, match="objectives: .* cannot switch modes") as e:
        prepare_run(_multi_objective_spec(tmp_path), storage=sqlite_url, study_name=study_name, memory_budget=100.0)
    assert "\n" not in str(e.value)
