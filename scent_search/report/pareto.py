"""The Pareto front of PSNR (maximise) against peak memory (minimise), and a study's summary.

Every report output (HTML table, figures, CSV/JSON export, dashboard notes, `studies` / `best`, the end of
`run`) reads trials as `records.TrialRecord`s, with `pareto` and the seed statistics (`psnr_mean`,
`psnr_std`, `n_seeds`) set here. The front and the best are over configs, at their mean PSNR over seeds
(`records.configs_of`): a repeat (`repeat_of`) or a copy (`duplicate_of`) is never a point of its own.
`noise_line` and `pareto_noise` say, once for the terminal and the report, what is below the seed noise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial

from scent_search.records import (DEVICE_ATTR, FEASIBLE, NOISE_MULTIPLE, OBJECTIVES, SPEC_ATTR, STATUSES,
                                  ConfigResult, Noise, TrialRecord, best_config, configs_of, finite, noise_of,
                                  param_order, with_seed_stats)

# Columns after the knobs, shared by the HTML table and the CSV/JSON export. `psnr` is the final PSNR of a
# trial trained to the end; a pruned trial's last report is in its own columns (and eval point, from 1).
PRUNED_COLUMNS = ("last_reported_psnr", "pruned_at")  # empty for every trial that was not pruned
# A config's statistics over its seeds, on the row of the trial that stands for it (records.with_seed_stats).
SEED_COLUMNS = ("psnr_mean", "psnr_std", "n_seeds")
VALUE_COLUMNS = ("peak_gib", "peak_source", "psnr", *SEED_COLUMNS, *PRUNED_COLUMNS, "bicubic_psnr", "steps_per_s",
                 "n_params", "train_seed", "repeat_of")
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
    """All trials as records, with the seed statistics set on each trained feasible config's standing
    trial, and `pareto` on those whose config is non-dominated at its mean PSNR.

    A copy of an already trained config (`duplicate_of`) and a repeat with another seed (`repeat_of`) are
    the same config as their original, which alone stands for it on the front.
    """
    records = [TrialRecord.from_trial(t) for t in trials]
    return mark_pareto(with_seed_stats(records))


def mark_pareto(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """`pareto` set on the standing trials (`psnr_mean` set) of the non-dominated configs."""
    records = list(records)
    candidates = [i for i, r in enumerate(records) if r.psnr_mean is not None and r.peak_gib is not None]
    member = non_dominated([(records[i].psnr_mean, records[i].peak_gib) for i in candidates])
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
    """The Pareto trials (each standing for its config), by increasing peak memory."""
    return sorted((r for r in records if r.pareto), key=lambda r: (r.peak_gib, -r.psnr_mean, r.number))


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
    configs: list[ConfigResult] = dataclasses.field(default_factory=list)  # trained feasible configs
    repeats: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the spec's [repeats] (top_k, seeds)

    @property
    def pareto(self) -> list[TrialRecord]:
        return pareto_records(self.records)

    @property
    def noise(self) -> Noise:
        return noise_of(self.configs)

    @property
    def best(self) -> ConfigResult | None:
        """The trained feasible config with the highest mean PSNR."""
        return best_config(self.configs)

    def config(self, number: int) -> ConfigResult | None:
        """The config that trial `number` stands for (None: it stands for none)."""
        return next((c for c in self.configs if c.number == number), None)

    @property
    def n_repeats(self) -> int:
        return sum(r.repeat_of is not None for r in self.records)

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
    records = [TrialRecord.from_trial(t) for t in trials]
    configs = configs_of(records)
    records = mark_pareto(with_seed_stats(records))
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
        configs=configs,
        repeats=dict(spec["repeats"]) if isinstance(spec.get("repeats"), Mapping) else {},
    )


# ---- the seed noise, in words (the end of `run` and the report) -------------------------------------------


def _repeats_off(summary: StudySummary) -> bool:
    top_k = summary.repeats.get("top_k")
    return not (isinstance(top_k, int) and top_k > 0 and summary.repeats.get("seeds", 1))


def noise_unknown(summary: StudySummary) -> str:
    """Why the noise is unknown."""
    if _repeats_off(summary):
        return "noise unknown: [repeats] is off"
    return "noise unknown: no config has been trained with a second seed yet"


def noise_line(summary: StudySummary) -> str:
    """PSNR spread: best − worst = 1.84 dB over 10 trained configs; noise (seed-to-seed std, 3 configs × 3
    seeds) = 0.21 dB: the spread is 8.8× the noise"""
    noise, configs = summary.noise, summary.configs
    if not configs:
        return "PSNR spread: no trained feasible config yet"
    if len(configs) == 1:
        spread = "PSNR spread: one trained config, nothing to compare"
    else:
        spread = f"PSNR spread: best − worst = {noise.spread:.2f} dB over {len(configs)} trained configs"
    if noise.std is None:
        return f"{spread}; {noise_unknown(summary)}"
    line = f"{spread}; noise (seed-to-seed std, {noise.describe()}) = {noise.std:.2f} dB"
    if len(configs) == 1:
        return line
    best, worst = max(configs, key=lambda c: c.mean), min(configs, key=lambda c: c.mean)
    if noise.ratio is not None:
        line += f": the spread is {noise.ratio:.1f}× the noise"
    if noise.below(best, worst):
        line += " (best and worst are within the noise of each other)"
    return line


def near_best(summary: StudySummary) -> set[int]:
    """Standing trial numbers of the configs whose mean is below the noise from the best's (the best
    included); empty when the noise is unknown."""
    best, noise = summary.best, summary.noise
    if best is None or noise.std is None:
        return set()
    return {c.number for c in summary.configs if c.number == best.number or noise.below(best, c)}


RULE = f"|Δ| < {NOISE_MULTIPLE:g}σ·√(1/n₁ + 1/n₂)"  # "below the noise" (records.Noise.below)


def pareto_noise(summary: StudySummary) -> str:
    """Which differences between neighbouring Pareto configs (by increasing peak) are below the noise."""
    front = [summary.config(r.number) for r in summary.pareto]
    noise = summary.noise
    if len(front) < 2:
        return ""
    if noise.std is None:
        return (f"The seed-to-seed noise is unknown ({noise_unknown(summary).removeprefix('noise unknown: ')}): no "
                "difference between these configs can be told from seed noise.")
    below, above = [], []
    for a, b in zip(front, front[1:]):
        text = f"#{a.number} → #{b.number} ({b.mean - a.mean:+.2f} dB, limit {noise.threshold(a.n, b.n):.2f} dB)"
        (below if noise.below(a, b) else above).append(text)
    parts = [f"Seed-to-seed noise σ = {noise.std:.2f} dB ({noise.describe()}); a difference is below the noise when "
             f"{RULE}."]
    parts.append("Below the noise: " + "; ".join(below) + "." if below else
                 "No difference between neighbouring Pareto configs is below the noise.")
    if above:
        parts.append("Above it: " + "; ".join(above) + ".")
    return " ".join(parts)
