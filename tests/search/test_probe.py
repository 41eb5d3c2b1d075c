"""The peak probe: the memory package's profile cache, as the search reads it."""

from __future__ import annotations

import dataclasses

import sqlalchemy

from scent_search.config import ModelConfig, TargetShape
from scent_search.search.probe import PeakProbe, profiling_device


def test_predicted_peak_from_the_real_cache(sqlite_url, tiny_cfg):
    engine = sqlalchemy.create_engine(sqlite_url)
    probe = PeakProbe(engine, "predict")
    shape = TargetShape(batch_size=2, queries=64, lr_size=16)
    first = probe(tiny_cfg, shape)
    again = probe(tiny_cfg, shape)
    assert first.source == "predicted" and first.constraint_bytes > first.allocated_bytes > 0
    assert first.reserved_bytes == first.constraint_bytes  # predicted: allocated + the stated margin
    assert set(first.breakdown) >= {"hv_lins", "parameters", "optimizer_state"}
    assert (again.constraint_bytes, again.breakdown) == (first.constraint_bytes, first.breakdown)  # the cache


@dataclasses.dataclass(frozen=True)
class _Profile:
    peak_allocated_bytes: int
    peak_reserved_bytes: int | None
    source: str
    oom: bool = False
    breakdown: dict = dataclasses.field(default_factory=dict)
    n_params: int = 10
    backend: str = "torch"
    device_kind: str = "GPU"

    def constraint_bytes(self, margin: float) -> int:
        return self.peak_reserved_bytes if self.source == "measured" else int(self.peak_allocated_bytes * (1 + margin))


class _StubCache:
    def __init__(self) -> None:
        self.store, self.pairs = {}, []

    def get(self, cfg, shape, device, backend):
        return self.store.get((cfg, device))

    def get_or_profile(self, cfg, shape, device, backend):
        if (cfg, device) not in self.store:
            measured = device.startswith("cuda")
            self.store[(cfg, device)] = _Profile(100, 120 if measured else None, "measured" if measured else "predicted")
        return self.store[(cfg, device)]

    def record_calibration(self, predicted, measured):
        self.pairs.append((predicted.source, measured.source))

    def calibration_margin(self):
        return 0.1

    def calibration_pairs(self):
        return list(self.pairs)


def test_cuda_measurements_are_paired_with_predictions_once():
    cache = _StubCache()
    probe = PeakProbe(None, "cuda:0", cache=cache)
    cfg, shape = ModelConfig(), TargetShape()
    peak = probe(cfg, shape)
    probe(cfg, shape)  # cached: no second pair
    assert peak.source == "measured" and peak.constraint_bytes == 120 and peak.reserved_bytes == 120
    assert cache.pairs == [("predicted", "measured")]


def test_profiling_device_follows_the_training_device():
    assert profiling_device("cpu") == "predict"
    assert profiling_device("cuda:1") == "cuda:1"
