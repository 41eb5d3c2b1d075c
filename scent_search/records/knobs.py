"""The searched knobs, each defined once: its name, the TOML type of its choices, which configs it sets,
how it is suggested and stored in Optuna, its default choices, and how a terminal line and the report
show it.

A knob's name is the Optuna param name and the field it sets in ModelConfig / TargetShape / TrainConfig.
The spec's [space] table, `scent-search run --space NAME=CHOICES`, the suggestion of a trial, the report
columns and the terminal line all read KNOBS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import optuna

from scent_search.config import PRECISIONS, SPATIAL_BIASES

MODEL, TARGET, TRAIN = "model", "target", "train"  # the configs a knob sets


def _at_least_one(choices: Sequence[int]) -> str | None:
    bad = [c for c in choices if c < 1]
    return f"every choice must be >= 1, got {bad}" if bad else None


def _bandwidths(choices: Sequence[tuple[float, ...]]) -> str | None:
    if all(len(c) >= 1 and all(s > 0 for s in c) for c in choices):
        return None
    return f"every choice must be a non-empty list of bandwidths > 0, got {[list(c) for c in choices]}"


def _precisions(choices: Sequence[str]) -> str | None:
    bad = [p for p in choices if p not in PRECISIONS]
    return f"choices must be in {list(PRECISIONS)}, got {bad}" if bad else None


def _biases(choices: Sequence[str]) -> str | None:
    bad = [b for b in choices if b not in SPATIAL_BIASES]
    return f"choices must be in {list(SPATIAL_BIASES)}, got {bad}" if bad else None


def _log_range(choices: Sequence[float]) -> str | None:
    if len(choices) == 2 and 0 < choices[0] < choices[1]:
        return None
    return f"must be a range [low, high] with 0 < low < high, got {list(choices)}"


def sigma_label(sigma_ls: Sequence[float]) -> str:
    """(128.0, 32.0) -> "128,32": the categorical choice shown in Optuna and the dashboard."""
    return ",".join(f"{s:g}" for s in sigma_ls)


def scales_of(label: str) -> tuple[float, ...]:
    return tuple(float(s) for s in label.split(","))


@dataclass(frozen=True)
class Knob:
    name: str
    choice: Any  # the TOML type of one choice, as `mapping.check_type` reads it
    sets: tuple[str, ...]  # MODEL, TARGET, TRAIN
    short: str  # its name in a terminal line ("" shows the value alone)
    default: tuple | None  # the choices when [space] omits it; None: an opt-in lever, searched only when listed
    check: Callable[[tuple], str | None] | None = None  # why the choices are impossible, or None
    log_range: bool = False  # choices are [low, high], suggested log-uniformly (else: categorical)
    to_optuna: Callable[[Any], Any] | None = None  # a choice -> Optuna's scalar categorical value
    from_optuna: Callable[[Any], Any] | None = None

    def normalise(self, choices: Sequence[Any]) -> tuple:
        """TOML lists -> tuples (floats as floats)."""
        if self.choice == tuple[float, ...]:
            return tuple(tuple(float(s) for s in c) for c in choices)
        return tuple(float(c) for c in choices) if self.choice is float else tuple(choices)

    def problem(self, choices: tuple) -> str | None:
        """Why `choices` cannot be searched, or None."""
        if not self.log_range:
            if not choices:
                return "needs at least one choice"
            if len(set(choices)) != len(choices):
                return f"has duplicate choices: {[list(c) if isinstance(c, tuple) else c for c in choices]}"
        return self.check(choices) if self.check else None

    def distribution(self, choices: tuple) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution of `choices`: what `suggest` asks for and a sampler's search space holds."""
        if self.log_range:
            return optuna.distributions.FloatDistribution(choices[0], choices[1], log=True)
        encode = self.to_optuna or (lambda c: c)
        return optuna.distributions.CategoricalDistribution([encode(c) for c in choices])

    def value(self, param: Any) -> Any:
        """A stored Optuna param -> the config value it sets ("128,32" -> (128.0, 32.0))."""
        return self.from_optuna(param) if self.from_optuna else param

    def suggest(self, trial: optuna.Trial, choices: tuple) -> Any:
        """The trial's value (a retried trial gets its stored param back)."""
        dist = self.distribution(choices)
        if self.log_range:
            return trial.suggest_float(self.name, dist.low, dist.high, log=True)
        return self.value(trial.suggest_categorical(self.name, dist.choices))

    def label(self, param: Any) -> str:
        """The stored param as a terminal line shows it: h=256, share=F, s=128,32, bf16, lr=3.0e-04."""
        if isinstance(param, bool):
            param = "T" if param else "F"
        elif isinstance(param, float):
            param = f"{param:.1e}"
        return f"{self.short}={param}" if self.short else str(param)


# In suggestion order (a seeded sampler draws in this order: keep it).
KNOBS: Mapping[str, Knob] = {k.name: k for k in (
    Knob("hidden_dim", int, (MODEL,), "h", (256, 512), _at_least_one),
    Knob("mult", int, (MODEL,), "m", (2, 4), _at_least_one),
    Knob("num_decoder_layers", int, (MODEL,), "L", (1, 2, 3), _at_least_one),
    Knob("share_scales", bool, (MODEL,), "share", (False, True)),
    # One decoder branch per bandwidth: the scale count is a choice's length. Optuna's categorical choices
    # must be scalars, so a choice is stored as its label "128,32".
    Knob("sigma_ls", tuple[float, ...], (MODEL,), "s", ((64.0,), (128.0, 32.0), (128.0, 64.0, 32.0)), _bandwidths,
         to_optuna=sigma_label, from_optuna=scales_of),
    # Opt-in: modulation_ca's locality prior (else the [model] value, "grid" by default).
    Knob("spatial_bias", str, (MODEL,), "bias", None, _biases),
    # Opt-in memory levers: the step's autocast dtype and activation checkpointing of the decoder stacks.
    # A trial trains at the step shape whose peak is its constraint, so they set the target and training.
    Knob("precision", str, (TARGET, TRAIN), "", None, _precisions),
    Knob("checkpointing", bool, (TARGET, TRAIN), "ckpt", None),
    Knob("lr", float, (TRAIN,), "lr", None, _log_range, log_range=True),  # Adam learning rate
)}

MODEL_KNOBS = tuple(name for name, k in KNOBS.items() if k.sets == (MODEL,))


def knobs_label(params: Mapping[str, Any]) -> str:
    """Short knob summary for a terminal line: h=256 m=2 L=3 share=F s=128,32 [bf16 ckpt=T lr=3.0e-04]."""
    return " ".join(KNOBS[k].label(v) if k in KNOBS else f"{k}={v}" for k, v in params.items())


def param_order(names: Sequence[str]) -> list[str]:
    """Param names in KNOBS order, unknown ones after them in the order given (the report's columns)."""
    return [k for k in KNOBS if k in names] + [n for n in names if n not in KNOBS]
