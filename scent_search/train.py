"""Training one config and scoring it by validation PSNR (docs/design.md, "Training and PSNR").

Public surface:
- `train(model_cfg, train_cfg, data, device, on_eval=None) -> TrainResult`
- `evaluate(model, val_set, chunk=, batch_size=, precision=) -> EvalResult`
- `psnr(pred, target, shave=)`: per-image RGB PSNR in dB, capped at `PSNR_CAP_DB`.
- `load_data` (re-exported from `scent_search.data`): None/"default" or a folder -> train/val sources.

Budgets: a run stops after `train_cfg.steps` steps or `train_cfg.seconds` seconds of training, whichever
comes first. Seconds count optimisation steps only (evaluation time is excluded), so configs with costly
evaluation are not penalised. The cosine schedule follows progress = max(step fraction, time fraction).

Pruning: `on_eval(index, psnr)` is called at each evaluation point (index 0, 1, ... ; psnr is the x4 model
PSNR in dB). It may raise (e.g. `optuna.TrialPruned`); the exception propagates unchanged.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from scent_search.config import ModelConfig, TrainConfig
from scent_search.data import (DataSplit, QuerySampler, ValidationSet, bicubic_upsample, load_data,
                               make_validation_set)
from scent_search.errors import NonFiniteLoss, OutOfMemory
from scent_search.step import autocast_stages, make_optimizer, train_step

PSNR_CAP_DB = 100.0  # PSNR of identical images (MSE 0) is reported as this, not inf, so objectives stay finite
OBJECTIVE_SCALE = 4.0  # the reported PSNR is at x4 (HR 128 from LR 32)

# torch >= 2.5 has torch.OutOfMemoryError; torch.cuda.OutOfMemoryError is its alias.
_OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError})


# --------------------------------------------------------------------------------------------------
# PSNR and evaluation


def psnr(pred: torch.Tensor, target: torch.Tensor, shave: int = 0, data_range: float = 1.0) -> torch.Tensor:
    """RGB PSNR per image: (N, 3, H, W) x2 -> (N,) dB, after cropping `shave` pixels off every border.

    10 * log10(data_range^2 / MSE) with the MSE over all three channels, in float64. Identical images give
    PSNR_CAP_DB.
    """
    if shave > 0:
        pred, target = pred[..., shave:-shave, shave:-shave], target[..., shave:-shave, shave:-shave]
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)  # (N,)
    return (10 * torch.log10(data_range ** 2 / mse)).clamp(max=PSNR_CAP_DB)


@dataclass
class EvalResult:
    """Mean PSNR over the validation crops, per scale: model and bicubic on exactly the same crops (dB)."""

    psnr: dict[float, float]
    bicubic: dict[float, float]


@torch.no_grad()
def evaluate(model: nn.Module, val_set: ValidationSet, *, chunk: int = 4096, batch_size: int = 16,
             precision: str = "fp32") -> EvalResult:
    """Decode every validation crop's full HR grid in query chunks and score it against the HR crop.

    Predictions are clamped to [0, 1]; PSNR shaves `scale` pixels at each border; the reported figure is the
    mean of the per-crop PSNRs. Bicubic upsampling of the same LR inputs is scored the same way.
    """
    was_training = model.training
    model.eval()
    out, bic = {}, {}
    try:
        for s, v in val_set.scales.items():
            n, _, H, W = v.hr.shape
            scores, bscores = [], []
            for i in range(0, n, batch_size):
                lr, hr = v.lr[i:i + batch_size], v.hr[i:i + batch_size]  # (b, 3, h, w), (b, 3, H, W)
                coords = v.coords.expand(lr.shape[0], -1, -1)  # (b, H*W, 2)
                with autocast_stages(lr.device.type, precision)("forward"):  # as the training forward runs
                    rgb = model.decode_chunked(lr, coords, chunk)  # (b, H*W, 3)
                pred = rgb.float().clamp(0, 1).view(-1, H, W, 3).permute(0, 3, 1, 2)  # (b, 3, H, W)
                scores.append(psnr(pred, hr, v.shave))
                bscores.append(psnr(bicubic_upsample(lr, (H, W)), hr, v.shave))
            out[s] = torch.cat(scores).mean().item()
            bic[s] = torch.cat(bscores).mean().item()
    finally:
        model.train(was_training)
    return EvalResult(out, bic)


# --------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainResult:
    """What one training run measured. PSNRs in dB at x4 unless per-scale; flops_per_step counts fwd+bwd."""

    psnr: float
    bicubic_psnr: float
    psnr_by_scale: dict[float, float]
    bicubic_by_scale: dict[float, float]
    steps_done: int
    steps_per_s: float
    samples_per_s: float
    flops_per_step: int
    losses: list[float]
    n_params: int
    backend: str
    device: str
    train_seconds: float  # time in optimisation steps (evaluation excluded)
    evals: list[tuple[int, float]] = field(default_factory=list)  # (steps_done, x4 PSNR) per eval point
    model: nn.Module | None = field(default=None, repr=False)  # only with train(..., return_model=True)

    @property
    def best_psnr(self) -> float:
        return max(p for _, p in self.evals)


# FLOPs of one training step (fwd + bwd) per (model config, batch, queries, LR side, checkpointing).
_FLOPS_CACHE: dict[tuple, int] = {}


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """Multiplier of cfg.lr at `step` (0-based): linear warmup, then cosine to 0 over progress in [0, 1]."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _build_model(model_cfg: ModelConfig) -> nn.Module:
    from scent_search.model import MambaSCENTHybrid  # the model package is imported only when training

    return MambaSCENTHybrid(model_cfg)


def train(model_cfg: ModelConfig, train_cfg: TrainConfig, data: DataSplit | str | None = None,
          device: torch.device | str = "cpu", on_eval: Callable[[int, float], None] | None = None, *,
          progress: bool | None = None, return_model: bool = False) -> TrainResult:
    """Train one config within its budget and score it on the fixed validation crops.

    data: a `DataSplit` from `load_data`, or a data setting for it (None/"default", or a folder).
    progress: tqdm bar; default on when stderr is a terminal.
    Raises NonFiniteLoss on a NaN/inf loss and OutOfMemory on a device OOM (the config does not fit).
    """
    device = torch.device(device)
    split = data if isinstance(data, DataSplit) else load_data(data, train_cfg)
    oom_message = None
    try:
        return _train(model_cfg, train_cfg, split, device, on_eval, progress, return_model)
    except _OOM_ERRORS as e:
        oom_message = str(e).splitlines()[0] if str(e) else type(e).__name__
    # Raised outside the except block on purpose: the OOM's traceback (and the step's tensors its frames
    # hold) is released first, so the cache can actually be emptied for the next trial.
    if device.type == "cuda":
        torch.cuda.empty_cache()
    raise OutOfMemory(f"out of memory on {device} training batch {train_cfg.batch_size} x {train_cfg.sample_q} "
                      f"queries: {oom_message}")


def _train(model_cfg: ModelConfig, cfg: TrainConfig, split: DataSplit, device: torch.device,
           on_eval: Callable[[int, float], None] | None, progress: bool | None, return_model: bool) -> TrainResult:
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)  # model init (incl. Fourier matrices); the sampler has its own generators
    model = _build_model(model_cfg).to(device)
    model.set_checkpointing(cfg.checkpointing)
    model.train()
    sampler = QuerySampler(split.train, lr_size=cfg.lr_size, sample_q=cfg.sample_q, scale_min=cfg.scale_min,
                           scale_max=cfg.scale_max, augment=cfg.augment, device=device, seed=cfg.seed)
    scales = tuple(sorted({OBJECTIVE_SCALE, *cfg.eval_scales}))
    val_set = make_validation_set(split.val, hr_size=cfg.val_hr_size, scales=scales, n_crops=cfg.val_crops,
                                  device=device)
    opt = make_optimizer(model.parameters(), cfg.lr)
    stages = autocast_stages(device.type, cfg.precision)  # bf16 autocast on CUDA only: the target is the GPU step
    flops_key = (model_cfg, cfg.batch_size, cfg.sample_q, cfg.lr_size, cfg.checkpointing)

    def run_eval(index: int) -> EvalResult:
        res = evaluate(model, val_set, chunk=cfg.eval_chunk, batch_size=cfg.batch_size, precision=cfg.precision)
        evals.append((step, res.psnr[OBJECTIVE_SCALE]))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", psnr=f"{res.psnr[OBJECTIVE_SCALE]:.2f}",
                        bicubic=f"{res.bicubic[OBJECTIVE_SCALE]:.2f}")
        if on_eval is not None:
            on_eval(index, res.psnr[OBJECTIVE_SCALE])
        return res

    losses: list[float] = []
    evals: list[tuple[int, float]] = []
    step, train_s, first_step_s = 0, 0.0, 0.0
    next_eval = 1  # evaluation k (1..eval_points) happens once progress >= k / eval_points; the last at the end

    def check_loss(loss: torch.Tensor) -> None:
        """Stop on a non-finite loss before its backward (a host read of the loss, once per step)."""
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise NonFiniteLoss(f"training loss became {losses[-1]} at step {step + 1}")

    def progress_now() -> float:
        return max(step / cfg.steps, train_s / cfg.seconds if cfg.seconds else 0.0)

    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=cfg.steps, disable=not show, desc="train", leave=False) as bar:
        while progress_now() < 1.0:
            t0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(cfg, step, progress_now())
            batch = sampler.sample(cfg.batch_size)  # lr (B,3,h,w), coords (B,Q,2), rgb (B,Q,3)
            count = flops_key not in _FLOPS_CACHE
            flop_counter = FlopCounterMode(display=False) if count else None
            with flop_counter or contextlib.nullcontext():
                train_step(model, opt, batch.lr, batch.coords, batch.rgb, grad_clip=cfg.grad_clip, stages=stages,
                           on_loss=check_loss)
            if count:
                _FLOPS_CACHE[flops_key] = int(flop_counter.get_total_flops())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            train_s += dt
            if step == 0:
                first_step_s = dt  # warm-up (and FLOP counting): left out of the throughput
            step += 1
            bar.update(1)
            p = progress_now()
            if p < 1.0 and next_eval < cfg.eval_points and p >= next_eval / cfg.eval_points:
                run_eval(len(evals))
                while next_eval < cfg.eval_points and p >= next_eval / cfg.eval_points:
                    next_eval += 1  # a step that crosses several marks evaluates once
        result = run_eval(len(evals))  # the last evaluation, at the end of the budget

    timed_steps, timed_s = (step - 1, train_s - first_step_s) if step > 1 else (step, train_s)
    steps_per_s = timed_steps / timed_s if timed_s > 0 else float("nan")
    return TrainResult(
        psnr=result.psnr[OBJECTIVE_SCALE], bicubic_psnr=result.bicubic[OBJECTIVE_SCALE],
        psnr_by_scale=dict(result.psnr), bicubic_by_scale=dict(result.bicubic), steps_done=step,
        steps_per_s=steps_per_s, samples_per_s=steps_per_s * cfg.batch_size, flops_per_step=_FLOPS_CACHE[flops_key],
        losses=losses, n_params=sum(p.numel() for p in model.parameters()),
        backend=str(getattr(model, "processor_backend", "torch")), device=str(device), train_seconds=train_s,
        evals=evals, model=model if return_model else None)


__all__ = ["train", "evaluate", "psnr", "load_data", "lr_factor", "TrainResult", "EvalResult", "PSNR_CAP_DB",
           "OBJECTIVE_SCALE"]
