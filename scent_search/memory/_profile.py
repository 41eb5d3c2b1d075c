"""MemoryProfile: one training step's peak memory, how it was obtained, and where it went."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from scent_search.units import BREAKDOWN_KEYS, COMPONENTS, STATE, gib  # noqa: F401 (memory's public names)

PREDICTOR_VERSION = 2  # bump when the prediction changes, so cached predictions are not reused


DEFAULT_MARGIN = 0.10  # reserved over allocated before any calibration pair exists (see docs/memory.md)
RESERVED_ALLOWANCE_BYTES = 256 * 2 ** 20  # allocator segments a prediction cannot see (2 MiB / 20 MiB blocks)


def versions() -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"torch": torch.__version__, "mamba_ssm": dist("mamba-ssm") or dist("mamba_ssm"),
            "scent_search": dist("scent-search"), "predictor": str(PREDICTOR_VERSION)}


@dataclass(frozen=True)
class MemoryProfile:
    """Peak memory of one training step (forward, loss, backward, grad clip, Adam step) at a target shape.

    Bytes are ints. `breakdown` holds every name in BREAKDOWN_KEYS and sums to `peak_allocated_bytes`;
    `scale_breakdown` splits the per-scale components (`bandwidth_lins[0]`, `hv_lins[0]`, ...).
    """

    peak_allocated_bytes: int
    peak_reserved_bytes: int | None  # measured only
    capacity_bytes: int | None  # total memory of the device measured on (or of a local GPU when predicting)
    # measured: peak reserved <= capacity; predicted: constraint_bytes(DEFAULT_MARGIN) <= capacity of the local
    # GPU; None when no capacity is known (predicting on a machine without a GPU)
    fits: bool | None
    breakdown: dict[str, int]
    scale_breakdown: dict[str, int]
    source: str  # 'measured' | 'predicted'
    device_kind: str  # e.g. 'NVIDIA H200', or 'predicted:sm90'
    backend: str  # processor backend: 'torch' | 'mamba_ssm'
    versions: dict[str, Any]
    n_params: int
    oom: bool = False
    activation_bytes: int = 0  # the components' share of the peak (breakdown over COMPONENTS)
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig.to_dict()
    shape: dict[str, Any] = field(default_factory=dict)  # TargetShape.to_dict()

    def constraint_bytes(self, margin: float) -> int:
        """The bytes the search compares with its budget.

        Measured: peak reserved (what the allocator held), or capacity + 1 after an OOM. Predicted: peak
        allocated * (1 + margin) + RESERVED_ALLOWANCE_BYTES, an estimate of peak reserved. The CUDA context
        (~0.5 GiB, outside torch's counters) is in neither: leave it out of the budget.
        """
        if self.source == "measured":
            if self.oom:
                return (self.capacity_bytes or 0) + 1
            return int(self.peak_reserved_bytes if self.peak_reserved_bytes is not None else self.peak_allocated_bytes)
        return int(self.peak_allocated_bytes * (1 + margin)) + RESERVED_ALLOWANCE_BYTES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MemoryProfile":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
