"""Predicted peak memory: the training step run on FakeTensors (CPU stand-in device) under a storage tracker.

No memory of the target size is allocated: the model is built on the meta device, its parameters are
swapped for FakeTensors, and every op only computes shapes. The same code runs on real CPU tensors
(`mode="real"`), which is how tests hold the fake run against a real one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import signal
import threading
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from scent_search.config import ModelConfig, TargetShape
from scent_search.memory import _cuda_model as cm
from scent_search.memory._profile import BREAKDOWN_KEYS, COMPONENTS, DEFAULT_MARGIN, MemoryProfile, versions
from scent_search.memory._tracker import Components, StorageTracker, round_alloc
from scent_search.model import MambaSCENTHybrid
from scent_search.model.processor import SCAN_CHUNK, Mamba, mamba_ssm_available
from scent_search.step import Stages, make_optimizer, train_step

@dataclass(frozen=True)
class Adjustments:
    """What the prediction changes to model a CUDA step. `Adjustments.none()` is the plain CPU step (tests)."""

    cuda_autocast: bool = True  # emulate CUDA's bf16 autocast; False: torch.autocast("cpu")
    mamba_ssm_kernel: bool = True  # backend 'mamba_ssm': stand-in for mamba_inner_fn
    cublas_workspace: str | None = "sm90"  # key of cm.CUBLAS_WORKSPACE_BYTES, None: none
    fast_scan: bool = True  # backend 'torch': the calibrated stand-in for selective_scan
    efficient_attention: bool = True  # a learnt attention bias: CUDA's memory-efficient kernel, not the math path

    @classmethod
    def none(cls, fast_scan: bool = False) -> "Adjustments":
        return cls(cuda_autocast=False, mamba_ssm_kernel=False, cublas_workspace=None, fast_scan=fast_scan,
                   efficient_attention=False)


def default_backend() -> str:
    """What the target GPU would run: mamba-ssm's kernels when mamba-ssm imports here."""
    return "mamba_ssm" if mamba_ssm_available() else "torch"


def _fake_model(cfg: ModelConfig, fake_mode) -> nn.Module:
    """The model with FakeTensor parameters and buffers: built on meta (no init cost), then swapped."""
    with torch.device("meta"):
        model = MambaSCENTHybrid(cfg)
    memo: dict[int, torch.Tensor] = {}  # shared (share_scales) parameters stay shared
    with fake_mode:
        for module in model.modules():
            for name, p in module._parameters.items():
                if p is not None:
                    if id(p) not in memo:
                        memo[id(p)] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype), p.requires_grad)
                    module._parameters[name] = memo[id(p)]
            for name, buf in module._buffers.items():
                if buf is not None:
                    module._buffers[name] = torch.empty(buf.shape, dtype=buf.dtype)
    return model


def _scan_dtypes(precision: str, adj: Adjustments) -> tuple[torch.dtype, ...]:
    """Dtypes of (u, delta, B, C) reaching selective_scan: under CUDA autocast softplus runs in fp32."""
    if precision == "fp32":
        return (torch.float32,) * 4
    bf16 = torch.bfloat16
    return (bf16, torch.float32, bf16, bf16) if adj.cuda_autocast else (bf16,) * 4


def _install_processor(model: nn.Module, backend: str, precision: str, adj: Adjustments) -> None:
    low = torch.bfloat16 if precision == "bf16" else None
    for mamba in (m for m in model.processor.modules() if isinstance(m, Mamba)):  # two per BiMamba block
        if backend == "mamba_ssm" and adj.mamba_ssm_kernel:
            mamba.forward = functools.partial(cm.mamba_inner_forward, mamba, low_dtype=low)
        elif adj.fast_scan:
            dtypes = _scan_dtypes(precision, adj)
            fp = cm.scan_footprint(dtypes, low if adj.cuda_autocast else None, SCAN_CHUNK)
            mamba.forward = functools.partial(cm.torch_scan_forward, mamba, scan=cm.ScanStandIn(fp, dtypes))


def _fill(t: torch.Tensor, real: bool) -> torch.Tensor:
    return t.uniform_(-1, 1) if real else t


def adam_step(opt: torch.optim.Adam, tracker: StorageTracker, analytic: bool = True) -> None:
    """The Adam step's memory. foreach Adam (the CUDA default) updates moments and parameters in place; its
    one temporary is `_foreach_sqrt(exp_avg_sqs)`, one tensor per parameter, freed at the end of the step.
    `analytic` accounts for exactly that instead of running ~10 foreach ops on FakeTensors (a third of a
    prediction's time); a test holds it against the real step.
    """
    if not analytic:
        opt.step()
        return
    params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
    tracker.transient(sum(round_alloc(p.numel() * p.element_size()) for p in params), "optimizer_state")


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C during a tracked run is raised when the run ends (a second or two later), not inside it.

    The tracker counts frees in weakref callbacks, and most of a prediction's Python time is spent in them; a
    KeyboardInterrupt raised inside a callback is printed and dropped by Python ("Exception ignored in ..."),
    and the search would go on as if nothing had been asked. Main thread only (signals are delivered there).
    """
    if threading.current_thread() is not threading.main_thread() or not callable(signal.getsignal(signal.SIGINT)):
        yield  # not the main thread, or SIGINT ignored (nohup ... &) or left to the OS: nothing to hold
        return
    fired: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: fired.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if fired:
            raise KeyboardInterrupt


def _stages(emu: cm.CudaAutocast | None, cpu_bf16: bool, comps: Components) -> Stages:
    """The prediction's wrapping of the step's stages: CUDA's autocast (emulated) around the forward and the
    checkpoint recomputation in backward, and the breakdown's labels for the gradient clip and the Adam step."""

    @contextlib.contextmanager
    def stages(name: str) -> Iterator[None]:
        if name == "forward":
            region = emu.region(cache=True) if emu is not None else \
                torch.autocast("cpu", dtype=torch.bfloat16) if cpu_bf16 else contextlib.nullcontext()
        elif name == "backward":  # checkpoint recomputation re-enters autocast, without its weight cache
            region = emu.region(cache=False) if emu is not None else contextlib.nullcontext()
        else:
            region = comps.phase({"clip": "gradients", "optimizer": "optimizer_state"}[name])
        with region:
            yield

    return stages


def run_step(cfg: ModelConfig, shape: TargetShape, backend: str, adj: Adjustments, mode: str = "fake",
             real_adam: bool = False):
    """Track one training step; returns (tracker, n_params). `mode`: 'fake' (prediction) or 'real' (CPU)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = mode == "real"
    fake_mode = contextlib.nullcontext() if real else FakeTensorMode()
    if real:
        model = MambaSCENTHybrid(cfg)
    else:
        model = _fake_model(cfg, fake_mode)
    model.set_checkpointing(shape.checkpointing)
    model.train()
    _install_processor(model, backend, shape.precision, adj)
    n_params = sum(p.numel() for p in model.parameters())
    comps = Components(model)
    tracker = StorageTracker(comps.current)
    params = list(model.parameters())
    B, Q, S = shape.batch_size, shape.queries, shape.lr_size
    with fake_mode:
        lr = _fill(torch.empty(B, 3, S, S), real)
        coords = _fill(torch.empty(B, Q, 2), real)
        rgb = _fill(torch.empty(B, Q, 3), real)
        # State of a step after warm-up (measured steps are the second one): Adam moments, and the previous
        # step's gradients, which train.py frees only after the forward (zero_grad sits before backward).
        opt = make_optimizer(params, 1e-4)
        for p in params:
            p.grad = torch.zeros_like(p)
            # `step` lives on the host on CUDA (capturable=False): not device memory, so not tracked
            opt.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(p),
                            "exp_avg_sq": torch.zeros_like(p)}
        for p in params:
            tracker.add(p, "parameters")
            tracker.add(p.grad, "gradients")
            tracker.add(opt.state[p]["exp_avg"], "optimizer_state")
            tracker.add(opt.state[p]["exp_avg_sq"], "optimizer_state")
            p.register_post_accumulate_grad_hook(lambda p: tracker.relabel(p.grad, "gradients"))
        for buf in model.buffers():
            tracker.add(buf, "parameters")
        for t in (lr, coords, rgb):
            tracker.add(t, "other")
        if adj.cublas_workspace:
            tracker.add_bytes(cm.CUBLAS_WORKSPACE_BYTES[adj.cublas_workspace], "other")

        bf16 = shape.precision == "bf16"
        emu = cm.CudaAutocast(torch.bfloat16) if (bf16 and adj.cuda_autocast) else None
        comps.recompute_mode = emu
        attention = cm.CudaAttention() if adj.efficient_attention else contextlib.nullcontext()
        with tracker, attention, (emu or contextlib.nullcontext()):
            train_step(model, opt, lr, coords, rgb, grad_clip=shape.grad_clip,
                       stages=_stages(emu, bf16 and not adj.cuda_autocast, comps),
                       optimizer_step=None if real_adam else functools.partial(adam_step, opt, tracker))
    comps.remove()
    return tracker, n_params


def split_breakdown(peak_live: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Per-label bytes at the peak -> (breakdown by BREAKDOWN_KEYS, per-scale detail)."""
    breakdown = dict.fromkeys(BREAKDOWN_KEYS, 0)
    scales: dict[str, int] = {}
    for label, nbytes in peak_live.items():
        base = label.split("[", 1)[0]
        breakdown[base if base in breakdown else "other"] += nbytes
        if "[" in label:
            scales[label] = scales.get(label, 0) + nbytes
    return breakdown, dict(sorted(scales.items()))


def predict(cfg: ModelConfig, shape: TargetShape, backend: str | None = None,
            adjustments: Adjustments = Adjustments()) -> MemoryProfile:
    """Predicted peak allocated bytes of one CUDA training step (no GPU needed)."""
    backend = backend or default_backend()
    if backend not in ("torch", "mamba_ssm"):
        from scent_search.errors import ConfigError

        raise ConfigError("backend", f"must be 'torch' or 'mamba_ssm', got {backend!r}")
    if adjustments.cublas_workspace is not None and torch.cuda.is_available():  # size it for the local GPU
        major = torch.cuda.get_device_capability(0)[0]
        adjustments = dataclasses.replace(adjustments, cublas_workspace="sm90" if major >= 9 else "sm80")
    with interrupts_deferred():
        tracker, n_params = run_step(cfg, shape, backend, adjustments, mode="fake")
    breakdown, scales = split_breakdown(tracker.peak_live)
    capacity, kind = None, f"predicted:{adjustments.cublas_workspace or 'cpu'}"
    if torch.cuda.is_available():
        capacity = torch.cuda.get_device_properties(0).total_memory
        kind = f"predicted:{torch.cuda.get_device_name(0)}"
    prof = MemoryProfile(
        peak_allocated_bytes=tracker.peak, peak_reserved_bytes=None, capacity_bytes=capacity, fits=None,
        breakdown=breakdown, scale_breakdown=scales, source="predicted", device_kind=kind, backend=backend,
        versions=versions(), n_params=n_params, activation_bytes=sum(breakdown[c] for c in COMPONENTS),
        model=cfg.to_dict(), shape=shape.to_dict())
    if capacity is None:
        return prof
    # like a measurement, judged on (estimated) reserved memory: the default margin before any calibration
    return dataclasses.replace(prof, fits=prof.constraint_bytes(DEFAULT_MARGIN) <= capacity)


def activation_bytes(module_factory, input_shape: tuple[int, ...], precision: str = "fp32") -> int:
    """Bytes a module's forward keeps for backward (live after forward, less its input and parameters)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with torch.device("meta"):
        module = module_factory()
    fake_mode = FakeTensorMode()
    with fake_mode:
        for m in module.modules():
            for name, p in m._parameters.items():
                if p is not None:
                    m._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype))
        x = torch.empty(*input_shape, requires_grad=True)
        tracker = StorageTracker()
        emu = cm.CudaAutocast(torch.bfloat16) if precision == "bf16" else None
        with interrupts_deferred(), tracker, (emu or contextlib.nullcontext()):
            if emu is not None:
                emu.enabled = True
            out = module(x)
            kept = tracker.total
            del out
    return kept


__all__ = ["Adjustments", "predict", "run_step", "split_breakdown", "default_backend", "activation_bytes"]
