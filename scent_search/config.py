"""Frozen configs, one per concern: the model, the target shape of a training step, and training.

Each is validated once, when it is built (from TOML, the CLI or code), and then passed down as is.
`from_mapping` is the single place that turns untrusted dicts into configs: it refuses unknown keys
and wrong types with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from scent_search.errors import ConfigError

PRECISIONS = ("fp32", "bf16")


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(key, message)


SPATIAL_BIASES = ("grid", "raster", "none")  # modulation_ca's locality prior (scent_search/model/decoder.py)


@dataclass(frozen=True)
class ModelConfig:
    """Constructor arguments of MambaSCENTHybrid (docs/design.md, "The model"). Defaults are the researcher's baseline."""

    patch_size: int = 2
    in_channels: int = 3
    dim: int = 256  # token width of encoder and processor (= decoder context width)
    num_lp_tokens: int = 256  # learnable LP tokens spread through the patch sequence; their outputs are the latents
    feature_dim: int = 64  # width of each Gaussian Fourier feature map ([sin, cos] halves)
    sigma_q: float = 16.0  # Fourier bandwidths divide: B = randn / sigma (the researcher's convention)
    sigma_ls: tuple[float, ...] = (128.0, 32.0)  # one decoder branch per entry; len = scale count
    hidden_dim: int = 512
    mult: int = 4
    num_processor_layers: int = 4
    num_decoder_layers: int = 3
    share_scales: bool = False
    modulation_heads: int = 2  # modulation_ca: heads=2, dim_head=64 in the researcher's code
    # How modulation_ca favours the LP tokens near a query: "grid" (2-D distance, learnable strength),
    # "raster" (the researcher's 1-D raster approximation, fixed strength 10) or "none".
    spatial_bias: str = "grid"
    # Predict a correction over the bicubic upsample of the LR input instead of raw RGB.
    # Off by default: the researcher's model predicts RGB directly.
    residual_bicubic: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma_ls", tuple(float(s) for s in self.sigma_ls))
        for name in ("patch_size", "in_channels", "dim", "num_lp_tokens", "feature_dim", "hidden_dim",
                     "num_processor_layers", "num_decoder_layers", "modulation_heads"):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        _check(self.mult >= 1, "mult", f"must be >= 1, got {self.mult}")
        _check(len(self.sigma_ls) >= 1, "sigma_ls", "must hold at least one bandwidth (the scale count is its length)")
        _check(all(s > 0 for s in self.sigma_ls), "sigma_ls", f"every bandwidth must be > 0, got {list(self.sigma_ls)}")
        _check(self.sigma_q > 0, "sigma_q", f"must be > 0, got {self.sigma_q}")
        _check(self.feature_dim % 2 == 0, "feature_dim", f"must be even ([sin, cos] halves), got {self.feature_dim}")
        _check(self.spatial_bias in SPATIAL_BIASES, "spatial_bias",
               f"must be one of {list(SPATIAL_BIASES)}, got {self.spatial_bias!r}")

    @property
    def num_scales(self) -> int:
        return len(self.sigma_ls)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sigma_ls"] = list(self.sigma_ls)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> "ModelConfig":
        return from_mapping(cls, data, source=source)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TargetShape:
    """The training step whose peak memory is the search constraint (DESIGN.md section 4).

    Independent of how long a trial trains: it is the shape the researcher wants to train at.
    """

    batch_size: int = 64
    queries: int = 1024  # query points per image (sample_q)
    lr_size: int = 32  # LR input side, pixels
    precision: str = "fp32"  # fp32 | bf16 (autocast on CUDA)
    checkpointing: bool = False  # activation checkpointing of the decoder stacks
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        for name in ("batch_size", "queries", "lr_size"):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        _check(self.precision in PRECISIONS, "precision", f"must be one of {list(PRECISIONS)}, got {self.precision!r}")
        _check(self.optimizer == "adam", "optimizer", f"only 'adam' is supported, got {self.optimizer!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TargetShape":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """How one config is trained and evaluated (DESIGN.md section 3)."""

    steps: int = 1000  # optimisation steps; the run also stops at `seconds` if set
    seconds: float | None = None
    batch_size: int = 16
    sample_q: int = 1024  # query pixels per training sample
    lr_size: int = 32  # LR input side
    scale_min: float = 1.0
    scale_max: float = 4.0
    augment: bool = True  # random flips and transposes of the training crops
    lr: float = 1e-4  # Adam learning rate
    lr_schedule: str = "cosine"  # cosine | constant
    warmup_steps: int = 0
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    precision: str = "fp32"  # bf16 autocast applies on CUDA only
    checkpointing: bool = False
    eval_points: int = 4  # validation PSNR is computed this many times, evenly spaced (last at the end)
    eval_scales: tuple[float, ...] = (4.0,)  # x4 is the reported objective
    val_hr_size: int = 128
    val_crops: int = 16  # fixed validation crops, dealt round-robin over the validation images
    eval_chunk: int = 4096  # queries decoded per chunk at evaluation
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "eval_scales", tuple(float(s) for s in self.eval_scales))
        for name in ("steps", "batch_size", "sample_q", "lr_size", "eval_points", "val_hr_size", "val_crops",
                     "eval_chunk"):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        _check(self.seconds is None or self.seconds > 0, "seconds", f"must be > 0, got {self.seconds}")
        _check(1.0 <= self.scale_min <= self.scale_max, "scale_min",
               f"need 1 <= scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")
        smallest_crop = round(self.lr_size * self.scale_min)  # queries are drawn without replacement from it
        _check(self.sample_q <= smallest_crop ** 2, "sample_q",
               f"must be <= {smallest_crop ** 2}, the pixels of the smallest HR crop "
               f"(lr_size*scale_min = {smallest_crop})")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(self.lr_schedule in ("cosine", "constant"), "lr_schedule",
               f"must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        _check(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _check(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check(self.precision in PRECISIONS, "precision", f"must be one of {list(PRECISIONS)}, got {self.precision!r}")
        _check(len(self.eval_scales) >= 1 and all(s >= 1 for s in self.eval_scales), "eval_scales",
               f"must be a non-empty list of scales >= 1, got {list(self.eval_scales)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eval_scales"] = list(self.eval_scales)
        return d

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------------
# Untrusted mappings -> configs


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether a TOML/JSON value fits a dataclass field annotation (int is accepted for float)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, Mapping)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def from_mapping(cls: type, data: Mapping[str, Any], source: str | None = None, prefix: str = ""):
    """Build the frozen dataclass `cls` from `data`, refusing unknown keys and wrong types.

    `prefix` is prepended to key names in messages (e.g. "model." for a [model] table of a study spec).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or cls.__name__, f"must be a table, got {type(data).__name__}", source)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(prefix + unknown[0], f"unknown key (known: {', '.join(sorted(names))})", source)
    for key, value in data.items():
        if not _type_ok(value, hints[key]):
            raise ConfigError(prefix + key, f"expected {_type_name(hints[key])}, got {value!r}", source)
    try:
        return cls(**data)
    except ConfigError as e:
        raise ConfigError(prefix + e.key, str(e).split(": ", 1)[1], source) from e


__all__ = ["ModelConfig", "TargetShape", "TrainConfig", "from_mapping", "PRECISIONS", "SPATIAL_BIASES"]


# --------------------------------------------------------------------------------------------------
# Study specs (DESIGN.md section 5): one TOML file in studies/ -> one frozen StudySpec

# The searched knobs of MambaSCENTHybrid: they come from [space], never from [model].
SEARCHED_KNOBS = ("hidden_dim", "mult", "num_decoder_layers", "share_scales", "sigma_ls")
SAMPLERS = ("tpe", "random")  # their classes live in search/space.py (a registry); names are checked here
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "nop")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def _check_choices(key: str, choices: tuple | None, optional: bool = False) -> None:
    if choices is None and optional:
        return
    _check(choices is not None and len(choices) >= 1, key, "needs at least one choice")
    _check(len(set(choices)) == len(choices), key, f"has duplicate choices: {list(choices)}")


@dataclass(frozen=True)
class SearchSpace:
    """Choices for the searched knobs. Opt-in levers (precision, checkpointing, lr) are searched only
    when given; otherwise the target shape / training values are used."""

    hidden_dim: tuple[int, ...] = (256, 512)
    mult: tuple[int, ...] = (2, 4)
    num_decoder_layers: tuple[int, ...] = (1, 2, 3)
    share_scales: tuple[bool, ...] = (False, True)
    sigma_ls: tuple[tuple[float, ...], ...] = ((64.0,), (128.0, 32.0), (128.0, 64.0, 32.0))  # scale count = len
    precision: tuple[str, ...] | None = None  # opt-in: e.g. ["fp32", "bf16"] (the step's autocast dtype)
    checkpointing: tuple[bool, ...] | None = None  # opt-in: activation checkpointing of the decoder stacks
    lr: tuple[float, ...] | None = None  # opt-in: [low, high] Adam learning rate, log-uniform

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "mult", "num_decoder_layers", "share_scales", "precision", "checkpointing"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "sigma_ls", tuple(tuple(float(s) for s in c) for c in self.sigma_ls))
        for name in ("hidden_dim", "mult", "num_decoder_layers", "share_scales", "sigma_ls"):
            _check_choices(name, getattr(self, name))
        for name in ("precision", "checkpointing"):
            _check_choices(name, getattr(self, name), optional=True)
        for name in ("hidden_dim", "mult", "num_decoder_layers"):
            bad = [c for c in getattr(self, name) if c < 1]
            _check(not bad, name, f"every choice must be >= 1, got {bad}")
        _check(all(len(c) >= 1 and all(s > 0 for s in c) for c in self.sigma_ls), "sigma_ls",
               f"every choice must be a non-empty list of bandwidths > 0, got {[list(c) for c in self.sigma_ls]}")
        if self.precision is not None:
            bad = [p for p in self.precision if p not in PRECISIONS]
            _check(not bad, "precision", f"choices must be in {list(PRECISIONS)}, got {bad}")
        if self.lr is not None:
            object.__setattr__(self, "lr", tuple(float(x) for x in self.lr))
            _check(len(self.lr) == 2 and 0 < self.lr[0] < self.lr[1], "lr",
                   f"must be a range [low, high] with 0 < low < high, got {list(self.lr)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sigma_ls"] = [list(c) for c in self.sigma_ls]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class SamplerSpec:
    """Optuna sampler by name; `options` are its keyword arguments (e.g. n_startup_trials).
    The seed comes from the study (or --seed), not from here."""

    name: str = "tpe"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.name in SAMPLERS, "name", f"unknown sampler {self.name!r} (known: {', '.join(SAMPLERS)})")
        _check("seed" not in self.options, "options.seed", "set the study's `seed` (or --seed) instead")
        object.__setattr__(self, "options", dict(self.options))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}


@dataclass(frozen=True)
class PrunerSpec:
    """Optuna pruner by name, judged on the PSNR reported at each eval point; `options` are its kwargs."""

    name: str = "median"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.name in PRUNERS, "name", f"unknown pruner {self.name!r} (known: {', '.join(PRUNERS)})")
        object.__setattr__(self, "options", dict(self.options))

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
        _check(self.interval >= 1, "interval", f"must be >= 1 second, got {self.interval}")
        _check(self.grace_period > self.interval, "grace_period",
               f"must be > interval ({self.interval} s), got {self.grace_period}")
        _check(self.max_retry >= 0, "max_retry", f"must be >= 0, got {self.max_retry}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StudySpec:
    """A study: what to search, under which memory budget, how each trial trains, and where it is stored.

    `model` holds the fixed constructor arguments; the searched knobs (SEARCHED_KNOBS) come from `space`.
    `storage` None means sqlite:///studies/<name>.db. `name` defaults to the file's stem.
    """

    name: str | None = None
    budget_gib: float | None = None  # peak GPU memory budget of one training step at `target`, GiB (2**30)
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
    source: str | None = field(default=None, compare=False)  # the file it was read from (for messages)

    def __post_init__(self) -> None:
        _check(bool(self.name) and isinstance(self.name, str), "name", "required (a non-empty string)")
        _check(self.budget_gib is not None, "budget_gib", "required: the peak-memory budget in GiB")
        _check(self.budget_gib > 0, "budget_gib", f"must be > 0 GiB, got {self.budget_gib}")
        _check(self.n_trials >= 1, "n_trials", f"must be >= 1, got {self.n_trials}")
        _check(bool(_DEVICE_RE.match(self.device)), "device",
               f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        _check(bool(self.data), "data", "must be 'default' or a folder path")
        # A trial trains at the precision / checkpointing of the step whose memory is its constraint.
        object.__setattr__(self, "train", self.train.replace(precision=self.target.precision,
                                                             checkpointing=self.target.checkpointing))
        patch = self.model.patch_size
        _check(self.target.lr_size % patch == 0, "target.lr_size",
               f"{self.target.lr_size} is not divisible by model.patch_size={patch}")
        _check(self.train.lr_size % patch == 0, "train.lr_size",
               f"{self.train.lr_size} is not divisible by model.patch_size={patch}")
        lr_val = self.train.val_hr_size / 4  # validation LR side at x4
        _check(lr_val == int(lr_val) and int(lr_val) % patch == 0, "train.val_hr_size",
               f"{self.train.val_hr_size} / 4 (the x4 validation LR side) is not divisible by "
               f"model.patch_size={patch}")
        # Every single choice must give a valid model with the fixed arguments.
        for knob in SEARCHED_KNOBS:
            for choice in getattr(self.space, knob):
                try:
                    self.model.replace(**{knob: choice})
                except ConfigError as e:
                    raise ConfigError(f"space.{knob}", f"choice {_plain(choice)!r}: {str(e).split(': ', 1)[1]}") from e

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; `budget_gib` at the top and the target shape under `target` (report/ reads them)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else v
        out["model"] = {k: v for k, v in out["model"].items() if k not in SEARCHED_KNOBS}
        out["train"] = {k: v for k, v in out["train"].items() if k not in ("precision", "checkpointing")}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> "StudySpec":
        """Build from a parsed TOML document; every table goes through `from_mapping` (unknown keys and
        wrong types are refused with the key's dotted name)."""
        if not isinstance(data, Mapping):
            raise ConfigError("spec", f"must be a table, got {type(data).__name__}", source)
        data = dict(data)
        if "source" in data:
            raise ConfigError("source", "unknown key (it is set from the file's path)", source)
        data["source"] = source
        if "name" not in data and source:
            data["name"] = Path(source).stem
        model = data.get("model", {})
        if isinstance(model, Mapping):
            searched = sorted(set(model) & set(SEARCHED_KNOBS))
            if searched:
                raise ConfigError(f"model.{searched[0]}", "is searched: give its choices in [space], not in [model]",
                                  source)
        train = data.get("train", {})
        if isinstance(train, Mapping):
            for key in ("precision", "checkpointing"):
                if key in train:
                    raise ConfigError(f"train.{key}", "set it in [target] (or search it in [space]): "
                                      "a trial trains at the step shape whose memory is the constraint", source)
        for key, sub in _SPEC_TABLES.items():
            if key in data:
                data[key] = from_mapping(sub, data[key], source=source, prefix=f"{key}.")
        return from_mapping(cls, data, source=source)

    def replace(self, **changes: Any) -> "StudySpec":
        return dataclasses.replace(self, **changes)


def _plain(choice: Any) -> Any:
    return list(choice) if isinstance(choice, tuple) else choice


_SPEC_TABLES: dict[str, type] = {"target": TargetShape, "train": TrainConfig, "model": ModelConfig,
                                 "space": SearchSpace, "sampler": SamplerSpec, "pruner": PrunerSpec,
                                 "heartbeat": HeartbeatSpec}


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


__all__ += ["SearchSpace", "SamplerSpec", "PrunerSpec", "HeartbeatSpec", "StudySpec", "load_spec",
            "SEARCHED_KNOBS", "SAMPLERS", "PRUNERS"]
