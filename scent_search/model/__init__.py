"""MambaSCENTHybrid and its parts. See DESIGN.md section 2."""

from scent_search.model.hybrid import MambaSCENTHybrid, bicubic_at, load_checkpoint, save_checkpoint
from scent_search.model.presets import PRESETS, preset_config
from scent_search.model.processor import mamba_ssm_available, selective_scan, selective_scan_ref

__all__ = ["MambaSCENTHybrid", "PRESETS", "preset_config", "save_checkpoint", "load_checkpoint", "bicubic_at",
           "selective_scan", "selective_scan_ref", "mamba_ssm_available"]
