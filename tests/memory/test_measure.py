"""Measuring on CUDA: a simulated OOM is a "does not fit" result; on a GPU, prediction against measurement."""

import contextlib
import types

import pytest
import torch

from scent_search.config import ModelConfig, TargetShape
from scent_search.memory import _measure, profile_step

CAPACITY = 40 * 2 ** 30


def test_simulated_cuda_oom_is_a_does_not_fit_result(monkeypatch, tiny_cfg):
    """The measure path on a pretend GPU whose step raises torch.cuda.OutOfMemoryError."""
    calls = []
    real_setup = _measure._setup

    def setup(cfg, shape, dev):
        return real_setup(cfg, shape, torch.device("cpu"))

    def oom_step(*args, **kwargs):
        calls.append(1)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=CAPACITY))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Pretend GPU")
    monkeypatch.setattr(torch.cuda, "device", lambda i: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices=None: contextlib.nullcontext())
    monkeypatch.setattr(_measure, "_setup", setup)
    monkeypatch.setattr(_measure, "train_step", oom_step)
    prof = profile_step(tiny_cfg, TargetShape(batch_size=2, queries=16, lr_size=8), device="cuda")
    assert calls == [1]
    assert prof.oom and prof.fits is False and prof.source == "measured"
    assert prof.capacity_bytes == CAPACITY and prof.device_kind == "Pretend GPU"
    assert prof.constraint_bytes(0.0) > CAPACITY
    assert sum(prof.breakdown.values()) == prof.peak_allocated_bytes


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measured_step_matches_prediction_and_releases_memory():
    cfg = ModelConfig(hidden_dim=256, num_decoder_layers=2)
    shape = TargetShape(batch_size=16, queries=1024, lr_size=32)
    first = profile_step(cfg, shape, device="cuda")
    second = profile_step(cfg, shape, device="cuda")
    assert second.peak_allocated_bytes <= first.peak_allocated_bytes * 1.01  # not inflated by the first
    pred = profile_step(cfg, shape, device="predict", backend=first.backend)
    assert pred.peak_allocated_bytes == pytest.approx(first.peak_allocated_bytes, rel=0.05)
