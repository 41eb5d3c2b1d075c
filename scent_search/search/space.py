"""The search space: Optuna params -> one trial's (ModelConfig, TargetShape, TrainConfig).

Each knob of `records.KNOBS` that the spec's [space] searches is suggested, in the registry's order, and
set in the configs it names; an opt-in lever that is not searched keeps the target's value.
`trial_config(spec, params)` is the one mapping from stored params to configs: `suggest` and the feasibility
map (search/feasibility.py) both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

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


def trial_config(spec: StudySpec, params: Mapping[str, Any]) -> TrialConfig:
    """The configs that `params` (Optuna's stored form, e.g. sigma_ls "128,32") set. A searched knob missing
    from `params` keeps the spec's value (the feasibility map leaves out `lr`: it changes no peak)."""
    sets: dict[str, dict] = {MODEL: {}, TARGET: {}, TRAIN: {}}
    for name, knob in KNOBS.items():
        if spec.space[name] is not None and name in params:
            for config in knob.sets:
                sets[config][name] = knob.value(params[name])
    # The trained step runs at the measured step's precision and checkpointing (StudySpec keeps the
    # training's equal to the target's; a searched lever sets both).
    return TrialConfig(model=spec.model.replace(**sets[MODEL]), shape=spec.target.replace(**sets[TARGET]),
                       train=spec.train.replace(**sets[TRAIN]))


def suggest(trial: optuna.Trial, spec: StudySpec) -> TrialConfig:
    """Suggest the knobs of `spec.space` on `trial` (a retried trial gets its stored params back; a trial whose
    knobs were all suggested already, e.g. under the runner's slot lock, is not asked again)."""
    params = trial.params
    for name, knob in KNOBS.items():
        choices = spec.space[name]
        if choices is not None and name not in params:
            knob.suggest(trial, choices)
    return trial_config(spec, trial.params)
