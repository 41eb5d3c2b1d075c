"""Trial records and the Pareto front of PSNR (maximise) against peak memory (minimise).

A `TrialRecord` is the flat view of one Optuna trial that every report output shares: the HTML table,
the figures, the CSV/JSON export and the dashboard notes. It reads the user attrs that `search/` writes
(docs/internals.md, "Trial records") and tolerates the ones that are missing, because a study is read
while it runs and older studies may lack newer attrs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

# The memory breakdown's components, in the order the figures stack them (DESIGN.md section 4).
COMPONENTS = ("encoder", "processor", "modulation_ca", "bandwidth_lins", "modulation_lins", "hv_lins",
              "skips", "parameters", "gradients", "optimizer_state", "other")

# A trial's status in the report. Every finished trial has exactly one; running ones are not plotted.
FEASIBLE, INFEASIBLE, PRUNED, FAILED, RUNNING = "feasible", "infeasible", "pruned", "failed", "running"
STATUSES = (FEASIBLE, INFEASIBLE, PRUNED, FAILED, RUNNING)

GIB = 2**30  # bytes per GiB: the unit of peak_gib and budget_gib

# Columns after the knobs, shared by the HTML table and the CSV/JSON export.
VALUE_COLUMNS = ("peak_gib", "peak_source", "psnr", "bicubic_psnr", "steps_per_s", "n_params")
LEAD_COLUMNS = ("trial", "status", "pareto")


def _finite(x: Any) -> float | None:
    """A float, or None for missing / non-numeric / NaN / inf (JSON and CSV get null, not NaN)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the report sees it. PSNR in dB, memory in GiB."""

    number: int
    state: str  # Optuna's state name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    status: str  # one of STATUSES
    params: Mapping[str, Any]
    peak_gib: float | None
    peak_source: str | None  # "measured" | "predicted"
    psnr: float | None  # final PSNR; for pruned trials the last reported one
    bicubic_psnr: float | None
    steps_per_s: float | None
    n_params: int | None
    constraints: Mapping[str, float]
    breakdown: Mapping[str, float] = field(default_factory=dict)  # component -> GiB
    fail_reason: str | None = None
    duplicate_of: int | None = None  # a re-suggested config whose results were copied from this trial
    pareto: bool = False

    @property
    def plottable(self) -> bool:
        """On the PSNR-vs-memory plot: finished and with a peak to place it on the memory axis."""
        return self.status != RUNNING and self.peak_gib is not None

    def row(self, param_names: Sequence[str]) -> dict[str, Any]:
        """The export/table row: LEAD_COLUMNS, then one column per knob, then VALUE_COLUMNS."""
        out: dict[str, Any] = {"trial": self.number, "status": self.status, "pareto": self.pareto}
        for name in param_names:
            out[name] = self.params.get(name)
        for name in VALUE_COLUMNS:
            out[name] = getattr(self, name)
        return out


def constraint_values(trial: FrozenTrial) -> dict[str, float]:
    """Constraint name -> value. Optuna 5's `constraints:<key>` attrs when there are any; else the legacy
    `constraints` list (keys "0", "1", ...), which is only a mirror of them for optuna-dashboard."""
    merged = trial.constraints  # Optuna merges both forms
    keyed = {k: v for k, v in merged.items() if f"constraints:{k}" in trial.system_attrs}
    return keyed or dict(merged)


def is_feasible(trial: FrozenTrial) -> bool:
    """Feasible iff every constraint value is <= 0 (`constraints:<key>` attrs or the legacy list).

    A trial without any constraint value falls back to its `feasible` user attr, and counts as feasible
    when that is missing too (an unconstrained study).
    """
    values = list(constraint_values(trial).values())
    if values:
        return all(v <= 0 for v in values)
    return bool(trial.user_attrs.get("feasible", True))


def _single_value(trial: FrozenTrial) -> float | None:
    values = trial.values
    return _finite(values[0]) if values is not None and len(values) == 1 else None


def _status(trial: FrozenTrial, feasible: bool) -> str:
    if trial.state == TrialState.PRUNED:
        return PRUNED
    if trial.state == TrialState.FAIL:
        return FAILED
    if trial.state != TrialState.COMPLETE:
        return RUNNING
    if not feasible:
        return INFEASIBLE
    # A feasible trial whose training ended early (OOM, NaN) but that was still completed.
    if trial.user_attrs.get("fail_reason") and _finite(trial.user_attrs.get("psnr")) is None:
        return FAILED
    return FEASIBLE


def _psnr(trial: FrozenTrial, status: str) -> float | None:
    attr = _finite(trial.user_attrs.get("psnr"))
    if attr is not None:
        return attr
    if status == FEASIBLE:
        return _single_value(trial)
    if status == PRUNED and trial.intermediate_values:
        return _finite(trial.intermediate_values[max(trial.intermediate_values)])
    return None  # infeasible trials are not trained: their objective value (if any) is no PSNR


def _breakdown_gib(raw: Any) -> dict[str, float]:
    """User attr `breakdown` (component -> bytes) in GiB, in COMPONENTS order, unknown names last."""
    if not isinstance(raw, Mapping):
        return {}
    names = [c for c in COMPONENTS if c in raw] + sorted(k for k in raw if k not in COMPONENTS)
    out = {}
    for name in names:
        b = _finite(raw[name])
        if b is not None:
            out[str(name)] = b / GIB
    return out


def record_of(trial: FrozenTrial) -> TrialRecord:
    ua = trial.user_attrs
    status = _status(trial, is_feasible(trial))
    n_params = _finite(ua.get("n_params"))
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        status=status,
        params=dict(trial.params),
        peak_gib=_finite(ua.get("peak_gib")),
        peak_source=ua.get("peak_source") if isinstance(ua.get("peak_source"), str) else None,
        psnr=_psnr(trial, status),
        bicubic_psnr=_finite(ua.get("bicubic_psnr")),
        steps_per_s=_finite(ua.get("steps_per_s")),
        n_params=int(n_params) if n_params is not None else None,
        constraints=constraint_values(trial),
        breakdown=_breakdown_gib(ua.get("breakdown")),
        fail_reason=str(ua["fail_reason"]) if ua.get("fail_reason") else None,
        duplicate_of=ua.get("duplicate_of") if isinstance(ua.get("duplicate_of"), int) else None,
    )


def non_dominated(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Pareto membership for (psnr, peak_gib) points: maximise psnr, minimise peak.

    A point is dominated iff another is at least as good in both and strictly better in one; equal
    points do not dominate each other (the same rule as Optuna's multi-objective `best_trials`).
    """
    # Sort by peak ascending, then PSNR descending: a point is non-dominated iff its PSNR beats every
    # PSNR seen at a strictly lower peak, and equals the best at its own peak.
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    member = [False] * len(points)
    best_below = -math.inf  # best PSNR at a strictly smaller peak
    i = 0
    while i < len(order):
        j = i
        peak = points[order[i]][1]
        while j < len(order) and points[order[j]][1] == peak:
            j += 1
        top = points[order[i]][0]  # best PSNR at this peak
        if top > best_below:
            for k in order[i:j]:
                member[k] = points[k][0] == top
        best_below = max(best_below, top)
        i = j
    return member


def records_of(trials: Iterable[FrozenTrial]) -> list[TrialRecord]:
    """All trials as records, with `pareto` set on the non-dominated completed feasible ones.

    A repeat of an already trained config (`duplicate_of`) is the same point as its original, which alone
    stands for it on the front.
    """
    records = [record_of(t) for t in trials]
    candidates = [i for i, r in enumerate(records) if r.status == FEASIBLE and r.psnr is not None
                  and r.peak_gib is not None and r.duplicate_of is None]
    member = non_dominated([(records[i].psnr, records[i].peak_gib) for i in candidates])
    for i, m in zip(candidates, member):
        if m:
            records[i] = dataclasses.replace(records[i], pareto=True)
    return records


def param_names(records: Sequence[TrialRecord]) -> list[str]:
    """Knob names in first-seen order across the trials (the search space's order)."""
    names: dict[str, None] = {}
    for r in records:
        for k in r.params:
            names.setdefault(k, None)
    return list(names)


def columns(records: Sequence[TrialRecord]) -> list[str]:
    return [*LEAD_COLUMNS, *param_names(records), *VALUE_COLUMNS]


def pareto_records(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The Pareto trials, by increasing peak memory."""
    return sorted((r for r in records if r.pareto), key=lambda r: (r.peak_gib, -r.psnr, r.number))


@dataclass(frozen=True)
class StudySummary:
    """What the report header shows about a study, read once from its storage."""

    name: str
    budget_gib: float | None
    target_shape: Mapping[str, Any]
    device: str | None
    counts: Mapping[str, int]  # status -> number of trials
    records: list[TrialRecord]

    @property
    def pareto(self) -> list[TrialRecord]:
        return pareto_records(self.records)


_SHAPE_KEYS = ("batch_size", "queries", "lr_size", "precision", "checkpointing", "optimizer")


def _target_shape(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The target shape from the `spec` study attr: a nested table if there is one, else top-level keys."""
    for key in ("target_shape", "target", "shape"):
        if isinstance(spec.get(key), Mapping):
            spec = spec[key]
            break
    return {k: spec[k] for k in _SHAPE_KEYS if k in spec}


def _budget(spec: Mapping[str, Any], records: Sequence[FrozenTrial]) -> float | None:
    budget = _finite(spec.get("budget_gib"))
    if budget is None:  # older studies: every trial carries the budget too
        budget = next((b for t in records if (b := _finite(t.user_attrs.get("budget_gib"))) is not None), None)
    return budget


def summarize(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> StudySummary:
    """The study's header facts and trial records (`trials`: already read ones, to read them once)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    attrs = study.user_attrs
    spec = attrs.get("spec") if isinstance(attrs.get("spec"), Mapping) else {}
    records = records_of(trials)
    counts = {s: sum(r.status == s for r in records) for s in STATUSES}
    device = attrs.get("device")
    return StudySummary(
        name=study.study_name,
        budget_gib=_budget(spec, trials),
        target_shape=_target_shape(spec),
        device=str(device) if device is not None else None,
        counts=counts,
        records=records,
    )
