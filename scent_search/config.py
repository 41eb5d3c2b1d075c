"""Frozen configs, one per concern: the model, the target shape of a training step, and training.

Each is validated once, when it is built (from TOML, the CLI or code), and then passed down as is.
`from_mapping` (scent_search/mapping.py, re-exported here) is the single place that turns untrusted dicts
into configs: it refuses unknown keys and wrong types with a message naming the key. The study spec that
holds these configs lives beside the search service (scent_search/search/spec.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from scent_search.mapping import from_mapping
from scent_search.mapping import require as _check

PRECISIONS = ("fp32", "bf16")


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

    def canonical(self) -> "ModelConfig":
        """The same model with the knobs that change nothing normalised, so that equivalent configs compare equal.

        With one scale there is nothing to share (share_scales -> False). With one scale and one decoder layer
        the decoder has no FeedForward at all (no branch blocks, no hv_lins), so mult -> 1. Equivalent configs
        build the same modules, draw the same initial weights and train to the same result.
        """
        out = self
        if out.num_scales == 1 and out.share_scales:
            out = out.replace(share_scales=False)
        if out.num_scales == 1 and out.num_decoder_layers == 1 and out.mult != 1:
            out = out.replace(mult=1)
        return out

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
    """The training step whose peak memory is the search constraint (docs/design.md, "Peak memory").

    Independent of how long a trial trains: it is the shape the researcher wants to train at.
    """

    batch_size: int = 64
    queries: int = 1024  # query points per image (sample_q)
    lr_size: int = 32  # LR input side, pixels
    precision: str = "fp32"  # fp32 | bf16 (autocast on CUDA)
    checkpointing: bool = False  # activation checkpointing of the decoder stacks
    optimizer: str = "adam"
    grad_clip: float = 1.0  # the step clips the global grad norm as the training does (0: no clipping)

    def __post_init__(self) -> None:
        for name in ("batch_size", "queries", "lr_size"):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        _check(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check(self.precision in PRECISIONS, "precision", f"must be one of {list(PRECISIONS)}, got {self.precision!r}")
        _check(self.optimizer == "adam", "optimizer", f"only 'adam' is supported, got {self.optimizer!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TargetShape":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """How one config is trained and evaluated (docs/design.md, "Training and PSNR")."""

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


__all__ = ["ModelConfig", "TargetShape", "TrainConfig", "from_mapping", "PRECISIONS", "SPATIAL_BIASES"]
