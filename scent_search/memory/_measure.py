"""Measured peak memory on CUDA: one warm-up step, reset the peak counters, one measured step.

A CUDA OOM is a result ("does not fit"), never a crash; everything is freed before returning, so the
next profile in the same process starts from the same baseline.
"""

from __future__ import annotations

import gc
import time

import torch

from scent_search.config import ModelConfig, TargetShape
from scent_search.memory._predict import predict, split_breakdown
from scent_search.memory._profile import COMPONENTS, MemoryProfile, versions
from scent_search.model import MambaSCENTHybrid
from scent_search.step import autocast_stages, make_optimizer, train_step


def _setup(cfg: ModelConfig, shape: TargetShape, dev: torch.device) -> dict:
    torch.manual_seed(0)
    model = MambaSCENTHybrid(cfg).to(dev)
    model.set_checkpointing(shape.checkpointing)
    model.train()
    B, Q, S = shape.batch_size, shape.queries, shape.lr_size
    return {"model": model, "opt": make_optimizer(model.parameters(), 1e-4),
            "lr": torch.rand(B, 3, S, S, device=dev), "coords": torch.rand(B, Q, 2, device=dev) * 2 - 1,
            "rgb": torch.rand(B, Q, 3, device=dev)}


def _measured_step(state: dict, precision: str, grad_clip: float, dev: torch.device) -> tuple[int, int]:
    """Warm-up step (Adam state, cuBLAS workspaces), reset the peak counters, measured step. Locals die here."""
    args = (state["model"], state["opt"], state["lr"], state["coords"], state["rgb"])
    step = dict(grad_clip=grad_clip, stages=autocast_stages("cuda", precision))
    train_step(*args, **step)
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    train_step(*args, **step)
    torch.cuda.synchronize(dev)
    return torch.cuda.max_memory_allocated(dev), torch.cuda.max_memory_reserved(dev)


def measure(cfg: ModelConfig, shape: TargetShape, device: str = "cuda") -> MemoryProfile:
    """Peak allocated / reserved bytes of one step on `device`. The counters are process-wide: profile in a
    process that holds nothing else on the device (the search does this before training a trial)."""
    dev = torch.device(device)
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    capacity = torch.cuda.get_device_properties(index).total_memory
    kind = torch.cuda.get_device_name(index)
    state: dict = {}
    oom = False
    peak_alloc = peak_res = None
    backend = "torch"
    n_params = 0
    try:
        # fork_rng: the model's init seed must not change the caller's random streams
        with torch.cuda.device(index), torch.random.fork_rng(devices=[index]):
            state.update(_setup(cfg, shape, dev))
            backend = state["model"].processor_backend
            n_params = state["model"].num_params()
            peak_alloc, peak_res = _measured_step(state, shape.precision, shape.grad_clip, dev)
    except torch.cuda.OutOfMemoryError:
        oom = True
    except RuntimeError as e:  # cuBLAS / cuDNN allocation failures surface as plain RuntimeErrors
        if not any(s in str(e) for s in ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")):
            raise
        oom = True
    finally:
        for p in state["model"].parameters() if "model" in state else ():
            p.grad = None
        state.clear()  # the only references to the model, optimizer and inputs
        gc.collect()
        torch.cuda.empty_cache()
    if oom:  # the peak is unknown beyond "more than the device holds": all of it goes to `other`
        breakdown, scales = split_breakdown({"other": capacity + 1})
        return MemoryProfile(peak_allocated_bytes=capacity + 1, peak_reserved_bytes=None, capacity_bytes=capacity,
                             fits=False, breakdown=breakdown, scale_breakdown=scales, source="measured",
                             device_kind=kind, backend=backend, versions=versions(), n_params=n_params, oom=True,
                             model=cfg.to_dict(), shape=shape.to_dict())
    # The CUDA allocator does not know components: the breakdown is the prediction's, scaled to the measured peak.
    breakdown, scales = scaled_breakdown(predict(cfg, shape, backend=backend), int(peak_alloc))
    return MemoryProfile(peak_allocated_bytes=int(peak_alloc), peak_reserved_bytes=int(peak_res),
                         capacity_bytes=capacity, fits=peak_res <= capacity, breakdown=breakdown,
                         scale_breakdown=scales, source="measured", device_kind=kind, backend=backend,
                         versions=versions(), n_params=n_params, oom=False,
                         activation_bytes=sum(breakdown[c] for c in COMPONENTS), model=cfg.to_dict(),
                         shape=shape.to_dict())


def step_seconds(cfg: ModelConfig, shape: TargetShape, device: str = "cpu", steps: int = 2) -> float:
    """Seconds per training step (`train_step`, random inputs) at `shape` on `device`: one warm-up step, then
    the mean of `steps`. What a step costs there, without train.py's loop around it (data sampling, the
    first step's FLOP count, evaluation); the search's CPU cost estimate reads it."""
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # the model's init seed must not change the caller's streams
        state = _setup(cfg, shape, dev)
    args = (state["model"], state["opt"], state["lr"], state["coords"], state["rgb"])
    step = dict(grad_clip=shape.grad_clip, stages=autocast_stages(dev.type, shape.precision))
    train_step(*args, **step)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(*args, **step)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return (time.perf_counter() - t0) / steps


def scaled_breakdown(pred: MemoryProfile, total: int) -> tuple[dict[str, int], dict[str, int]]:
    """The predicted split scaled to `total` bytes; rounding goes to `other`, so it still sums to `total`."""
    f = total / max(pred.peak_allocated_bytes, 1)
    breakdown = {k: int(v * f) for k, v in pred.breakdown.items()}
    breakdown["other"] += total - sum(breakdown.values())
    return breakdown, {k: int(v * f) for k, v in pred.scale_breakdown.items()}
