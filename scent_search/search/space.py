"""The search space: Optuna suggestions -> one trial's (ModelConfig, TargetShape, TrainConfig).

Knob names are ModelConfig's argument names. `sigma_ls` is suggested as a label such as "128,32"
(Optuna's categorical choices must be scalars); `scales_of` turns it back into bandwidths.
Samplers and pruners are small registries from the spec's names to Optuna classes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import optuna

from scent_search.config import ModelConfig, PrunerSpec, SamplerSpec, StudySpec, TargetShape, TrainConfig
from scent_search.errors import ConfigError

SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    # TPE reads the trials' `set_constraint` values (Optuna 5): infeasible trials inform it without being
    # trained. With several workers, options.constant_liar = true keeps them off each other's running configs.
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
}

PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "nop": optuna.pruners.NopPruner,
}


def _build(registry: dict[str, Callable], name: str, options: dict[str, Any], key: str, source: str | None,
           **fixed: Any):
    cls = registry[name]
    params = inspect.signature(cls).parameters
    unknown = sorted(k for k in options if k not in params)
    if unknown:
        known = ", ".join(k for k in params if k not in fixed)
        raise ConfigError(f"{key}.options.{unknown[0]}", f"unknown option of {name!r} (known: {known})", source)
    try:
        return cls(**options, **fixed)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}.options", f"{name!r} refused them: {e}", source) from e


def make_sampler(spec: SamplerSpec, seed: int | None, source: str | None = None) -> optuna.samplers.BaseSampler:
    return _build(SAMPLERS, spec.name, spec.options, "sampler", source, seed=seed)


def make_pruner(spec: PrunerSpec, source: str | None = None) -> optuna.pruners.BasePruner:
    return _build(PRUNERS, spec.name, spec.options, "pruner", source)


def sigma_label(sigma_ls: tuple[float, ...]) -> str:
    """(128.0, 32.0) -> "128,32": the categorical choice shown in Optuna and the dashboard."""
    return ",".join(f"{s:g}" for s in sigma_ls)


def scales_of(label: str) -> tuple[float, ...]:
    return tuple(float(s) for s in label.split(","))


@dataclass(frozen=True)
class TrialConfig:
    """What one trial profiles and trains: the model, the target step's shape, and the training run."""

    model: ModelConfig
    shape: TargetShape
    train: TrainConfig


def suggest(trial: optuna.Trial, spec: StudySpec) -> TrialConfig:
    """Suggest the knobs of `spec.space` on `trial` (a retried trial gets its stored params back)."""
    space = spec.space
    model = spec.model.replace(
        hidden_dim=trial.suggest_categorical("hidden_dim", list(space.hidden_dim)),
        mult=trial.suggest_categorical("mult", list(space.mult)),
        num_decoder_layers=trial.suggest_categorical("num_decoder_layers", list(space.num_decoder_layers)),
        share_scales=trial.suggest_categorical("share_scales", list(space.share_scales)),
        sigma_ls=scales_of(trial.suggest_categorical("sigma_ls", [sigma_label(c) for c in space.sigma_ls])),
    )
    # The trained step runs at the measured step's precision and checkpointing: the target's, or searched.
    precision = (trial.suggest_categorical("precision", list(space.precision)) if space.precision is not None
                 else spec.target.precision)
    ckpt = (trial.suggest_categorical("checkpointing", list(space.checkpointing))
            if space.checkpointing is not None else spec.target.checkpointing)
    shape = spec.target.replace(precision=precision, checkpointing=ckpt)
    train = spec.train.replace(precision=precision, checkpointing=ckpt)
    if space.lr is not None:
        train = train.replace(lr=trial.suggest_float("lr", space.lr[0], space.lr[1], log=True))
    return TrialConfig(model=model, shape=shape, train=train)


def knobs_label(params: dict[str, Any]) -> str:
    """Short knob summary for a terminal line: h=256 m=2 L=3 share=F s=128,32 [bf16 ckpt lr=3e-4]."""
    short = {"hidden_dim": "h", "mult": "m", "num_decoder_layers": "L", "share_scales": "share",
             "sigma_ls": "s", "precision": "", "checkpointing": "ckpt", "lr": "lr"}
    parts = []
    for k, v in params.items():
        name = short.get(k, k)
        if isinstance(v, bool):
            v = "T" if v else "F"
        elif isinstance(v, float):
            v = f"{v:.1e}"
        parts.append(f"{name}={v}" if name else str(v))
    return " ".join(parts)
