"""MambaSCENTHybrid and its parts. See docs/design.md, "The model"."""

from scent_search.model.hybrid import Latents, MambaSCENTHybrid, bicubic_at, load_checkpoint, save_checkpoint
from scent_search.model.presets import ALIASES, PRESETS, preset_config, preset_names
from scent_search.model.processor import mamba_ssm_available, selective_scan, selective_scan_ref

__all__ = ["MambaSCENTHybrid", "Latents", "PRESETS", "ALIASES", "preset_config", "preset_names", "save_checkpoint",
           "load_checkpoint", "bicubic_at", "selective_scan", "selective_scan_ref", "mamba_ssm_available"]
