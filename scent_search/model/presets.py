"""Named presets: the researcher's baseline, and the baseline with one documented change each.

Presets are named by what they change. The researcher's own names for them (the options and solutions of the
memory analysis, docs/design.md "The researcher's claims") are kept as aliases, so `--preset option-a` still works.
"""

from __future__ import annotations

from typing import Any

from scent_search.config import ModelConfig
from scent_search.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "baseline": {},  # hidden_dim 512, mult 4, 3 decoder layers, sigma_ls [128, 32], no sharing
    "hidden-256": {"hidden_dim": 256},
    "hidden-256-layers-1": {"hidden_dim": 256, "num_decoder_layers": 1},
    "mult-2": {"mult": 2},
    "layers-1": {"num_decoder_layers": 1},
    "shared-scales": {"share_scales": True},
    "one-scale": {"sigma_ls": (64.0,)},
}

# The researcher's names -> ours.
ALIASES: dict[str, str] = {
    "option-a": "hidden-256", "solution-2": "hidden-256",
    "option-b": "hidden-256-layers-1",
    "option-c": "mult-2", "solution-1": "mult-2",
    "solution-3": "layers-1",
    "solution-4": "shared-scales",
    "solution-5": "one-scale",
}


def preset_names() -> list[str]:
    """Every accepted name: the presets, then the aliases."""
    return [*PRESETS, *ALIASES]


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The full ModelConfig of preset `name` (or an alias of one), with `overrides` applied on top."""
    canonical = ALIASES.get(name, name)
    if canonical not in PRESETS:
        raise ConfigError("preset", f"unknown preset {name!r} (known: {', '.join(preset_names())})")
    return ModelConfig(**{**PRESETS[canonical], **overrides})
