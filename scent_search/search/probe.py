"""A trial's peak memory, as the search needs it: the memory package's profile, through its cache.

`PeakProbe(storage, device)` answers `probe(model_cfg, shape) -> Peak`. It asks the profile cache
(tables in the study's own database), which profiles a config once per key whichever worker asks:
measured on the GPU when the run's device is CUDA, predicted otherwise (docs/design.md, "Peak memory").
Tests inject any callable with the same signature.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from scent_search.config import ModelConfig, TargetShape
from scent_search.records import GIB


@dataclass(frozen=True)
class Peak:
    """Peak memory of one training step at the target shape, in bytes.

    `constraint_bytes` is what the constraint compares with the budget: the measured reserved peak, or
    the predicted allocated peak plus the calibration margin and the reserved allowance (what a predicted
    peak adds is recorded with it, so that its breakdown adds up: `records.peak_rows`).
    """

    allocated_bytes: int
    reserved_bytes: int
    constraint_bytes: int
    source: str  # "measured" | "predicted"
    breakdown: dict[str, int] = field(default_factory=dict)
    margin: float | None = None  # predicted: the calibration margin on allocated bytes
    allowance_bytes: int | None = None  # predicted: the fixed reserved allowance
    calibration_pairs: int | None = None  # predicted: the calibration pairs the margin came from (0: default)
    n_params: int | None = None
    backend: str | None = None
    device_kind: str | None = None
    oom: bool = False  # the measured step ran out of memory: the config does not fit this device
    seconds: float = 0.0  # time spent getting it (0 for a cache hit, roughly)

    @property
    def gib(self) -> float:
        return self.constraint_bytes / GIB


class Probe(Protocol):
    def __call__(self, model_cfg: ModelConfig, shape: TargetShape) -> Peak: ...


def _source(profile: Any) -> str:
    return "measured" if "measur" in str(getattr(profile, "source", "")).lower() else "predicted"


def peak_from_profile(profile: Any, margin: float, seconds: float = 0.0, calibration_pairs: int = 0) -> Peak:
    """Convert the memory package's `MemoryProfile` into a Peak (`margin` from `calibration_pairs` pairs)."""
    from scent_search.memory import RESERVED_ALLOWANCE_BYTES

    allocated = int(profile.peak_allocated_bytes)
    constraint = int(profile.constraint_bytes(margin))
    source = _source(profile)
    # Predicted: reserved is not observed; internals.md records allocated + the stated margin (= constraint).
    reserved = int(profile.peak_reserved_bytes) if profile.peak_reserved_bytes is not None else constraint
    predicted = source == "predicted"
    return Peak(allocated_bytes=allocated, reserved_bytes=reserved, constraint_bytes=constraint, source=source,
                breakdown={str(k): int(v) for k, v in dict(profile.breakdown).items()},
                margin=margin if predicted else None,
                allowance_bytes=RESERVED_ALLOWANCE_BYTES if predicted else None,
                calibration_pairs=calibration_pairs if predicted else None,
                n_params=int(profile.n_params) if profile.n_params is not None else None,
                backend=profile.backend, device_kind=profile.device_kind, oom=bool(profile.oom), seconds=seconds)


class PeakProbe:
    """The profile cache of the study's database, bound to one profiling device ("predict" or "cuda:N").

    On CUDA, each config this worker measures for the first time is also predicted, and the pair is stored
    for calibration (docs/design.md, "Peak memory"): the margin later predictions use comes from the worst pair.
    """

    def __init__(self, storage_url_or_engine: Any, device: str, cache: Any = None, backend: str | None = None) -> None:
        if cache is None:
            from scent_search.memory import ProfileCache  # the memory package owns the probe and its tables

            cache = ProfileCache(storage_url_or_engine)
        self.device = device
        self.cache = cache
        self.backend = backend  # the processor backend predicted; None: what the target GPU would run here

    def __call__(self, model_cfg: ModelConfig, shape: TargetShape) -> Peak:
        t0 = time.perf_counter()
        fresh = self.device != "predict" and self.cache.get(model_cfg, shape, self.device, None) is None
        profile = self.cache.get_or_profile(model_cfg, shape, self.device, self.backend)
        if fresh and not profile.oom:
            # The prediction is of the backend the measurement ran, so the pair compares like with like.
            predicted = self.cache.get_or_profile(model_cfg, shape, "predict", profile.backend)
            self.cache.record_calibration(predicted, profile)
        return peak_from_profile(profile, self.cache.calibration_margin(), time.perf_counter() - t0,
                                 calibration_pairs=len(self.cache.calibration_pairs()))


def profiling_device(train_device: str) -> str:
    """Measure on the GPU a trial trains on; predict (no GPU time) when it trains on the CPU."""
    return train_device if train_device.startswith("cuda") else "predict"


ProbeFactory = Callable[[Any, str], Probe]
