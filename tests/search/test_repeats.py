"""The repeat phase (docs/search.md, "Repeats"): the top configs are trained again with further seeds once
the exploration has its n_trials, once each, on resume and with several workers alike."""

from __future__ import annotations

import dataclasses
import threading
import time
import types
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scent_search.errors import ConfigError
from scent_search.records import TrialRecord
from scent_search.report import TerminalReporter
from scent_search.search import RetryStaleTrial, count_trials, load_spec, prepare_run, run_study
from scent_search.search.run import _jobs
from scent_search.search.workers import run_job

from tests.search.conftest import FakeProbe, write_spec


class SeededTrain:
    """Training whose PSNR depends on the config and on the seed (0.1 dB per seed unit, the noise), and which
    records (hidden_dim, mult, layers, seed, reported eval points) of every run."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.runs: list[tuple] = []
        self.sleep = sleep
        self.lock = threading.Lock()

    def psnr(self, model_cfg, seed: int) -> float:
        # distinct for every config of the tiny space (binary steps), plus 0.1 dB per seed unit
        return 21.0 + model_cfg.hidden_dim / 16 + model_cfg.mult / 8 + model_cfg.num_decoder_layers / 32 \
            + model_cfg.num_scales / 64 + model_cfg.share_scales / 128 + 0.1 * (seed % 3)

    def __call__(self, model_cfg, train_cfg, data, device, on_eval=None):
        time.sleep(self.sleep)
        for i in range(train_cfg.eval_points):
            if on_eval:
                on_eval(i, 20.0 + i)
        with self.lock:
            self.runs.append((model_cfg.hidden_dim, model_cfg.mult, model_cfg.num_decoder_layers, model_cfg.sigma_ls,
                              model_cfg.share_scales, train_cfg.seed))
        return types.SimpleNamespace(psnr=self.psnr(model_cfg, train_cfg.seed), bicubic_psnr=20.0, steps_per_s=50.0,
                                     samples_per_s=100.0, flops_per_step=10**6, n_params=1234, backend="torch",
                                     device=str(device), steps_done=train_cfg.steps, train_seconds=0.01)


def _spec(tmp_path: Path, top_k: int = 2, seeds: int = 2, name: str = "rep.toml", **kw) -> Path:
    return write_spec(tmp_path, budget=100.0, name=name, extra=f"\n[repeats]\ntop_k = {top_k}\nseeds = {seeds}\n", **kw)


def _run(spec_path, url, name, n_trials, train, **kw):
    plan = prepare_run(spec_path, storage=url, study_name=name, n_trials=n_trials, **kw)
    return run_study(plan, TerminalReporter(bar=False), train_fn=train, probe=FakeProbe())


def _records(url, name) -> list[TrialRecord]:
    return [TrialRecord.from_trial(t) for t in optuna.load_study(study_name=name, storage=url).trials]


def _repeats(records) -> dict[tuple[int, int], TrialRecord]:
    """(original, train seed) -> the repeat trial that is a result; each at most once."""
    out = {}
    for r in records:
        if r.repeat_of is not None and r.is_result:
            assert (r.repeat_of, r.train_seed) not in out, f"repeat {r.repeat_of} seed {r.train_seed} twice"
            out[(r.repeat_of, r.train_seed)] = r
    return out


def _top(records, k):
    explored = [r for r in records if r.repeat_of is None and r.psnr is not None and r.duplicate_of is None]
    return {r.number for r in sorted(explored, key=lambda r: -r.psnr)[:k]}


def test_top_configs_are_retrained_with_further_seeds_outside_n_trials(tmp_path, sqlite_url, study_name, capsys):
    train = SeededTrain()
    out = _run(_spec(tmp_path), sqlite_url, study_name, 4, train)
    records = _records(sqlite_url, study_name)
    repeats = _repeats(records)
    # n_trials counts the configs explored; the 2 x 2 repeats come on top of them
    assert out.finished == 4 and len(records) == 8 and len(out.ran) == 8
    assert count_trials(optuna.load_study(study_name=study_name, storage=sqlite_url)).finished == 4
    assert all(r.repeat_of is None for r in records[:4]) and all(r.repeat_of is not None for r in records[4:])
    # the two best explored configs, seeds 1 and 2 ([train] seed 0 + 1, + 2)
    assert set(repeats) == {(n, s) for n in _top(records, 2) for s in (1, 2)}
    by_number = {r.number: r for r in records}
    for (original, seed), r in repeats.items():
        assert r.params == by_number[original].params and r.state == "COMPLETE"
        assert r.duplicate_of is None and r.steps_done == 6  # trained, not copied from the seed-0 twin
        assert r.psnr == pytest.approx(by_number[original].psnr + 0.1 * seed)
    # trained with the seed: each repeat reached the training function with its own seed
    assert sorted(run[-1] for run in train.runs) == [0] * 4 + [1, 1, 2, 2]
    assert all(r.train_seed == 0 for r in records[:4])
    # never judged by the pruner: no intermediate value was reported
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    assert all(t.intermediate_values == {} for t in study.trials[4:])
    assert all(len(t.intermediate_values) == 2 for t in study.trials[:4])
    printed = capsys.readouterr().out
    assert "Repeats: 4 more trainings of the top 2 config(s)" in printed
    assert printed.count("(repeat of #") == 4  # each repeat's line says which trial it repeats


def test_resume_enqueues_nothing_twice_and_only_what_a_larger_spec_adds(tmp_path, sqlite_url, study_name):
    train = SeededTrain()
    _run(_spec(tmp_path, top_k=2, seeds=1), sqlite_url, study_name, 4, train)
    assert len(_records(sqlite_url, study_name)) == 6

    again = _run(_spec(tmp_path, top_k=2, seeds=1), sqlite_url, study_name, 4, train)  # finished: nothing to do
    assert again.ran == [] and len(_records(sqlite_url, study_name)) == 6

    more = _run(_spec(tmp_path, top_k=3, seeds=2), sqlite_url, study_name, 4, train)  # one more config, one more seed
    records = _records(sqlite_url, study_name)
    repeats = _repeats(records)
    assert len(more.ran) == 3 * 2 - 2 and len(records) == 4 + 3 * 2
    assert set(repeats) == {(n, s) for n in _top(records, 3) for s in (1, 2)}
    assert sorted(run[-1] for run in train.runs) == [0] * 4 + [1] * 3 + [2] * 3  # nothing trained twice

    with pytest.raises(ConfigError, match=r"repeats\.top_k: 1 is below the stored study") as e:
        prepare_run(_spec(tmp_path, top_k=1, seeds=2), storage=sqlite_url, study_name=study_name)
    assert e.value.key == "repeats.top_k"
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    assert study.user_attrs["spec"]["repeats"] == {"top_k": 3, "seeds": 2}  # what the study now holds

    grown = _run(_spec(tmp_path, top_k=3, seeds=2), sqlite_url, study_name, 6, train)  # more exploration
    records = _records(sqlite_url, study_name)
    assert grown.finished == 6 and sum(r.repeat_of is None for r in records) == 6
    assert set(_repeats(records)) >= {(n, s) for n in _top(records, 3) for s in (1, 2)}  # older top 3 kept too


def test_a_repeat_ended_by_ctrl_c_is_asked_again_on_resume(tmp_path, sqlite_url, study_name):
    train = SeededTrain()
    _run(_spec(tmp_path, top_k=1, seeds=1), sqlite_url, study_name, 3, train)
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    (repeat,) = [t for t in study.trials if "repeat_of" in t.user_attrs]
    # the same repeat, as Ctrl-C would have left it: failed, not a result
    study.enqueue_trial(repeat.params, user_attrs={"repeat_of": repeat.user_attrs["repeat_of"], "train_seed": 2})
    stopped = study.ask()
    stopped.set_user_attr("fail_reason", "interrupted")
    study.tell(stopped, state=TrialState.FAIL)
    out = _run(_spec(tmp_path, top_k=1, seeds=2), sqlite_url, study_name, 3, train)
    assert len(out.ran) == 1 and [r[-1] for r in train.runs].count(2) == 1
    assert (repeat.user_attrs["repeat_of"], 2) in _repeats(_records(sqlite_url, study_name))


def test_a_dead_workers_repeat_is_retried_as_the_same_repeat(sqlite_url, study_name):
    study = optuna.create_study(study_name=study_name, storage=sqlite_url, direction="maximize")
    study.enqueue_trial({"hidden_dim": 32}, user_attrs={"repeat_of": 0, "train_seed": 2})
    trial = study.ask()
    trial.suggest_categorical("hidden_dim", [16, 32])
    trial.set_user_attr("peak_gib", 1.25)  # measured by the dead trial: not carried over
    study.tell(trial, state=TrialState.FAIL)
    RetryStaleTrial(max_retry=2)(study, study.trials[0])
    retry = study.trials[1]
    assert retry.state == TrialState.WAITING and retry.user_attrs == {"repeat_of": 0, "train_seed": 2}
    assert retry.params == {"hidden_dim": 32}


def test_multi_objective_study_runs_its_repeats(tmp_path, sqlite_url, study_name):
    out = _run(_spec(tmp_path, top_k=1, seeds=2, multi_objective=True), sqlite_url, study_name, 3, SeededTrain())
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    assert out.finished == 3 and len(study.trials) == 5
    for t in study.trials[3:]:
        assert t.state == TrialState.COMPLETE and len(t.values) == 2 and t.user_attrs["repeat_of"] is not None


@pytest.mark.parametrize("text, key, words", [
    ("top_k = -1", "repeats.top_k", "must be >= 0"),
    ("top_k = 2\nseeds = 0", "repeats.seeds", "must be >= 1 (further seeds per repeated config) when top_k > 0"),
    ("top_k = 2.5", "repeats.top_k", "expected int"),
    ("k = 2", "repeats.k", "unknown key"),
])
def test_bad_repeats_table_names_the_key(tmp_path, text, key, words):
    path = tmp_path / "bad.toml"
    path.write_text(f"budget_gib = 4\n[repeats]\n{text}\n")
    with pytest.raises(ConfigError) as e:
        load_spec(path)
    assert e.value.key == key and words in str(e.value) and "\n" not in str(e.value)


def test_repeats_default_to_off(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    assert spec.repeats.top_k == 0 and not spec.repeats.on


@pytest.mark.postgres
def test_two_workers_enqueue_and_run_each_repeat_once(tmp_path, pg_url, study_name, monkeypatch):
    """Two workers start the repeat phase at once on a study that has its n_trials: under the slot lock each
    repeat is enqueued once and run once (a slow enqueue widens the window in which they would race)."""
    train = SeededTrain(sleep=0.1)
    _run(_spec(tmp_path, top_k=0), pg_url, study_name, 4, train)  # the exploration, without repeats
    plan = prepare_run(_spec(tmp_path, top_k=2, seeds=2), storage=pg_url, study_name=study_name, n_trials=4)
    job = _jobs(plan, None, None)[0]
    enqueue = optuna.Study.enqueue_trial

    def slow_enqueue(self, *args, **kwargs):
        time.sleep(0.5)
        return enqueue(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", slow_enqueue)
    ran, errors = [], []

    def work(job):
        try:
            ran.extend(run_job(job, lambda r: None, train_fn=train, probe=FakeProbe(), data=plan.data))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(dataclasses.replace(job, index=i),)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    records = _records(pg_url, study_name)
    repeats = _repeats(records)  # asserts no (original, seed) twice
    assert len(records) == 8 and set(repeats) == {(n, s) for n in _top(records, 2) for s in (1, 2)}
    assert sorted(ran) == [4, 5, 6, 7] and all(r.state == "COMPLETE" for r in records)
    assert sorted(run[-1] for run in train.runs) == [0] * 4 + [1, 1, 2, 2]
