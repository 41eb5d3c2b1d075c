"""Study specs (docs/design.md, "The search service"): one TOML file in studies/ -> one frozen, validated StudySpec.

Every table goes through `from_mapping` (unknown keys and wrong types are refused with the dotted key);
[space] is checked against the knob registry (`records.KNOBS`), [sampler] and [pruner] against the
registries below, whose Optuna classes also say which options they take.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna

from scent_search.config import ModelConfig, TargetShape, TrainConfig
from scent_search.errors import ConfigError
from scent_search.mapping import check_type, from_mapping, require, type_name
from scent_search.records import KNOBS, MODEL_KNOBS, OBJECTIVES

# What a study may optimise (records.OBJECTIVES names each): PSNR alone, with peak memory as a constraint;
# or PSNR and the peak, under the same constraint, for optuna-dashboard's Pareto front and hypervolume.
OBJECTIVE_SETS = (("psnr",), ("psnr", "peak_memory"))

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

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def _plain(choice: Any) -> Any:
    return list(choice) if isinstance(choice, tuple) else choice


@dataclass(frozen=True)
class SearchSpace:
    """Choices per knob of KNOBS. A knob that [space] omits gets its default choices; an opt-in lever
    (precision, checkpointing, lr) without choices is not searched: the target's / training's value is used."""

    choices: Mapping[str, tuple | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.choices) - set(KNOBS))
        require(not unknown, unknown[0] if unknown else "", f"unknown knob (known: {', '.join(KNOBS)})")
        full = {}
        for name, knob in KNOBS.items():
            given = self.choices.get(name, knob.default)
            full[name] = None if given is None else knob.normalise(given)
            if full[name] is not None:
                problem = knob.problem(full[name])
                require(problem is None, name, problem or "")
        object.__setattr__(self, "choices", full)

    def __getitem__(self, name: str) -> tuple | None:
        return self.choices[name]

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None, prefix: str = "space.") -> "SearchSpace":
        """From a [space] table: each value a list of choices of the knob's TOML type (`lr`: [low, high])."""
        if not isinstance(data, Mapping):
            raise ConfigError(prefix.rstrip("."), f"must be a table, got {type(data).__name__}", source)
        for key, value in data.items():
            if key not in KNOBS:
                raise ConfigError(prefix + key, f"unknown key (known: {', '.join(sorted(KNOBS))})", source)
            choice = KNOBS[key].choice
            if not check_type(value, tuple[choice, ...] | None):  # None: to_dict's "not searched"
                raise ConfigError(prefix + key, f"expected a list of {type_name(choice)}, got {value!r}", source)
        try:
            return cls(dict(data))
        except ConfigError as e:
            raise e.at(prefix=prefix, source=source) from e

    def to_dict(self) -> dict[str, Any]:
        return {k: None if v is None else [_plain(c) for c in v] for k, v in self.choices.items()}


def _check_options(registry: Mapping[str, Callable], kind: str, name: str, options: Mapping[str, Any],
                   fixed: tuple[str, ...] = ()) -> None:
    require(name in registry, "name", f"unknown {kind} {name!r} (known: {', '.join(registry)})")
    params = inspect.signature(registry[name]).parameters
    for key in fixed:
        require(key not in options, f"options.{key}", f"set the study's `{key}` (or --{key}) instead")
    unknown = sorted(k for k in options if k not in params)
    require(not unknown, f"options.{unknown[0]}" if unknown else "",
            f"unknown option of {name!r} (known: {', '.join(k for k in params if k not in fixed)})")


def _build(registry: Mapping[str, Callable], key: str, name: str, options: Mapping[str, Any], **fixed: Any):
    try:
        return registry[name](**options, **fixed)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}.options", f"{name!r} refused them: {e}") from e


@dataclass(frozen=True)
class SamplerSpec:
    """Optuna sampler by name (SAMPLERS); `options` are its keyword arguments (e.g. n_startup_trials).
    The seed comes from the study (or --seed), not from here."""

    name: str = "tpe"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_options(SAMPLERS, "sampler", self.name, self.options, fixed=("seed",))
        object.__setattr__(self, "options", dict(self.options))

    def build(self, seed: int | None) -> optuna.samplers.BaseSampler:
        return _build(SAMPLERS, "sampler", self.name, self.options, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}


@dataclass(frozen=True)
class PrunerSpec:
    """Optuna pruner by name (PRUNERS), judged on the PSNR reported at each eval point; `options` are its kwargs."""

    name: str = "median"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_options(PRUNERS, "pruner", self.name, self.options)
        object.__setattr__(self, "options", dict(self.options))

    def build(self) -> optuna.pruners.BasePruner:
        return _build(PRUNERS, "pruner", self.name, self.options)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}


@dataclass(frozen=True)
class HeartbeatSpec:
    """Dead-worker detection (seconds): a running trial whose heartbeat is older than `grace_period` is
    failed by the next worker that looks, and retried (same params, fresh attrs) up to `max_retry` times."""

    interval: int = 60
    grace_period: int = 180
    max_retry: int = 2

    def __post_init__(self) -> None:
        require(self.interval >= 1, "interval", f"must be >= 1 second, got {self.interval}")
        require(self.grace_period > self.interval, "grace_period",
                f"must be > interval ({self.interval} s), got {self.grace_period}")
        require(self.max_retry >= 0, "max_retry", f"must be >= 0, got {self.max_retry}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RepeatsSpec:
    """The study's noise, measured inside it (docs/search.md, "Repeats"): once the exploration has its
    `n_trials`, the `top_k` trained feasible configs with the highest PSNR are trained again with `seeds`
    further training seeds each ([train] seed + 1, ..., + seeds). top_k = 0: off."""

    top_k: int = 0
    seeds: int = 2

    def __post_init__(self) -> None:
        require(self.top_k >= 0, "top_k", f"must be >= 0 (configs to repeat; 0: off), got {self.top_k}")
        require(self.seeds >= 1 or self.top_k == 0, "seeds",
                f"must be >= 1 (further seeds per repeated config) when top_k > 0, got {self.seeds}")
        require(self.seeds >= 0, "seeds", f"must be >= 0 (further seeds per repeated config), got {self.seeds}")

    @property
    def on(self) -> bool:
        return self.top_k > 0 and self.seeds > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StudySpec:
    """A study: what to search, under which memory budget, how each trial trains, and where it is stored.

    `model` holds the fixed constructor arguments; the searched knobs (MODEL_KNOBS) come from `space`.
    `storage` None means sqlite:///studies/<name>.db. `name` defaults to the file's stem.
    `objectives` (OBJECTIVE_SETS): ("psnr",), or ("psnr", "peak_memory"), which cannot prune (`pruner` "nop").
    """

    name: str | None = None
    budget_gib: float | None = None  # peak GPU memory budget of one training step at `target`, GiB (2**30)
    objectives: tuple[str, ...] = ("psnr",)
    storage: str | None = None
    n_trials: int = 20  # the study's total target of finished trials (not "N more")
    seed: int | None = 0  # sampler seed; None: nondeterministic
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data: str = "default"  # "default" (embedded scikit-image photos) or a folder of PNG/JPEG images
    target: TargetShape = field(default_factory=TargetShape)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    space: SearchSpace = field(default_factory=SearchSpace)
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    heartbeat: HeartbeatSpec = field(default_factory=HeartbeatSpec)
    repeats: RepeatsSpec = field(default_factory=RepeatsSpec)
    source: str | None = field(default=None, compare=False)  # the file it was read from (for messages)

    def __post_init__(self) -> None:
        require(bool(self.name) and isinstance(self.name, str), "name", "required (a non-empty string)")
        require(self.budget_gib is not None, "budget_gib", "required: the peak-memory budget in GiB")
        require(self.budget_gib > 0, "budget_gib", f"must be > 0 GiB, got {self.budget_gib}")
        require(math.isfinite(self.budget_gib), "budget_gib", f"must be a finite number of GiB, got {self.budget_gib}")
        require(self.n_trials >= 1, "n_trials", f"must be >= 1, got {self.n_trials}")
        require(bool(_DEVICE_RE.match(self.device)), "device",
                f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        require(bool(self.data), "data", "must be 'default' or a folder path")
        object.__setattr__(self, "objectives", tuple(self.objectives))
        require(self.objectives in OBJECTIVE_SETS, "objectives",
                f"must be {' or '.join(str(list(o)) for o in OBJECTIVE_SETS)}, got {list(self.objectives)}")
        require(not self.multi_objective or self.pruner.name == "nop", "pruner.name",
                f"a multi-objective study cannot prune (Optuna's pruners judge one objective), got "
                f"{self.pruner.name!r}: remove [pruner] or set name = \"nop\"")
        # A trial trains at the precision / checkpointing of the step whose memory is its constraint.
        object.__setattr__(self, "train", self.train.replace(precision=self.target.precision,
                                                             checkpointing=self.target.checkpointing))
        # ... and the step whose memory is measured clips gradients as the training does.
        object.__setattr__(self, "target", self.target.replace(grad_clip=self.train.grad_clip))
        patch = self.model.patch_size
        require(self.target.lr_size % patch == 0, "target.lr_size",
                f"{self.target.lr_size} is not divisible by model.patch_size={patch}")
        require(self.train.lr_size % patch == 0, "train.lr_size",
                f"{self.train.lr_size} is not divisible by model.patch_size={patch}")
        lr_val = self.train.val_hr_size / 4  # validation LR side at x4
        require(lr_val == int(lr_val) and int(lr_val) % patch == 0, "train.val_hr_size",
                f"{self.train.val_hr_size} / 4 (the x4 validation LR side) is not divisible by "
                f"model.patch_size={patch}")
        # Every single choice must give a valid model with the fixed arguments.
        for knob in MODEL_KNOBS:
            for choice in self.space[knob] or ():
                try:
                    self.model.replace(**{knob: choice})
                except ConfigError as e:
                    raise ConfigError(f"space.{knob}", f"choice {_plain(choice)!r}: {e.message}") from e

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o][0] for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        """What Optuna stores as the study's metric names, and optuna-dashboard shows."""
        return [OBJECTIVES[o][1] for o in self.objectives]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; `budget_gib` at the top and the target shape under `target` (the report reads
        them from the study's `spec` attr)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else list(v) if isinstance(v, tuple) else v
        out["model"] = {k: v for k, v in out["model"].items() if k not in MODEL_KNOBS or self.space[k] is None}
        out["train"] = {k: v for k, v in out["train"].items() if k not in ("precision", "checkpointing")}
        out["target"] = {k: v for k, v in out["target"].items() if k != "grad_clip"}  # the training's
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> "StudySpec":
        """Build from a parsed TOML document (unknown keys and wrong types are refused with the key's dotted
        name)."""
        if not isinstance(data, Mapping):
            raise ConfigError("spec", f"must be a table, got {type(data).__name__}", source)
        data = dict(data)
        if "source" in data:
            raise ConfigError("source", "unknown key (it is set from the file's path)", source)
        data["source"] = source
        if "name" not in data and source:
            data["name"] = Path(source).stem
        model, space = data.get("model", {}), data.get("space", {})
        if isinstance(model, Mapping):
            # Searched: a knob with default choices, or an opt-in one that [space] lists.
            searched = sorted(k for k in set(model) & set(MODEL_KNOBS)
                              if KNOBS[k].default is not None or (isinstance(space, Mapping) and space.get(k) is not None))
            if searched:
                raise ConfigError(f"model.{searched[0]}", "is searched: give its choices in [space], not in [model]",
                                  source)
        train = data.get("train", {})
        if isinstance(train, Mapping):
            for key in ("precision", "checkpointing"):
                if key in train:
                    raise ConfigError(f"train.{key}", "set it in [target] (or search it in [space]): "
                                      "a trial trains at the step shape whose memory is the constraint", source)
        target = data.get("target", {})
        if isinstance(target, Mapping) and "grad_clip" in target:
            raise ConfigError("target.grad_clip", "set it in [train]: the measured step clips as the training does",
                              source)
        objectives = data.get("objectives")
        if isinstance(objectives, list) and len(objectives) > 1 and "pruner" not in data:
            data["pruner"] = {"name": "nop"}  # multi-objective: nothing to prune with (refused if [pruner] says so)
        if "space" in data:
            data["space"] = SearchSpace.from_dict(data["space"], source=source)
        for key, sub in _SPEC_TABLES.items():
            if key in data:
                data[key] = from_mapping(sub, data[key], source=source, prefix=f"{key}.")
        return from_mapping(cls, data, source=source)

    def replace(self, **changes: Any) -> "StudySpec":
        return dataclasses.replace(self, **changes)


_SPEC_TABLES: dict[str, type] = {"target": TargetShape, "train": TrainConfig, "model": ModelConfig,
                                 "sampler": SamplerSpec, "pruner": PrunerSpec, "heartbeat": HeartbeatSpec,
                                 "repeats": RepeatsSpec}


DEFAULT_SPEC = Path("studies/default.toml")  # relative to the working directory


def packaged_default_spec() -> Path:
    """The copy of studies/default.toml shipped inside the package (used when ./studies/ has none)."""
    return Path(str(resources.files("scent_search") / "studies" / "default.toml"))


def default_spec_path() -> Path:
    """What `run` and `map` read without a STUDY.toml: ./studies/default.toml, else the packaged copy."""
    return DEFAULT_SPEC if DEFAULT_SPEC.is_file() else packaged_default_spec()


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study spec TOML file. Errors name the file and the dotted key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("STUDY", f"cannot read spec: {e.strerror or e}", str(path)) from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("toml", f"not valid TOML: {e}", str(path)) from e
    return StudySpec.from_dict(data, source=str(path))


__all__ = ["DEFAULT_SPEC", "HeartbeatSpec", "OBJECTIVE_SETS", "PRUNERS", "PrunerSpec", "RepeatsSpec", "SAMPLERS",
           "SamplerSpec", "SearchSpace", "StudySpec", "default_spec_path", "load_spec", "packaged_default_spec"]
