"""The trial record: what the search writes is what every view reads back; the knob registry's encodings."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
from optuna.trial import TrialState

from scent_search.records import (ATTRS, INFEASIBLE, KNOBS, TrialRecord, knobs_label, legacy_constraints,
                                  set_constraint)

WRITTEN = TrialRecord(peak_allocated_bytes=3 * 2**29, peak_reserved_bytes=2**31, peak_gib=2.0, peak_source="predicted",
                      budget_gib=1.5, feasible=False, breakdown={"hv_lins": 2**30, "other": 2**29}, n_params=1234,
                      backend="torch", device="cpu", profile_seconds=0.1, worker="host:1",
                      model_config={"hidden_dim": 64}, bicubic_psnr=24.5, steps_done=0, train_seconds=0.0,
                      flops_per_step=2**60 + 1)


def test_what_is_written_is_read_back(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'r.db'}", direction="maximize")
    trial = study.ask()
    set_constraint(trial, "peak_memory", 0.5)
    WRITTEN.write(trial)
    study.tell(trial, 24.5)
    read = TrialRecord.from_trial(study.trials[0])
    assert {k: getattr(read, k) for k in ATTRS} == {k: getattr(WRITTEN, k) for k in ATTRS}
    assert read.constraints == {"peak_memory": 0.5} and read.status == INFEASIBLE and read.is_result
    assert study.trials[0].system_attrs["constraints"] == [0.5]  # the form optuna-dashboard 0.21 reads
    assert read.breakdown_gib == {"hv_lins": 1.0, "other": 0.5}  # BREAKDOWN_KEYS order


def test_every_field_but_the_trials_own_is_an_attr():
    own = {"number", "state", "params", "constraints", "seconds", "retry_of", "pareto"}
    assert set(ATTRS) == {f.name for f in dataclasses.fields(TrialRecord)} - own
    assert set(WRITTEN.to_attrs()) == {k for k in ATTRS if getattr(WRITTEN, k) is not None}


def test_malformed_attrs_read_as_missing():
    trial = optuna.trial.create_trial(state=TrialState.COMPLETE, value=1.0, user_attrs={
        "peak_gib": "lots", "psnr": math.nan, "n_params": 12.0, "feasible": "yes", "breakdown": [1, 2],
        "fail_reason": "", "duplicate_of": 2.5, "budget_gib": math.inf})
    r = TrialRecord.from_trial(trial)
    assert (r.peak_gib, r.n_params, r.breakdown, r.fail_reason, r.duplicate_of, r.budget_gib) == \
        (None, 12, None, None, None, None)
    assert r.feasible is True and r.psnr == 1.0  # no constraint, no usable attr: the objective value


def test_interrupted_and_errored_trials_are_no_result():
    for reason, counted in (("oom", True), ("nan", True), ("interrupted", False), ("error", False)):
        trial = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": reason})
        assert TrialRecord.from_trial(trial).is_result is counted


def test_legacy_list_follows_the_keys_in_order():
    assert legacy_constraints({"constraints:b": 2, "constraints:a": -1, "other": 0}) == [-1.0, 2.0]
    assert legacy_constraints({"other": 0}) is None


def test_knobs_suggest_and_label_what_optuna_stores():
    trial = optuna.trial.FixedTrial({"sigma_ls": "128,32", "share_scales": True, "lr": 3e-4, "precision": "bf16"})
    assert KNOBS["sigma_ls"].suggest(trial, ((64.0,), (128.0, 32.0))) == (128.0, 32.0)
    assert KNOBS["lr"].suggest(trial, (1e-4, 1e-3)) == 3e-4
    assert knobs_label({"hidden_dim": 256, "share_scales": True, "sigma_ls": "128,32", "precision": "bf16",
                        "lr": 3e-4}) == "h=256 share=T s=128,32 bf16 lr=3.0e-04"


@pytest.mark.parametrize("name, choices, words", [("hidden_dim", (), "at least one"),
                                                  ("mult", (2, 2), "duplicate"),
                                                  ("sigma_ls", ((),), "non-empty"),
                                                  ("lr", (1e-3, 1e-4), "low < high")])
def test_impossible_choices_are_named(name, choices, words):
    assert words in KNOBS[name].problem(choices)
