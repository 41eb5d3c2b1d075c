"""The Pareto front of PSNR (maximise) against peak memory (minimise), and a study's summary.

Every report output (HTML table, figures, CSV/JSON export, dashboard notes, `studies` / `best`, the end of
`run`) reads trials as `records.TrialRecord`s, with `pareto` set here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial

from scent_search.records import (DEVICE_ATTR, FEASIBLE, OBJECTIVES, SPEC_ATTR, STATUSES, TrialRecord, finite,
                                  param_order)

# Columns after the knobs, shared by the HTML table and the CSV/JSON export. `psnr` is the final PSNR of a
# trial trained to the end; a pruned trial's last report is in its own columns (and eval point, from 1).
PRUNED_COLUMNS = ("last_reported_psnr", "pruned_at")  # empty for every trial that was not pruned
VALUE_COLUMNS = ("peak_gib", "peak_source", "psnr", *PRUNED_COLUMNS, "bicubic_psnr", "steps_per_s", "n_params")
LEAD_COLUMNS = ("trial", "status", "pareto")


def row(r: TrialRecord, param_names: Sequence[str]) -> dict[str, Any]:
    """The export/table row of a trial: LEAD_COLUMNS, then one column per knob, then VALUE_COLUMNS."""
    out: dict[str, Any] = {"trial": r.number, "status": r.status, "pareto": r.pareto}
    for name in param_names:
        out[name] = r.params.get(name)
    for name in VALUE_COLUMNS:
        out[name] = getattr(r, name)
    return out


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
    records = [TrialRecord.from_trial(t) for t in trials]
    candidates = [i for i, r in enumerate(records) if r.status == FEASIBLE and r.psnr is not None
                  and r.peak_gib is not None and r.duplicate_of is None]
    member = non_dominated([(records[i].psnr, records[i].peak_gib) for i in candidates])
    for i, m in zip(candidates, member):
        if m:
            records[i] = dataclasses.replace(records[i], pareto=True)
    return records


def param_names(records: Sequence[TrialRecord]) -> list[str]:
    """The trials' knob names in the registry's order (records.KNOBS), other params after them."""
    names: dict[str, None] = {}
    for r in records:
        for k in r.params:
            names.setdefault(k, None)
    return param_order(list(names))


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
    objectives: Mapping[str, str] = dataclasses.field(default_factory=dict)  # metric name -> maximize | minimize
    eval_points: int | None = None  # PSNR reports per trained trial (train.eval_points)

    @property
    def pareto(self) -> list[TrialRecord]:
        return pareto_records(self.records)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def provenances(self) -> dict[str, int]:
        """measured / calibrated / predicted -> number of finished trials whose peak comes from there."""
        out: dict[str, int] = {}
        for r in self.records:
            if r.plottable and r.provenance:
                out[r.provenance] = out.get(r.provenance, 0) + 1
        return out


_SHAPE_KEYS = ("batch_size", "queries", "lr_size", "precision", "checkpointing", "optimizer")


def _target_shape(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The target shape from the `spec` study attr: a nested table if there is one, else top-level keys."""
    for key in ("target_shape", "target", "shape"):
        if isinstance(spec.get(key), Mapping):
            spec = spec[key]
            break
    return {k: spec[k] for k in _SHAPE_KEYS if k in spec}


def _budget(spec: Mapping[str, Any], records: Sequence[TrialRecord]) -> float | None:
    budget = finite(spec.get("budget_gib"))
    if budget is None:  # older studies: every trial carries the budget too
        budget = next((r.budget_gib for r in records if r.budget_gib is not None), None)
    return budget


def summarize(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> StudySummary:
    """The study's header facts and trial records (`trials`: already read ones, to read them once)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    attrs = study.user_attrs
    spec = attrs.get(SPEC_ATTR) if isinstance(attrs.get(SPEC_ATTR), Mapping) else {}
    records = records_of(trials)
    counts = {s: sum(r.status == s for r in records) for s in STATUSES}
    device = attrs.get(DEVICE_ATTR)
    directions = [d.name.lower() for d in study.directions]
    names = study.metric_names or [OBJECTIVES["psnr"][1]] + [f"objective {i}" for i in range(1, len(directions))]
    train = spec.get("train") if isinstance(spec.get("train"), Mapping) else {}
    eval_points = train.get("eval_points")
    return StudySummary(
        name=study.study_name,
        budget_gib=_budget(spec, records),
        target_shape=_target_shape(spec),
        device=str(device) if device is not None else None,
        counts=counts,
        records=records,
        objectives=dict(zip(names, directions)),
        eval_points=eval_points if isinstance(eval_points, int) and not isinstance(eval_points, bool) else None,
    )
