"""One training step: `train`, the CUDA measurement and the memory prediction run the same ops."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import scent_search.memory._measure as measure_mod
import scent_search.memory._predict as predict_mod
import scent_search.train as train_mod
from scent_search.config import TargetShape, TrainConfig
from scent_search.data import DataSplit, ImageSource
from scent_search.memory._predict import Adjustments, run_step
from scent_search.step import STAGES, train_step

HOST_READS = {"_local_scalar_dense"}  # train reads the loss on the host to stop on a NaN: no device op


class OpLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in HOST_READS:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def _logged(calls: list[list[str]]):
    """A train_step that records the aten ops of every call."""
    def step(*args, **kwargs):
        with OpLog() as log:
            out = train_step(*args, **kwargs)
        calls.append(log.ops)
        return out
    return step


@pytest.mark.parametrize("grad_clip", [1.0, 0.0])
def test_train_measure_and_predict_run_the_same_step(tiny_cfg, monkeypatch, grad_clip):
    shape = TargetShape(batch_size=2, queries=16, lr_size=8, grad_clip=grad_clip)
    # 1. train(): its second step (the first one creates Adam's state; measurement and prediction model a step
    #    after warm-up).
    trained: list[list[str]] = []
    monkeypatch.setattr(train_mod, "train_step", _logged(trained))
    rng = torch.Generator().manual_seed(0)
    image = (torch.rand(40, 40, 3, generator=rng) * 255).to(torch.uint8).numpy()
    src = ImageSource([image], ["a.png"])
    cfg = TrainConfig(steps=2, batch_size=2, sample_q=16, lr_size=8, eval_points=1, val_hr_size=32, val_crops=1,
                      grad_clip=grad_clip)
    train_mod.train(tiny_cfg, cfg, DataSplit(train=src, val=src, spec="test"), "cpu")
    # 2. the CUDA measurement's warm-up and measured steps, on the CPU (its CUDA calls stubbed out)
    measured: list[list[str]] = []
    monkeypatch.setattr(measure_mod, "train_step", _logged(measured))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda dev=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda dev=None: 0)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda dev=None: 0)
    state = measure_mod._setup(tiny_cfg, shape, torch.device("cpu"))
    measure_mod._measured_step(state, shape.precision, shape.grad_clip, torch.device("cpu"))
    # 3. the prediction's step, on real CPU tensors with the real Adam update and no CUDA stand-ins
    predicted: list[list[str]] = []
    monkeypatch.setattr(predict_mod, "train_step", _logged(predicted))
    run_step(tiny_cfg, shape, "torch", Adjustments.none(), mode="real", real_adam=True)

    assert len(trained) == 2 and len(measured) == 2 and len(predicted) == 1
    assert trained[1] == measured[1] == predicted[0]
    assert ("_foreach_norm" in trained[1]) == (grad_clip > 0)  # the clip follows the training's grad_clip
    assert "_foreach_addcdiv_" in trained[1]  # foreach Adam everywhere


def test_prediction_wraps_every_stage():
    """The prediction labels clip and optimizer memory: it must see each stage the step runs."""
    seen = []

    @contextlib.contextmanager
    def stages(name):
        seen.append(name)
        yield

    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    opt = torch.optim.Adam(model.parameters())
    train_step(lambda lr, coords: model(coords), opt, None, torch.rand(1, 4, 2), torch.rand(1, 4, 3), grad_clip=1.0,
               stages=stages)
    assert seen == list(STAGES)
