"""The feasibility map and what the search does with it: every config of the space enumerated once, the sampler
drawing only feasible configs that no trial holds, the study ending cleanly when none is left, the map cached,
measured peaks replacing predicted ones, and the cost of a CPU trial said up front."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scent_search.records import FeasibilityMap, MapCell, TrialRecord, stored_map
from scent_search.report import TerminalReporter
from scent_search.search import (FeasibleSampler, FeasibleSpace, Peak, configs, load_spec, map_study, predict_map,
                                 prepare_run, run_study, suggest)
from scent_search.search.feasibility import map_knobs, same_config, searched

from tests.search.conftest import FakeProbe, FakeTrain, budget_between, write_spec

REPO_STUDIES = Path(__file__).resolve().parents[2] / "studies"


def _space(path, **choices: str):
    """Rewrite `name = [...]` lines of the spec's [space] (values as TOML text)."""
    lines = path.read_text().splitlines()
    start = lines.index("[space]")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("["))
    for name, value in choices.items():
        hit = [i for i in range(start, end) if lines[i].startswith(f"{name} = ")]
        if hit:
            lines[hit[0]] = f"{name} = {value}"
        else:
            lines.insert(start + 1, f"{name} = {value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(spec_path, url, name, n, *, budget=None, probe=None, train=None, out=None, **kw):
    plan = prepare_run(spec_path, storage=url, study_name=name, n_trials=n, memory_budget=budget)
    outcome = run_study(plan, TerminalReporter(out=out or io.StringIO(), bar=False), probe=probe or FakeProbe(),
                        train_fn=train or FakeTrain(), **kw)
    return outcome, optuna.load_study(study_name=name, storage=url)


# ---- the space -----------------------------------------------------------------------------------


def test_the_space_is_every_combination_of_the_discrete_knobs(tmp_path):
    default = load_spec(REPO_STUDIES / "default.toml")
    all_configs = configs(default)
    n = 1
    for name in map_knobs(default):
        n *= len(default.space[name])
    assert len(all_configs) == n == 3 * 2 * 3 * 2 * 2 * 2  # hidden, mult, layers, sharing, scales, spatial bias
    assert len({tuple(c.values()) for c in all_configs}) == n
    # Searched levers are part of a config (they change the peak); lr, a continuous range, is not.
    seed = load_spec(REPO_STUDIES / "seed-40gb.toml")
    assert {"precision", "checkpointing"} <= set(map_knobs(seed)) and len(configs(seed)) == 4 * 3 * 3 * 2 * 3 * 2 * 2
    path = _space(write_spec(tmp_path), lr="[1e-4, 1e-2]")
    spec = load_spec(path)
    assert "lr" in searched(spec) and "lr" not in map_knobs(spec)
    assert len(configs(spec)) == 3 * 2 * 2 * 2 * 2


def test_the_map_judges_each_config_at_the_budget(tiny_spec):
    probe = FakeProbe()
    fmap = predict_map(tiny_spec.replace(budget_gib=budget_between(tiny_spec)), probe)
    assert probe.calls == len(fmap.cells) == 48
    assert fmap.feasible and fmap.infeasible
    assert all(c.peak_gib <= fmap.budget_gib for c in fmap.feasible)
    assert fmap.summary() == f"{len(fmap.feasible)} of 48 configs fit {fmap.budget_gib:g} GiB"
    assert FeasibilityMap.from_dict(fmap.to_dict()) == fmap  # the stored form reads back


# ---- the sampler: feasible, untried, never a repeat ----------------------------------------------


def test_a_study_never_repeats_a_config_and_ends_when_the_feasible_ones_are_tried(spec_path, tiny_spec, storage_url,
                                                                                   study_name):
    budget = budget_between(tiny_spec, 0.05)
    fmap = predict_map(tiny_spec.replace(budget_gib=budget), FakeProbe())
    n_feasible = len(fmap.feasible)
    same = same_config(tiny_spec)
    n_models = len({same(c.params) for c in fmap.feasible})  # configs that build the same model count once
    assert 0 < n_models <= n_feasible < 20
    out = io.StringIO()
    train = FakeTrain()
    outcome, study = _run(spec_path, storage_url, study_name, 40, budget=budget, train=train, out=out)
    models = [same(t.params) for t in study.trials]
    assert len(models) == len(set(models)) == n_models == outcome.finished  # each feasible model once
    assert all(t.user_attrs["feasible"] and t.state == TrialState.COMPLETE for t in study.trials)
    assert len(train.runs) == n_models and outcome.exhausted and not outcome.errors
    alike = f", {n_feasible - n_models} of them the same model as another one" if n_feasible > n_models else ""
    assert (f"All {n_feasible} feasible configs of the space have been tried{alike} ({48 - n_feasible} more exceed "
            f"{budget:g} GiB): nothing left to search; the study ends at {n_models} of 40 trials") in out.getvalue()
    # Resuming finds nothing left: no trial, the same message.
    again, study = _run(spec_path, storage_url, study_name, 40, budget=budget)
    assert again.ran == [] and again.exhausted and len(study.trials) == n_models


@pytest.mark.parametrize("sampler", ['name = "tpe"\noptions = { n_startup_trials = 3 }',
                                     'name = "tpe"\noptions = { n_startup_trials = 3, multivariate = true }',
                                     'name = "random"'])
def test_every_sampler_draws_only_feasible_untried_configs(tmp_path, sqlite_url, study_name, sampler):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace('[sampler]\nname = "random"', f"[sampler]\n{sampler}"))
    spec = load_spec(path)
    budget = budget_between(spec, 0.6)
    outcome, study = _run(path, sqlite_url, study_name, 15, budget=budget)
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert outcome.finished == 15 and len(set(params)) == 15
    assert all(t.user_attrs["peak_gib"] <= budget for t in study.trials)


def test_the_sampler_works_on_a_plain_optuna_study(tiny_spec):
    """FeasibleSampler is an Optuna sampler: in-memory study, `optimize`, TPE proposing."""
    spec = tiny_spec.replace(budget_gib=budget_between(tiny_spec))
    space = FeasibleSpace(predict_map(spec, FakeProbe()))
    sampler = FeasibleSampler(optuna.samplers.TPESampler(seed=1, n_startup_trials=2), space, searched(spec), seed=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: float(suggest(t, spec).model.hidden_dim), n_trials=len(space.map.feasible))
    keys = {space.map.key(t.params) for t in study.trials}
    assert keys == {space.map.key(c.params) for c in space.map.feasible}  # each feasible config exactly once
    assert space.untried(study.trials) == []


def _trial_with(study, params, spec):
    study.enqueue_trial(params)
    trial = study.ask()
    suggest(trial, spec)
    return trial


def test_running_waiting_and_finished_trials_hold_their_config_failed_ones_do_not(tiny_spec):
    spec = tiny_spec.replace(budget_gib=1e9)
    space = FeasibleSpace(predict_map(spec, FakeProbe()))
    study = optuna.create_study(direction="maximize")
    first = configs(spec)[:4]
    _trial_with(study, first[0], spec)  # running (e.g. another worker's)
    study.tell(_trial_with(study, first[2], spec), 25.0)  # complete
    failed = _trial_with(study, first[3], spec)  # interrupted: no result, its config is free again
    failed.set_user_attr("fail_reason", "interrupted")
    study.tell(failed, state=TrialState.FAIL)
    study.enqueue_trial(first[1])  # waiting
    left = space.untried(study.get_trials(deepcopy=False))
    assert first[3] in left and not any(c in left for c in first[:3])
    assert len(left) == 48 - 3


def test_enqueued_and_partly_fixed_trials_keep_their_params(spec_path, tiny_spec, sqlite_url, study_name):
    budget = budget_between(tiny_spec, 0.6)
    fmap = predict_map(tiny_spec.replace(budget_gib=budget), FakeProbe())
    whole = dict(fmap.feasible[-1].params)
    plan = prepare_run(spec_path, storage=sqlite_url, study_name=study_name, n_trials=2, memory_budget=budget)
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    study.enqueue_trial(whole)
    study.enqueue_trial({"hidden_dim": 32})
    run_study(plan, probe=FakeProbe(), train_fn=FakeTrain())
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    assert study.trials[0].params == whole
    assert study.trials[1].params["hidden_dim"] == 32 and study.trials[1].user_attrs["feasible"]
    assert study.trials[1].params != whole


def test_with_lr_searched_a_config_is_its_discrete_part(tmp_path, sqlite_url, study_name):
    path = _space(write_spec(tmp_path), lr="[1e-4, 1e-2]", hidden_dim="[16]", num_decoder_layers="[2]",
                  share_scales="[false]", sigma_ls="[[16.0]]")
    outcome, study = _run(path, sqlite_url, study_name, 5, budget=100.0)  # mult [1, 2]: two configs
    assert outcome.finished == 2 and outcome.exhausted
    assert sorted(t.params["mult"] for t in study.trials) == [1, 2]
    assert all(1e-4 <= t.params["lr"] <= 1e-2 for t in study.trials)


def test_configs_that_build_the_same_model_are_tried_once(tmp_path, sqlite_url, study_name):
    """One scale and one decoder layer: no FeedForward (mult changes nothing) and nothing to share. The four
    cells of the map are one model: one trial, then the study ends and says why."""
    path = _space(write_spec(tmp_path), hidden_dim="[16]", num_decoder_layers="[1]", share_scales="[false, true]",
                  sigma_ls="[[16.0]]", mult="[1, 2]")
    out = io.StringIO()
    outcome, study = _run(path, sqlite_url, study_name, 4, budget=100.0, out=out)
    assert len(stored_map(study).cells) == 4
    assert outcome.finished == 1 and outcome.exhausted and len(study.trials) == 1
    assert "3 of them the same model as another one" in out.getvalue()


def test_the_run_stores_its_map_in_the_study(spec_path, tiny_spec, sqlite_url, study_name):
    budget = budget_between(tiny_spec)
    _, study = _run(spec_path, sqlite_url, study_name, 2, budget=budget)
    fmap = stored_map(study)
    assert fmap == predict_map(tiny_spec.replace(budget_gib=budget), FakeProbe())


# ---- measured cells, the cache ------------------------------------------------------------------


def test_measured_peaks_replace_predicted_cells():
    fmap = FeasibilityMap(("hidden_dim",), (MapCell({"hidden_dim": 16}, 0.5), MapCell({"hidden_dim": 32}, 0.9)), 1.0)
    records = [TrialRecord(number=3, params={"hidden_dim": 32, "lr": 1e-3}, peak_gib=1.2, peak_source="measured"),
               TrialRecord(number=4, params={"hidden_dim": 16}, peak_gib=0.6, peak_source="predicted")]
    measured = fmap.with_measured(records)
    assert measured.cells[0] == fmap.cells[0]  # a predicted trial peak is no measurement
    assert measured.cells[1] == MapCell({"hidden_dim": 32}, 1.2, "measured", 3)
    assert measured.summary() == "1 of 2 configs fit 1 GiB"


def _two_configs(tmp_path):
    return _space(write_spec(tmp_path), hidden_dim="[16]", num_decoder_layers="[1]", share_scales="[false]",
                  sigma_ls="[[16.0]]")  # mult [1, 2]


def test_a_second_map_predicts_nothing_and_shows_measured_peaks(tmp_path, sqlite_url, monkeypatch):
    """The real profile cache: the second map (and a run) re-predict nothing; a study's measured peaks show."""
    from scent_search.memory import _step

    calls = []
    real = _step.profile_step
    monkeypatch.setattr(_step, "profile_step", lambda *a, **k: calls.append(a) or real(*a, **k))
    path = _two_configs(tmp_path)
    first = map_study(path, storage=sqlite_url)
    assert first.new_predictions == 2 and len(calls) == 2
    assert {c.source for c in first.map.cells} == {"predicted"}
    # A run of the study: its map comes from the cache; its trials measured (a stand-in GPU probe).
    measured = lambda cfg, shape: Peak(2**20, 2**20, 2**20 * cfg.mult, "measured")  # noqa: E731
    plan = prepare_run(path, storage=sqlite_url, n_trials=1, memory_budget=1.0)
    run_study(plan, probe=measured, map_probe=None, train_fn=FakeTrain())
    assert len(calls) == 2
    second = map_study(path, storage=sqlite_url, memory_budget=1.0)
    assert second.new_predictions == 0 and len(calls) == 2
    (cell,) = [c for c in second.map.cells if c.source == "measured"]
    assert cell.trial == 0 and cell.peak_gib == pytest.approx(cell.params["mult"] / 1024)


# ---- the cost of a CPU trial ---------------------------------------------------------------------


def test_a_cpu_run_says_what_a_trial_costs_before_it_starts(tmp_path, sqlite_url, study_name):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace("steps = 6", "steps = 3000\nseconds = 900.0"))
    timed = []

    def timer(cfg) -> float:
        timed.append(cfg)
        return 1.9

    out = io.StringIO()
    _run(path, sqlite_url, study_name, 2, budget=100.0, out=out, step_timer=timer)
    lines = out.getvalue().splitlines()
    (line,) = [ln for ln in lines if ln.startswith("A trial trains")]
    assert "3000 steps here at ~1.9 s/step (h=32 m=2 L=2 share=T s=16,4)" in line
    assert "about 95 min per trial, cut to 15 min by [train] seconds; 2 trials ≈ 30 min on this CPU" in line
    assert line.endswith(f"The memory question needs no training: scent-search map {path}")
    assert lines.index(line) < min(i for i, ln in enumerate(lines) if ln.startswith(("Feasibility map", "#")))
    assert len(timed) == 1 and timed[0].train.batch_size == 2 and timed[0].train.sample_q == 64  # [train]'s shape


def test_a_step_too_big_for_this_machine_is_timed_at_a_smaller_batch(tiny_spec):
    """A GPU-sized step (here: a stand-in peak of 16 GiB) is timed at a batch that fits and scaled back."""
    from scent_search.search.cost import trial_cost

    spec = tiny_spec.replace(train=tiny_spec.train.replace(batch_size=64, steps=1000))
    batches = []

    def timer(cfg):
        batches.append(cfg.train.batch_size)
        return 0.5

    cost = trial_cost(spec, lambda model, shape: Peak(16 * 2**30, 0, 0, "predicted"), timer)
    assert batches == [8] and cost.step_s == pytest.approx(0.5 * 64 / 8)
    assert "timed at batch 8, scaled to 64" in cost.message(3, "x.toml")


def test_a_study_whose_trials_are_short_is_not_timed(spec_path, sqlite_url, study_name):
    def timer(cfg):
        raise AssertionError("timed a cheap study")

    path = spec_path
    path.write_text(path.read_text().replace("steps = 6", "steps = 6\nseconds = 20.0"))
    out = io.StringIO()
    _run(path, sqlite_url, study_name, 1, budget=100.0, out=out, step_timer=timer)
    assert "A trial trains" not in out.getvalue()


def test_a_fast_step_says_nothing(tmp_path, sqlite_url, study_name):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace("steps = 6", "steps = 3000"))
    out = io.StringIO()
    _run(path, sqlite_url, study_name, 1, budget=100.0, out=out, step_timer=lambda cfg: 0.01)  # 30 s
    assert "A trial trains" not in out.getvalue()


def test_the_real_step_timer_times_a_tiny_step_and_leaves_the_random_streams_alone(tiny_spec):
    import torch

    from scent_search.search.cost import representative, time_step
    from scent_search.search.space import trial_config

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    seconds = time_step(trial_config(tiny_spec, representative(tiny_spec)))
    assert 0 < seconds < 60 and torch.equal(torch.rand(3), expected)


def test_a_failing_on_ask_leaves_no_trial_running(sqlite_url, study_name):
    """A trial asked under the slot lock has no heartbeat yet: if drawing its config fails, it is failed at once."""
    from scent_search.search import Runner, open_storage

    study = optuna.create_study(study_name=study_name, storage=open_storage(sqlite_url), direction="maximize")

    def broken(trial):
        raise RuntimeError("sampler broke")

    runner = Runner(study, lambda t: 1.0, url=sqlite_url, target=3, on_ask=broken)
    with pytest.raises(RuntimeError, match="sampler broke"):
        runner.run()
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "error"
