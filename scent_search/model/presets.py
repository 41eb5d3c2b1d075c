"""Named presets of DESIGN.md section 2: each is the baseline with the listed changes."""

from __future__ import annotations

from typing import Any

from scent_search.config import ModelConfig
from scent_search.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "option-a": {"hidden_dim": 256},
    "option-b": {"hidden_dim": 256, "num_decoder_layers": 1},
    "option-c": {"mult": 2},
    "solution-1": {"mult": 2},
    "solution-2": {"hidden_dim": 256},
    "solution-3": {"num_decoder_layers": 1},
    "solution-4": {"share_scales": True},
    "solution-5": {"sigma_ls": (64.0,)},
}


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The full ModelConfig of preset `name`, with `overrides` applied on top."""
    if name not in PRESETS:
        raise ConfigError("preset", f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return ModelConfig(**{**PRESETS[name], **overrides})
