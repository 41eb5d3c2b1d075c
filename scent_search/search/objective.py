"""One trial, in the order of docs/design.md, "The search service":

1. suggest a config;
2. get its peak memory at the target shape (profile cache: measured on CUDA, else predicted);
3. `set_constraint("peak_memory", peak_gib - budget_gib)` before anything can fail, with the legacy
   `constraints` list optuna-dashboard 0.21 reads (`records.set_constraint`), then the peak's record;
4. infeasible: no training. The trial ends PRUNED with no value and no intermediate value, so that no
   view ranks or plots it by a PSNR it never measured: optuna-dashboard ranks and plots only values,
   Optuna's `best_trial` only COMPLETE trials, while TPE still reads it as infeasible (Optuna 5 checks the
   constraint before the state). Its record keeps the peak, the constraint and `feasible = false`;
5. feasible: train, report the x4 PSNR at each eval point (pruning), return the final PSNR (multi-objective
   studies: the final PSNR and the peak in GiB, no reports: Optuna cannot prune them);
   A config already trained to completion in this study with the same training seed is not trained
   again: its results are copied, with user attr `duplicate_of` (training is deterministic per config
   and seed). A repeat (search/repeats.py: enqueued with `repeat_of` and `train_seed`) trains with its
   `train_seed`, reports no intermediate PSNR and is never pruned; every other trial trains with the
   spec's `[train] seed`. The seed is recorded as `train_seed`.
6. OOM / NaN in training: user attr `fail_reason`, then `TrainingFailed` propagates and the runner
   marks the trial FAIL; the study goes on.

Every user attr is written as a (partial) `records.TrialRecord`: its fields are the attrs' one definition.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from typing import Any, Callable

import optuna
import torch
from optuna.trial import TrialState

from scent_search.errors import NonFiniteLoss, OutOfMemory, TrainingFailed
from scent_search.records import CONSTRAINT_NAME, GIB, TrialRecord, set_constraint
from scent_search.search.probe import Peak, Probe
from scent_search.search.space import TrialConfig, suggest
from scent_search.search.spec import StudySpec

TrainFn = Callable[..., Any]  # train(model_cfg, train_cfg, data, device, on_eval=) -> TrainResult


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _default_train() -> TrainFn:
    from scent_search.train import train

    return train


class Objective:
    """The study's objective, bound to one worker's device, peak probe and training function.

    `train_fn` defaults to `scent_search.train.train`; tests inject a fake to simulate OOM / NaN and count
    training runs. The data split is loaded once per worker, on first need.
    """

    def __init__(self, spec: StudySpec, *, device: str, probe: Probe, train_fn: TrainFn | None = None,
                 data: Any = None, progress: bool = False) -> None:
        self.spec = spec
        self.device = device
        self.probe = probe
        self.train_fn = train_fn or _default_train()
        self.progress = progress
        self._data = data
        self.worker = worker_id()

    # -- data -------------------------------------------------------------------------------------

    @property
    def data(self) -> Any:
        if self._data is None:
            from scent_search.data import load_data

            self._data = load_data(None if self.spec.data == "default" else self.spec.data, self.spec.train)
        return self._data

    # -- the trial --------------------------------------------------------------------------------

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        cfg = suggest(trial, self.spec)
        given = TrialRecord.from_attrs(trial.user_attrs)  # a repeat's identity, set when it was enqueued
        repeat = given.repeat_of is not None
        seed = given.train_seed if given.train_seed is not None else self.spec.train.seed
        cfg = dataclasses.replace(cfg, train=cfg.train.replace(seed=seed))
        peak_gib = self._constrain(trial, cfg, self.probe(cfg.model, cfg.shape))
        if peak_gib > self.spec.budget_gib:
            TrialRecord(steps_done=0, train_seconds=0.0).write(trial)
            raise optuna.TrialPruned(f"infeasible: peak {peak_gib:.3f} GiB > budget {self.spec.budget_gib:g} GiB, "
                                     "not trained")
        previous = self._trained_twin(trial, seed, self.spec.train.seed)
        psnr = self._reuse(trial, previous) if previous is not None else self._train(trial, cfg, prune=not repeat)
        values = [{"psnr": psnr, "peak_memory": peak_gib}[name] for name in self.spec.objectives]
        return values[0] if len(values) == 1 else values

    # Copied from a completed twin: training is deterministic for a config (fixed seed and data), so a
    # re-suggested config would only spend its training time again to get the same PSNR.
    _REUSED = ("psnr", "bicubic_psnr", "steps_per_s", "samples_per_s", "flops_per_step", "n_params", "backend",
               "steps_done", "train_seconds", "train_seed")

    @staticmethod
    def _trained_twin(trial: optuna.Trial, seed: int, spec_seed: int) -> TrialRecord | None:
        """A completed trial of the same config trained with the same seed (no recorded seed: the spec's)."""
        params = trial.params
        for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.params == params and t.number != trial.number:
                twin = TrialRecord.from_attrs(t.user_attrs, number=t.number)
                twin_seed = twin.train_seed if twin.train_seed is not None else spec_seed
                if twin.psnr is not None and twin_seed == seed:  # trained (or copied from one that was)
                    return twin
        return None

    def _reuse(self, trial: optuna.Trial, twin: TrialRecord) -> float:
        TrialRecord(duplicate_of=twin.number, **{k: getattr(twin, k) for k in self._REUSED}).write(trial)
        return float(twin.psnr)

    def _constrain(self, trial: optuna.Trial, cfg: TrialConfig, peak: Peak) -> float:
        """Set the constraint and write the peak's record; returns the peak in GiB the constraint uses."""
        budget = self.spec.budget_gib
        constraint_bytes = peak.constraint_bytes
        if peak.oom:  # a measured OOM: at least the device is full, and never feasible
            constraint_bytes = max(constraint_bytes, int((budget + 2**-10) * GIB))
        peak_gib = constraint_bytes / GIB
        set_constraint(trial, CONSTRAINT_NAME, peak_gib - budget)  # first write: nothing has failed yet
        TrialRecord(peak_allocated_bytes=peak.allocated_bytes, peak_reserved_bytes=peak.reserved_bytes,
                    peak_gib=peak_gib, constraint_bytes=constraint_bytes, peak_source=peak.source,
                    calibration_margin=peak.margin, calibration_pairs=peak.calibration_pairs,
                    reserved_allowance_bytes=peak.allowance_bytes, budget_gib=budget, feasible=peak_gib <= budget,
                    breakdown=peak.breakdown, n_params=peak.n_params, backend=peak.backend,
                    device=self.device, profile_seconds=round(peak.seconds, 4), worker=self.worker,
                    model_config=cfg.model.to_dict(), fail_reason=OutOfMemory.reason if peak.oom else None).write(trial)
        return peak_gib

    def _train(self, trial: optuna.Trial, cfg: TrialConfig, prune: bool = True) -> float:
        def on_eval(index: int, psnr: float) -> None:
            if self.spec.multi_objective or not prune:
                return  # Optuna refuses reports (and pruning) in a multi-objective study; a repeat is not judged
            trial.report(psnr, index)  # step = eval point index (0, 1, ...): pruner options count evals
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at eval point {index + 1} with PSNR {psnr:.2f} dB")

        TrialRecord(train_seed=cfg.train.seed).write(trial)
        t0 = time.perf_counter()
        try:
            result = self.train_fn(cfg.model, cfg.train, self.data, self.device, on_eval=on_eval)
            if not math.isfinite(result.psnr):
                raise NonFiniteLoss(f"validation PSNR is {result.psnr}")
        except TrainingFailed as e:
            TrialRecord(fail_reason=e.reason, fail_message=str(e)[:500],
                        train_seconds=round(time.perf_counter() - t0, 3)).write(trial)
            self._free()
            raise
        except optuna.TrialPruned:
            TrialRecord(train_seconds=round(time.perf_counter() - t0, 3)).write(trial)
            raise
        TrialRecord(psnr=result.psnr, bicubic_psnr=result.bicubic_psnr, steps_per_s=result.steps_per_s,
                    samples_per_s=result.samples_per_s, flops_per_step=result.flops_per_step,
                    n_params=result.n_params, backend=result.backend, device=str(result.device),
                    steps_done=result.steps_done, train_seconds=round(result.train_seconds, 3)).write(trial)
        return float(result.psnr)

    def _free(self) -> None:
        if str(self.device).startswith("cuda"):
            torch.cuda.empty_cache()
