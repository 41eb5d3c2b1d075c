"""The trial record: what a trial stores in Optuna, written once by the search and read back by every view.

`TrialRecord` is flat. Its *attr* fields are Optuna user attrs (docs/internals.md, "Trial records"):
`to_attrs()` gives the ones that are set, and the objective writes them in stages (a partial record per
stage). `TrialRecord.from_trial(frozen_trial)` reads them back, tolerating missing and malformed ones
(a study is read while it runs, and older studies lack newer attrs), and adds what Optuna itself knows
of the trial (number, state, params, constraint values, duration, retry origin, a pruned trial's last report).

To add a recorded value, add one field with `attr(kind)`: it is written, read back and coerced from then on.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from scent_search import compat
from scent_search.records.names import (CONSTRAINT_PREFIX, FAILED, FEASIBLE, GIB, INFEASIBLE,
                                        LEGACY_CONSTRAINTS_KEY, NOT_A_RESULT, PRUNED, RUNNING)
from scent_search.records.peak import PeakRow, peak_rows, provenance


def finite(x: Any) -> float | None:
    """A float, or None for missing / non-numeric / NaN / inf (JSON and CSV get null, not NaN)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _integer(x: Any) -> int | None:
    if isinstance(x, int) and not isinstance(x, bool):
        return x
    x = finite(x)
    return int(x) if x is not None and x == int(x) else None


# kind -> coercion of a stored value (None where it does not fit)
_KINDS: dict[type, Callable[[Any], Any]] = {
    float: finite,
    int: _integer,
    bool: lambda x: x if isinstance(x, bool) else None,
    str: lambda x: x if isinstance(x, str) and x else None,
    dict: lambda x: dict(x) if isinstance(x, Mapping) else None,
}


def attr(kind: type, *, identity: bool = False) -> Any:
    """A field stored as the Optuna user attr of its name, holding a `kind` (float, int, bool, str, dict).
    `identity`: set when the trial is enqueued, it says what the trial is (not what it measured), so a retry
    of the trial keeps it (`TrialRecord.identity_attrs`)."""
    return field(default=None, metadata={"attr": kind, "identity": identity})


@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    """One trial. PSNR in dB, memory in bytes or GiB as named, seconds."""

    # -- what Optuna knows of the trial (from_trial); never written as user attrs --
    number: int | None = None
    state: str | None = None  # Optuna's state name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    params: Mapping[str, Any] = field(default_factory=dict)
    constraints: Mapping[str, float] = field(default_factory=dict)
    seconds: float | None = None  # start to finish
    retry_of: int | None = None  # the trial a dead worker left, which this one retries
    pareto: bool = False  # set by the report's Pareto extraction
    last_reported_psnr: float | None = None  # a pruned trial: the PSNR of the last eval point it reached
    pruned_at: int | None = None  # a pruned trial: that eval point, counted from 1
    # set by `records.with_seed_stats` on the trial that stands for its config (the lowest-numbered trained one):
    psnr_mean: float | None = None  # mean final PSNR over the config's seeds (dB)
    psnr_std: float | None = None  # their sample std (dB); None with one seed
    n_seeds: int | None = None  # seeds the config was trained with to the end

    # -- user attrs: the peak, before anything can fail --
    peak_allocated_bytes: int | None = attr(int)
    peak_reserved_bytes: int | None = attr(int)  # measured, or allocated + the stated margin (predicted)
    peak_gib: float | None = attr(float)  # what the constraint compares with the budget
    constraint_bytes: int | None = attr(int)  # the same figure in bytes: what `peak_rows` sum to
    peak_source: str | None = attr(str)  # measured | predicted
    calibration_margin: float | None = attr(float)  # predicted: the margin on allocated bytes it used
    calibration_pairs: int | None = attr(int)  # predicted: the calibration pairs that margin came from (0: default)
    reserved_allowance_bytes: int | None = attr(int)  # predicted: the fixed allowance it added
    budget_gib: float | None = attr(float)
    feasible: bool | None = attr(bool)  # from_trial: decided by the constraint values where there are any
    breakdown: Mapping[str, int] | None = attr(dict)  # component -> bytes (BREAKDOWN_KEYS), summing to allocated
    n_params: int | None = attr(int)
    backend: str | None = attr(str)  # processor backend: torch | mamba_ssm
    device: str | None = attr(str)
    profile_seconds: float | None = attr(float)
    worker: str | None = attr(str)  # host:pid
    model_config: Mapping[str, Any] | None = attr(dict)  # ModelConfig.to_dict()
    # -- user attrs: training --
    psnr: float | None = attr(float)  # the final x4 PSNR of a trial trained to the end (from_trial: else the value)
    bicubic_psnr: float | None = attr(float)
    steps_per_s: float | None = attr(float)
    samples_per_s: float | None = attr(float)
    flops_per_step: int | None = attr(int)
    steps_done: int | None = attr(int)  # 0: not trained
    train_seconds: float | None = attr(float)
    fail_reason: str | None = attr(str)  # oom, nan (results); interrupted, error (NOT_A_RESULT)
    fail_message: str | None = attr(str)
    duplicate_of: int | None = attr(int)  # a re-suggested config: training results copied from this trial
    # -- user attrs: seeds (docs/search.md, "Repeats") --
    train_seed: int | None = attr(int, identity=True)  # TrainConfig.seed it trained with (model init, data stream)
    repeat_of: int | None = attr(int, identity=True)  # a repeat: the original trial whose config it retrains

    # ---- writing ------------------------------------------------------------------------------------

    def to_attrs(self) -> dict[str, Any]:
        """The user attrs of the fields that are set (JSON-able)."""
        out = {}
        for f in _ATTR_FIELDS:
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out

    def write(self, trial: optuna.Trial) -> None:
        """Store `to_attrs()` on a running trial (one transaction)."""
        compat.set_trial_user_attrs(trial, self.to_attrs())

    # ---- reading ------------------------------------------------------------------------------------

    @classmethod
    def from_attrs(cls, user_attrs: Mapping[str, Any], **known: Any) -> "TrialRecord":
        """The attr fields from `user_attrs` (coerced; None where missing or malformed), plus `known` fields."""
        values = {f.name: _KINDS[f.metadata["attr"]](user_attrs.get(f.name)) for f in _ATTR_FIELDS}
        return cls(**{**values, **known})

    @classmethod
    def identity_attrs(cls, user_attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The identity attrs among `user_attrs` (coerced, set ones only): what a retry of the trial keeps."""
        record = cls.from_attrs(user_attrs)
        return {f.name: getattr(record, f.name) for f in _ATTR_FIELDS
                if f.metadata["identity"] and getattr(record, f.name) is not None}

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> "TrialRecord":
        system = trial.system_attrs
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else None
        record = cls.from_attrs(
            trial.user_attrs, number=trial.number, state=trial.state.name, params=dict(trial.params),
            constraints=constraint_values(trial), seconds=seconds,
            retry_of=_integer(system.get("failed_trial")))
        feasible = is_feasible(record.constraints, record.feasible)
        record = dataclasses.replace(record, feasible=feasible)
        if record.status == PRUNED:  # its last report is no final PSNR: it is kept apart from `psnr`
            last = max(trial.intermediate_values, default=None)
            record = dataclasses.replace(
                record, psnr=None, pruned_at=None if last is None else last + 1,
                last_reported_psnr=None if last is None else finite(trial.intermediate_values[last]))
        elif record.psnr is None and record.status == FEASIBLE and trial.values is not None \
                and len(trial.values) == 1:  # an unrecorded PSNR: the objective value of a trained trial
            record = dataclasses.replace(record, psnr=finite(trial.values[0]))
        return record

    # ---- what it means ------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """FEASIBLE, INFEASIBLE, PRUNED, FAILED or RUNNING (STATUSES).

        An infeasible trial is PRUNED before training (older studies: COMPLETE with the bicubic PSNR as its
        value); either way its status is INFEASIBLE, decided by the constraint, never by the state."""
        if self.state not in (TrialState.COMPLETE.name, TrialState.PRUNED.name, TrialState.FAIL.name):
            return RUNNING
        if self.feasible is False and self.state != TrialState.FAIL.name:
            return INFEASIBLE
        if self.state == TrialState.PRUNED.name:
            return PRUNED
        if self.state == TrialState.FAIL.name:
            return FAILED
        if self.fail_reason and self.psnr is None:  # completed, but its training ended early (OOM, NaN)
            return FAILED
        return FEASIBLE

    @property
    def is_result(self) -> bool:
        """A result about its config (and seed): COMPLETE (feasible or not), PRUNED, or FAIL with a training
        fail_reason (oom, nan). Anything else is retried or replaced."""
        if self.state in (TrialState.COMPLETE.name, TrialState.PRUNED.name):
            return True
        return self.state == TrialState.FAIL.name and bool(self.fail_reason) and self.fail_reason not in NOT_A_RESULT

    @property
    def counts_toward_target(self) -> bool:
        """A result of the exploration: `n_trials` counts these. A repeat (another seed of a config already
        explored) is a result but does not count: `n_trials` is the number of configs explored."""
        return self.is_result and self.repeat_of is None

    @property
    def plottable(self) -> bool:
        """On the PSNR-vs-memory plot: finished and with a peak to place it on the memory axis."""
        return self.status != RUNNING and self.peak_gib is not None

    @property
    def provenance(self) -> str | None:
        """Where the peak comes from: measured, calibrated (predicted with a margin from calibration pairs),
        predicted; None when the trial has no peak."""
        return provenance(self.peak_source, self.calibration_pairs)

    @property
    def peak_rows(self) -> list[PeakRow]:
        """The peak the constraint uses, itemised (records.peak_rows): components, then what they do not
        cover; the rows sum to `constraint_bytes` (else `peak_gib` in bytes). [] without a peak."""
        total = self.constraint_bytes if self.constraint_bytes is not None else \
            None if self.peak_gib is None else round(self.peak_gib * GIB)
        if total is None:
            return []
        return peak_rows(self.breakdown, source=self.peak_source, allocated_bytes=self.peak_allocated_bytes,
                         constraint_bytes=total, margin=self.calibration_margin,
                         allowance_bytes=self.reserved_allowance_bytes, calibration_pairs=self.calibration_pairs,
                         oom=self.feasible is False and self.fail_reason == "oom")


_ATTR_FIELDS = tuple(f for f in dataclasses.fields(TrialRecord) if "attr" in f.metadata)
ATTRS = tuple(f.name for f in _ATTR_FIELDS)  # every user attr a trial may carry


# ---- the constraint, in both of its stored forms -------------------------------------------------


def constraint_values(trial: FrozenTrial) -> dict[str, float]:
    """Constraint name -> value. Optuna 5's `constraints:<key>` attrs when there are any; else the legacy
    `constraints` list (keys "0", "1", ...), which is only a mirror of them for optuna-dashboard."""
    merged = trial.constraints  # Optuna merges both forms
    keyed = {k: v for k, v in merged.items() if f"{CONSTRAINT_PREFIX}{k}" in trial.system_attrs}
    return keyed or dict(merged)


def is_feasible(constraints: Mapping[str, float], recorded: bool | None = None) -> bool:
    """Feasible iff every constraint value is <= 0. Without any, the recorded `feasible` attr decides, and
    a trial without that either counts as feasible (an unconstrained study)."""
    if constraints:
        return all(v <= 0 for v in constraints.values())
    return True if recorded is None else recorded


def legacy_constraints(system_attrs: Mapping[str, Any]) -> list[float] | None:
    """The legacy list mirroring the per-key constraints, ordered by key; None if there are none."""
    keyed = {k[len(CONSTRAINT_PREFIX):]: v for k, v in system_attrs.items() if k.startswith(CONSTRAINT_PREFIX)}
    return [float(keyed[k]) for k in sorted(keyed)] if keyed else None


def set_constraint(trial: optuna.Trial, name: str, value: float) -> None:
    """`trial.set_constraint(name, value)` on a running trial, and the legacy `constraints` list that
    optuna-dashboard 0.21 displays (it reads nothing else)."""
    trial.set_constraint(name, value)
    legacy = legacy_constraints(compat.stored_trial(trial.study, trial).system_attrs)
    compat.set_trial_system_attr(trial, LEGACY_CONSTRAINTS_KEY, legacy)


def mirror_legacy_constraints(study: optuna.Study) -> int:
    """Write the legacy `constraints` list of every trial of `study` whose list is missing or stale, finished
    ones included (straight into the RDB table: Optuna's API refuses to update a finished trial). One read
    and at most one write. Returns the number of trials written; 0 for a storage that is no RDB.
    Raises SQLAlchemyError."""
    rdb = compat.rdb_storage(compat.study_storage(study))
    if rdb is None:
        return 0
    todo: dict[int, list[float]] = {}
    for tid, attrs in compat.read_trial_system_attrs(rdb, compat.study_id(study), LEGACY_CONSTRAINTS_KEY).items():
        value = legacy_constraints(attrs)
        if value is not None and attrs.get(LEGACY_CONSTRAINTS_KEY) != value:
            todo[tid] = value
    if todo:
        compat.upsert_trial_system_attr(rdb, LEGACY_CONSTRAINTS_KEY, todo)
    return len(todo)
