"""MambaSCENTHybrid: LR image -> patch + LP token sequence (encoder) -> BiMamba (processor) -> the LP tokens'
outputs as latents -> SCENT decoder at query coords."""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from scent_search.config import ModelConfig
from scent_search.errors import ConfigError
from scent_search.model.decoder import SCENTDecoder
from scent_search.model.encoder import Encoder, Layout
from scent_search.model.processor import Processor


def bicubic_at(lr: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bicubic sample of lr (B, C, h, w) at coords (B, Q, 2) given as (y, x) in [-1, 1] -> (B, Q, C)."""
    grid = coords.flip(-1).unsqueeze(1).to(lr.dtype)  # grid_sample wants (x, y): (B, 1, Q, 2)
    out = F.grid_sample(lr, grid, mode="bicubic", padding_mode="border", align_corners=False)  # (B, C, 1, Q)
    return out[:, :, 0].transpose(1, 2)


class Latents(NamedTuple):
    """The processor's outputs at the LP tokens, and where those tokens sit in the image."""

    tokens: torch.Tensor  # (B, m, dim)
    layout: Layout


class MambaSCENTHybrid(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.processor = Processor(cfg)
        self.decoder = SCENTDecoder(cfg)

    @property
    def processor_backend(self) -> str:
        """'mamba_ssm' or 'torch': what the processor runs on where the model's parameters are."""
        return self.processor.backend(next(self.parameters()).device)

    def set_checkpointing(self, enabled: bool) -> "MambaSCENTHybrid":
        """Activation checkpointing of the decoder stacks (bandwidth_lins, modulation_lins, hv_lins)."""
        self.decoder.checkpointing = enabled
        return self

    def encode(self, lr: torch.Tensor) -> Latents:
        """lr (B, 3, h, w) -> the LP tokens' outputs (B, num_lp_tokens, dim) and their layout."""
        seq, layout = self.encoder(lr)  # (B, N + m, dim)
        seq = self.processor(seq)
        return Latents(seq[:, layout.lp_index], layout)

    def decode(self, latents: Latents, coords: torch.Tensor, lr: torch.Tensor | None = None) -> torch.Tensor:
        """latents from `encode`, coords (B, Q, 2) -> rgb (B, Q, 3). `lr` is needed when residual_bicubic is on."""
        rgb = self.decoder(latents.tokens, latents.layout, coords)
        if self.cfg.residual_bicubic:
            rgb = rgb + bicubic_at(lr, coords).to(rgb.dtype)
        return rgb

    def forward(self, lr: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(lr), coords, lr)

    def decode_chunked(self, lr: torch.Tensor, coords: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Decode a large query set `chunk` queries at a time; each query is independent, so this equals forward."""
        latents = self.encode(lr)
        return torch.cat([self.decode(latents, coords[:, i:i + chunk], lr)
                          for i in range(0, coords.shape[1], chunk)], dim=1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared tensors are counted once


def save_checkpoint(model: MambaSCENTHybrid, path: str | os.PathLike, **extra) -> None:
    """Store the config with the weights; `extra` (plain types only) rides along, e.g. a step count."""
    torch.save({"config": model.cfg.to_dict(), "state_dict": model.state_dict(), **extra}, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> MambaSCENTHybrid:
    """Rebuild the model from a checkpoint written by `save_checkpoint` (loaded with weights_only=True)."""
    blob = torch.load(path, map_location=map_location, weights_only=True)
    try:
        cfg = ModelConfig.from_dict(blob["config"], source=str(path))
    except (KeyError, TypeError) as e:
        raise ConfigError("config", "not a scent-search checkpoint", source=str(path)) from e
    model = MambaSCENTHybrid(cfg)
    model.load_state_dict(blob["state_dict"])
    return model
