"""Peak memory of one training step, predicted or measured, and the largest batch that fits a budget."""

from __future__ import annotations

from scent_search.config import ModelConfig, TargetShape
from scent_search.errors import ConfigError
from scent_search.memory._predict import default_backend, predict
from scent_search.memory._profile import DEFAULT_MARGIN, MemoryProfile


def profile_step(model_cfg: ModelConfig, shape: TargetShape, device: str = "predict",
                 backend: str | None = None) -> MemoryProfile:
    """Peak memory of one training step of `model_cfg` at `shape`.

    device "predict": FakeTensor run on the CPU, modelling a CUDA step (no GPU, no real memory);
    `backend` is the processor backend the target runs ('torch' | 'mamba_ssm'; default: mamba_ssm if it
    imports here). device "cuda" / "cuda:N": measured (one warm-up step, then one measured step).
    """
    if device == "predict":
        return predict(model_cfg, shape, backend=backend)
    import torch

    if not device.startswith("cuda"):
        raise ConfigError("device", f"must be 'predict', 'cuda' or 'cuda:N', got {device!r}")
    if not torch.cuda.is_available():
        raise ConfigError("device", f"{device!r}: no CUDA device here (use device='predict')")
    if backend is not None and backend != default_backend():
        raise ConfigError("backend", f"a measurement runs what this machine has ({default_backend()!r}), "
                                     f"not {backend!r}")
    from scent_search.memory._measure import measure

    return measure(model_cfg, shape, device)


def max_batch_size(model_cfg: ModelConfig, shape: TargetShape, budget_bytes: int, margin: float = DEFAULT_MARGIN,
                   backend: str | None = None, limit: int = 1 << 16) -> tuple[int, MemoryProfile | None]:
    """Largest batch size (<= limit) whose predicted constraint bytes fit `budget_bytes`; (0, None) if none does.

    The peak is close to linear in the batch size, so two predictions give a guess; exponential steps from
    the guess bracket the answer and bisection finishes it (typically 4-6 predictions instead of ~30).
    """
    cache: dict[int, MemoryProfile] = {}

    def prof(b: int) -> MemoryProfile:
        if b not in cache:
            cache[b] = predict(model_cfg, shape.replace(batch_size=b), backend=backend)
        return cache[b]

    def fits(b: int) -> bool:
        return prof(b).constraint_bytes(margin) <= budget_bytes

    if not fits(1):
        return 0, None
    probe = min(16, limit)
    slope = (prof(probe).constraint_bytes(margin) - prof(1).constraint_bytes(margin)) / max(probe - 1, 1)
    guess = int((budget_bytes - prof(1).constraint_bytes(margin)) / slope) + 1 if slope > 0 else limit
    lo, hi = 1, limit + 1  # fits(lo); hi does not fit (or is past the limit)
    guess = min(max(guess, 1), limit)
    step = 1
    if fits(guess):  # walk up from the guess until something does not fit
        lo = guess
        while lo + step <= limit and fits(lo + step):
            lo, step = lo + step, step * 2
        hi = min(lo + step, limit + 1)
    else:  # walk down until something fits
        hi = guess
        while hi - step > 1 and not fits(hi - step):
            hi, step = hi - step, step * 2
        lo = max(hi - step, 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, prof(lo)
