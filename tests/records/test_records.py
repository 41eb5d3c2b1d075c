"""The trial record: what the search writes is what every view reads back; the knob registry's encodings."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
from optuna.trial import TrialState

from scent_search.records import (ATTRS, CALIBRATED, FEASIBLE, GIB, INFEASIBLE, KNOBS, MEASURED, PREDICTED, PRUNED,
                                  TrialRecord, knobs_label, legacy_constraints, peak_rows, set_constraint)

MIB = 2**20
WRITTEN = TrialRecord(peak_allocated_bytes=3 * 2**29, peak_reserved_bytes=2**31, peak_gib=2.0, constraint_bytes=2**31,
                      peak_source="predicted", calibration_margin=0.25, calibration_pairs=3,
                      reserved_allowance_bytes=2**29 - 3 * 2**27, budget_gib=1.5, feasible=False,
                      breakdown={"hv_lins": 2**30, "other": 2**29}, n_params=1234, backend="torch", device="cpu",
                      profile_seconds=0.1, worker="host:1", model_config={"hidden_dim": 64}, steps_done=0,
                      train_seconds=0.0, flops_per_step=2**60 + 1)


def test_what_is_written_is_read_back(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'r.db'}", direction="maximize")
    trial = study.ask()
    set_constraint(trial, "peak_memory", 0.5)
    WRITTEN.write(trial)
    study.tell(trial, state=TrialState.PRUNED)  # how the search ends an infeasible trial
    read = TrialRecord.from_trial(study.trials[0])
    assert {k: getattr(read, k) for k in ATTRS} == {k: getattr(WRITTEN, k) for k in ATTRS}
    assert read.constraints == {"peak_memory": 0.5} and read.status == INFEASIBLE and read.is_result
    assert study.trials[0].system_attrs["constraints"] == [0.5]  # the form optuna-dashboard 0.21 reads
    assert study.trials[0].values is None  # nothing any view could rank it by
    assert read.provenance == CALIBRATED
    assert [(r.name, r.bytes) for r in read.peak_rows] == [
        ("hv_lins", 2**30), ("other", 2**29), ("calibration margin", 3 * 2**27), ("reserved allowance", 2**27)]
    assert sum(r.bytes for r in read.peak_rows) == 2**31


def test_infeasible_trials_of_older_studies_completed_with_a_value_are_still_infeasible():
    trial = optuna.trial.create_trial(state=TrialState.COMPLETE, value=24.0, user_attrs={"feasible": False},
                                      system_attrs={"constraints:peak_memory": 0.5})
    r = TrialRecord.from_trial(trial)
    assert r.status == INFEASIBLE and r.psnr is None  # the bicubic value is no PSNR of the model


def test_a_pruned_trials_last_report_is_kept_apart_from_the_final_psnr():
    trial = optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values={0: 24.0, 1: 25.5},
                                      system_attrs={"constraints:peak_memory": -0.5})
    r = TrialRecord.from_trial(trial)
    assert (r.status, r.psnr, r.last_reported_psnr, r.pruned_at) == (PRUNED, None, 25.5, 2)
    done = optuna.trial.create_trial(state=TrialState.COMPLETE, value=26.0, intermediate_values={0: 24.0})
    assert TrialRecord.from_trial(done).status == FEASIBLE and TrialRecord.from_trial(done).pruned_at is None


# ---- the peak, itemised: every breakdown sums to the figure the constraint uses ----------------------


def test_predicted_rows_add_the_margin_and_the_allowance():
    breakdown = {"hv_lins": 60 * MIB, "encoder": 30 * MIB, "other": 10 * MIB}
    allocated, allowance = 100 * MIB, 256 * MIB
    constraint = int(allocated * 1.1) + allowance  # memory.MemoryProfile.constraint_bytes(0.10)
    rows = peak_rows(breakdown, source=PREDICTED, allocated_bytes=allocated, constraint_bytes=constraint,
                     margin=0.1, allowance_bytes=allowance, calibration_pairs=0)
    assert [r.name for r in rows] == ["encoder", "hv_lins", "other", "calibration margin", "reserved allowance"]
    assert sum(r.bytes for r in rows) == constraint
    assert rows[3].bytes == int(allocated * 1.1) - allocated and "default margin" in rows[3].note
    assert rows[4].bytes == allowance and "256 MiB" in rows[4].note
    assert [r.overhead for r in rows] == [False, False, False, True, True]
    calibrated = peak_rows(breakdown, source=PREDICTED, allocated_bytes=allocated, constraint_bytes=constraint,
                           margin=0.1, allowance_bytes=allowance, calibration_pairs=4)
    assert "from 4 calibration pair(s)" in calibrated[3].note


def test_measured_rows_add_the_allocator_reserve():
    rows = peak_rows({"hv_lins": 70 * MIB, "other": 30 * MIB}, source=MEASURED, allocated_bytes=100 * MIB,
                     constraint_bytes=140 * MIB)
    assert [(r.name, r.bytes) for r in rows][-1] == ("allocator reserve", 40 * MIB)
    assert "measured reserved - allocated" in rows[-1].note and sum(r.bytes for r in rows) == 140 * MIB


@pytest.mark.parametrize("breakdown, allocated", [({"hv_lins": 3, "other": 4}, 1000 * MIB),  # older: unscaled
                                                  ({"hv_lins": 7 * MIB}, None),  # no allocated bytes
                                                  ({}, 50 * MIB), (None, None), ({"x": math.nan}, 5 * MIB)])
def test_rows_of_older_or_odd_records_still_add_up(breakdown, allocated):
    rows = peak_rows(breakdown, source=PREDICTED, allocated_bytes=allocated, constraint_bytes=1 * GIB)
    assert sum(r.bytes for r in rows) == 1 * GIB
    assert rows[-1].name == "not itemised" and rows[-1].overhead


def test_a_measured_oom_is_counted_over_the_budget():
    rows = peak_rows({"other": 80 * GIB}, source=MEASURED, allocated_bytes=80 * GIB, constraint_bytes=81 * GIB,
                     oom=True)
    assert [r.name for r in rows] == ["other", "not itemised"] and "out of memory" in rows[-1].note
    assert sum(r.bytes for r in rows) == 81 * GIB


def test_record_rows_fall_back_to_peak_gib_without_constraint_bytes():
    r = TrialRecord(peak_gib=0.5, peak_allocated_bytes=2**28, breakdown={"hv_lins": 2**28}, peak_source="measured")
    assert sum(row.bytes for row in r.peak_rows) == 2**29 and r.provenance == MEASURED
    assert TrialRecord().peak_rows == [] and TrialRecord().provenance is None


def test_every_field_but_the_trials_own_is_an_attr():
    own = {"number", "state", "params", "constraints", "seconds", "retry_of", "pareto", "last_reported_psnr",
           "pruned_at", "psnr_mean", "psnr_std", "n_seeds"}
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
