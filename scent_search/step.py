"""The training step, defined once: what `train` runs, what the CUDA measurement measures and what the memory
prediction predicts.

    forward (autocast) -> L1 loss -> zero_grad -> backward -> clip the grad norm -> Adam

Callers differ only in what they wrap around the step's stages, never in the ops: `stages(name)` returns the
context each of "forward", "backward", "clip" and "optimizer" runs in (training and measurement: bf16 autocast
around the forward on CUDA; the prediction: its autocast emulation and the breakdown's phase labels), and the
prediction may account for the Adam update analytically instead of running it (`optimizer_step`).
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn

Stages = Callable[[str], ContextManager]  # stage name -> the context it runs in
STAGES = ("forward", "backward", "clip", "optimizer")


def make_optimizer(params, lr: float) -> torch.optim.Adam:
    """Adam, foreach: the implementation CUDA picks by default, used on every device so all three agree."""
    return torch.optim.Adam(params, lr=lr, foreach=True)


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 loss over (B, Q, 3) RGB predictions and targets, in fp32 (outside autocast)."""
    return F.l1_loss(pred.float(), target)


def autocast_stages(device_type: str, precision: str) -> Stages:
    """bf16 autocast around the forward on CUDA when `precision` is bf16; nothing else (the real device)."""

    def stages(name: str) -> ContextManager:
        if name == "forward" and device_type == "cuda" and precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    return stages


def train_step(model: nn.Module, opt: torch.optim.Optimizer, lr: torch.Tensor, coords: torch.Tensor,
               rgb: torch.Tensor, *, grad_clip: float, stages: Stages,
               on_loss: Callable[[torch.Tensor], None] | None = None,
               optimizer_step: Callable[[], None] | None = None) -> torch.Tensor:
    """One optimisation step on lr (B, 3, h, w), coords (B, Q, 2), rgb (B, Q, 3). Returns the loss (detached).

    `grad_clip` > 0 clips the global grad norm (0: no clipping). `on_loss(loss)` runs before backward (training
    stops on a non-finite loss there). The previous step's gradients are freed only after the forward
    (zero_grad sits before backward), so they are live during this forward: part of the measured peak.
    """
    with stages("forward"):
        pred = model(lr, coords)  # (B, Q, 3)
    loss = l1_loss(pred, rgb)
    if on_loss is not None:
        on_loss(loss)
    opt.zero_grad(set_to_none=True)
    with stages("backward"):
        # not loss.backward(): a torch-function mode (the prediction's autocast emulation) handling
        # Tensor.backward would be popped for the whole backward
        torch.autograd.backward(loss)
    del pred
    if grad_clip > 0:
        with stages("clip"):
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
    with stages("optimizer"):
        (optimizer_step or opt.step)()
    return loss.detach()


__all__ = ["STAGES", "Stages", "autocast_stages", "l1_loss", "make_optimizer", "train_step"]
