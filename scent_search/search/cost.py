"""What a trial costs on this machine, said before a CPU-only run starts: a study sized for a GPU would
otherwise start trials of many minutes each without a word.

`trial_cost(spec, probe, timer)` times real training steps (memory.step_seconds) of a representative config
(the middle choice of each searched knob) at the spec's [train] queries, and scales the step time to a
trial's `steps`, capped by `seconds`. It runs before the feasibility map (which can take minutes for a
large space), so it is said first. A GPU-sized step may not fit this machine's memory: the batch is cut until the step's
predicted peak is at most TIMING_MEMORY_BYTES, and the time scaled back to the [train] batch (a CPU step is
compute-bound, linear in the batch). A study whose `seconds` cap is at most WARN_ABOVE_S cannot cost more
per trial and is not timed at all (the default study stays quiet and pays nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from scent_search.config import TargetShape
from scent_search.records import GIB, KNOBS, knobs_label
from scent_search.search.probe import Probe
from scent_search.search.space import TrialConfig, trial_config
from scent_search.search.spec import StudySpec

WARN_ABOVE_S = 120.0  # a trial estimated above this (seconds) is announced before the run starts
TIMING_MEMORY_BYTES = 2 * GIB  # the timed step's predicted peak stays under this (a laptop's spare RAM)

StepTimer = Callable[[TrialConfig], float]  # config -> seconds per training step at its [train] shape, here


def time_step(cfg: TrialConfig) -> float:
    """Seconds per training step of `cfg` at its [train] batch and queries on this CPU (memory.step_seconds:
    the step itself, without the first step's FLOP count that `train` adds, which can take a minute)."""
    from scent_search.memory import step_seconds

    return step_seconds(cfg.model, _train_step_shape(cfg), "cpu", steps=1)


def _train_step_shape(cfg: TrialConfig) -> TargetShape:
    """The step a trial trains on the CPU: [train] batch, queries and LR side, fp32 (autocast is CUDA only)."""
    return TargetShape(batch_size=cfg.train.batch_size, queries=cfg.train.sample_q, lr_size=cfg.train.lr_size,
                       checkpointing=cfg.train.checkpointing)


def representative(spec: StudySpec) -> dict[str, Any]:
    """The middle choice of each searched discrete knob (Optuna params)."""
    out = {}
    for name, knob in KNOBS.items():
        choices = spec.space[name]
        if choices is not None and not knob.log_range:
            out[name] = knob.distribution(choices).choices[len(choices) // 2]
    return out


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


@dataclass(frozen=True)
class TrialCost:
    step_s: float  # one training step of `params` at the [train] batch, here
    steps: int
    cap_s: float | None  # [train] seconds
    params: Mapping[str, Any]  # the config that was timed
    timed_batch: int  # the batch it was timed at (scaled to `batch`)
    batch: int

    @property
    def seconds(self) -> float:
        full = self.steps * self.step_s
        return full if self.cap_s is None else min(full, self.cap_s)

    def message(self, trials: int, spec_path: str | None) -> str:
        full = self.steps * self.step_s
        cut = f", cut to {duration(self.cap_s)} by [train] seconds" if self.cap_s is not None and self.cap_s < full \
            else ""
        scaled = f"; timed at batch {self.timed_batch}, scaled to {self.batch}" \
            if self.timed_batch != self.batch else ""
        step = f"{self.step_s:.0f}" if self.step_s >= 10 else f"{self.step_s:.2g}"
        return (f"A trial trains {self.steps} steps here at ~{step} s/step ({knobs_label(self.params)}"
                f"{scaled}): about {duration(full)} per trial{cut}; {trials} trials ≈ "
                f"{duration(trials * self.seconds)} on this CPU. The memory question needs no training: "
                f"scent-search map {spec_path or 'STUDY.toml'}")


def trial_cost(spec: StudySpec, probe: Probe, timer: StepTimer) -> TrialCost | None:
    """The cost of a trial of the representative config here; None when it cannot exceed WARN_ABOVE_S."""
    if spec.train.seconds is not None and spec.train.seconds <= WARN_ABOVE_S:
        return None
    params = representative(spec)
    cfg = trial_config(spec, params)
    batch = cfg.train.batch_size
    peak = probe(cfg.model, _train_step_shape(cfg)).allocated_bytes
    timed_batch = max(1, min(batch, math.floor(batch * TIMING_MEMORY_BYTES / max(peak, 1))))
    step_s = timer(TrialConfig(cfg.model, cfg.shape, cfg.train.replace(batch_size=timed_batch))) * batch / timed_batch
    return TrialCost(step_s, spec.train.steps, spec.train.seconds, params, timed_batch, batch)
