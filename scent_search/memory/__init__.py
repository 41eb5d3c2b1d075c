"""Peak GPU memory of one training step: measured on CUDA, predicted without a GPU, cached in the SQL store.

Public surface (docs/internals.md, docs/memory.md):
- `profile_step(model_cfg, shape, device="predict"|"cuda"|"cuda:N", backend=None) -> MemoryProfile`
- `MemoryProfile` (frozen): peak bytes, breakdown per component, source, versions; `constraint_bytes(margin)`
- `ProfileCache(storage_url_or_engine)`: `get_or_profile`, `calibration_margin`, `record_calibration`
- `max_batch_size(...)`, `seed_check()`: the CLI's `profile --max-batch` and `seed-check`
- `step_seconds(model_cfg, shape, device="cpu")`: the time of one training step there (the search's CPU
  cost estimate)
"""

from __future__ import annotations

from scent_search.memory._cache import ProfileCache
from scent_search.memory._measure import step_seconds
from scent_search.memory._predict import Adjustments, predict
from scent_search.memory._profile import (BREAKDOWN_KEYS, COMPONENTS, DEFAULT_MARGIN, RESERVED_ALLOWANCE_BYTES,
                                          MemoryProfile, gib)
from scent_search.memory._step import max_batch_size, profile_step


def seed_check(backend: str | None = None) -> dict:
    """The researcher's memory claims beside the predicted figures (see scent_search/memory/_seed.py)."""
    from scent_search.memory._seed import seed_check as _seed_check

    return _seed_check(backend)


__all__ = ["profile_step", "MemoryProfile", "ProfileCache", "max_batch_size", "seed_check", "step_seconds",
           "predict", "Adjustments", "BREAKDOWN_KEYS", "COMPONENTS", "DEFAULT_MARGIN", "RESERVED_ALLOWANCE_BYTES", "gib"]
