"""The search space: Optuna suggestions -> one trial's (ModelConfig, TargetShape, TrainConfig).

Each knob of `records.KNOBS` that the spec's [space] searches is suggested, in the registry's order, and
set in the configs it names; an opt-in lever that is not searched keeps the target's value.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from scent_search.config import ModelConfig, TargetShape, TrainConfig
from scent_search.records.knobs import KNOBS, MODEL, TARGET, TRAIN
from scent_search.search.spec import StudySpec


@dataclass(frozen=True)
class TrialConfig:
    """What one trial profiles and trains: the model, the target step's shape, and the training run."""

    model: ModelConfig
    shape: TargetShape
    train: TrainConfig


def suggest(trial: optuna.Trial, spec: StudySpec) -> TrialConfig:
    """Suggest the knobs of `spec.space` on `trial` (a retried trial gets its stored params back)."""
    sets: dict[str, dict] = {MODEL: {}, TARGET: {}, TRAIN: {}}
    for name, knob in KNOBS.items():
        choices = spec.space[name]
        if choices is not None:
            value = knob.suggest(trial, choices)
            for config in knob.sets:
                sets[config][name] = value
    # The trained step runs at the measured step's precision and checkpointing (StudySpec keeps the
    # training's equal to the target's; a searched lever sets both).
    return TrialConfig(model=spec.model.replace(**sets[MODEL]), shape=spec.target.replace(**sets[TARGET]),
                       train=spec.train.replace(**sets[TRAIN]))


def discrete_configs(spec: StudySpec) -> list[TrialConfig]:
    """Every combination of the searched discrete knobs (a searched `lr` range keeps the training's value)."""
    import itertools

    names = [n for n, k in KNOBS.items() if spec.space[n] is not None and not k.log_range]
    out = []
    for values in itertools.product(*(spec.space[n] for n in names)):
        sets: dict[str, dict] = {MODEL: {}, TARGET: {}, TRAIN: {}}
        for name, value in zip(names, values):
            for config in KNOBS[name].sets:
                sets[config][name] = value
        out.append(TrialConfig(model=spec.model.replace(**sets[MODEL]), shape=spec.target.replace(**sets[TARGET]),
                               train=spec.train.replace(**sets[TRAIN])))
    return out
