"""What a trial costs on this machine, said before a CPU-only run starts: a study sized for a GPU would
otherwise start trials of many minutes each without a word.

`trial_cost(spec, fmap, timer, data)` times real training steps of a representative feasible config (the
median peak of the map's feasible configs) at the spec's [train] batch and queries, and scales the step
time to a trial's `steps`, capped by `seconds`. A study whose `seconds` cap is at most WARN_ABOVE_S cannot
cost more per trial and is not timed at all (the default study stays quiet and pays nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from scent_search.records import FeasibilityMap, knobs_label
from scent_search.search.space import TrialConfig, trial_config
from scent_search.search.spec import StudySpec

WARN_ABOVE_S = 120.0  # a trial estimated above this (seconds) is announced before the run starts
TIMED_STEPS = 3  # the first one warms up (and counts FLOPs) and is left out of the step time

StepTimer = Callable[[TrialConfig, Any], float]  # (config, loaded data) -> seconds per training step here


def time_step(cfg: TrialConfig, data: Any) -> float:
    """Seconds per training step of `cfg` on the CPU: `scent_search.train.train` for TIMED_STEPS steps at the
    trial's batch and queries, with the smallest validation (one crop, the smallest valid side)."""
    from scent_search.train import train

    quick = cfg.train.replace(steps=TIMED_STEPS, seconds=None, eval_points=1, val_crops=1, warmup_steps=0,
                              val_hr_size=4 * cfg.model.patch_size)  # x4 LR side: one patch
    return 1.0 / train(cfg.model, quick, data, "cpu", progress=False).steps_per_s


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


@dataclass(frozen=True)
class TrialCost:
    step_s: float  # one training step of `params` here
    steps: int
    cap_s: float | None  # [train] seconds
    params: Mapping[str, Any]  # the config that was timed

    @property
    def seconds(self) -> float:
        full = self.steps * self.step_s
        return full if self.cap_s is None else min(full, self.cap_s)

    def message(self, trials: int, spec_path: str | None) -> str:
        full = self.steps * self.step_s
        cut = f", cut to {duration(self.cap_s)} by [train] seconds" if self.cap_s is not None and self.cap_s < full \
            else ""
        return (f"A trial trains {self.steps} steps here at ~{self.step_s:.2g} s/step ({knobs_label(self.params)}): "
                f"about {duration(full)} per trial{cut}; {trials} trials ≈ {duration(trials * self.seconds)} on "
                f"this CPU. The memory question needs no training: scent-search map {spec_path or 'STUDY.toml'}")


def trial_cost(spec: StudySpec, fmap: FeasibilityMap, timer: StepTimer, data: Any) -> TrialCost | None:
    """The cost of a trial of the map's median feasible config; None when it cannot exceed WARN_ABOVE_S or
    nothing is feasible."""
    if spec.train.seconds is not None and spec.train.seconds <= WARN_ABOVE_S:
        return None
    feasible = sorted(fmap.feasible, key=lambda c: c.peak_gib)
    if not feasible:
        return None
    cell = feasible[len(feasible) // 2]
    return TrialCost(timer(trial_config(spec, cell.params), data), spec.train.steps, spec.train.seconds,
                     dict(cell.params))
