"""Trial records and the Pareto front: the front equals Optuna's own non-dominated set."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState

from tests.report.studies import BUDGET, make_study, random_trials, trial_record
from scent_search.records import FAILED, FEASIBLE, INFEASIBLE, PRUNED
from scent_search.report.pareto import non_dominated, records_of, summarize

P = {"hidden_dim": 256, "mult": 2, "num_decoder_layers": 2, "share_scales": False, "sigma_ls": "64"}


def optuna_front(points: list[tuple[float, float]]) -> set[int]:
    """Indices of Optuna's non-dominated trials of a (maximise PSNR, minimise peak) study."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trials([optuna.trial.create_trial(values=list(p), user_attrs={"i": i}) for i, p in enumerate(points)])
    return {t.user_attrs["i"] for t in study.best_trials}


@pytest.mark.parametrize("seed", range(6))
def test_non_dominated_equals_optunas_front_with_ties(seed: int) -> None:
    rng = random.Random(seed)
    # Coarse grids make ties on one or both objectives (equal points must both stay on the front).
    points = [(rng.choice([26.0, 27.0, 27.5, 28.0, 29.0]), rng.choice([1.0, 2.0, 2.5, 4.0])) for _ in range(30)]
    member = non_dominated(points)
    assert {i for i, m in enumerate(member) if m} == optuna_front(points)


def test_non_dominated_of_nothing_and_of_one_point() -> None:
    assert non_dominated([]) == []
    assert non_dominated([(27.0, 3.0)]) == [True]


def test_statuses_and_feasibility_from_constraint_values() -> None:
    trials = [
        trial_record(P, TrialState.COMPLETE, psnr=28.0),
        trial_record(P, TrialState.PRUNED, peak_gib=BUDGET + 1),  # over budget: not trained
        trial_record(P, TrialState.PRUNED, psnr=25.0),
        trial_record(P, TrialState.FAIL, fail_reason="oom"),
        trial_record(P, TrialState.COMPLETE, peak_gib=BUDGET + 1),  # an older study's infeasible trial
    ]
    records = records_of(trials)
    assert [r.status for r in records] == [FEASIBLE, INFEASIBLE, PRUNED, FAILED, INFEASIBLE]
    # The older infeasible trial's objective value (the bicubic floor) is not taken for a PSNR.
    assert records[1].psnr is None and records[4].psnr is None
    # A pruned trial's last report is no final PSNR: it is kept apart, with the eval point it reached.
    assert (records[2].psnr, records[2].last_reported_psnr, records[2].pruned_at) == (None, 25.0, 2)
    assert [r.pareto for r in records] == [True, False, False, False, False]


def test_legacy_constraint_list_alone_decides_feasibility() -> None:
    t = trial_record(P, TrialState.COMPLETE, psnr=28.0)
    legacy = optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=28.0,
                                       user_attrs=t.user_attrs, system_attrs={"constraints": [0.5]})
    assert records_of([legacy])[0].status == INFEASIBLE


def test_summary_reads_budget_shape_device_and_counts(storage_url: str) -> None:
    study = make_study(storage_url, "s", random_trials(20))
    s = summarize(study)
    assert s.name == "s" and s.budget_gib == BUDGET and s.device == "cpu (predicted)"
    assert s.target_shape == {"batch_size": 64, "queries": 1024, "lr_size": 32, "precision": "bf16"}
    assert sum(s.counts.values()) == 20
    assert all(r.status == FEASIBLE for r in s.pareto)
    peaks = [r.peak_gib for r in s.pareto]
    assert peaks == sorted(peaks)


def test_a_repeated_config_stands_on_the_front_once() -> None:
    original = trial_record(P, TrialState.COMPLETE, psnr=28.0)
    repeat = optuna.trial.create_trial(params=original.params, distributions=original.distributions, value=28.0,
                                       user_attrs={**original.user_attrs, "duplicate_of": 0},
                                       system_attrs=original.system_attrs)
    records = records_of([original, repeat])
    assert [r.pareto for r in records] == [True, False]
    assert records[1].duplicate_of == 0 and records[1].status == FEASIBLE
