"""Encoder: LR image -> num_lp_tokens latents of width dim (a Perceiver-style cross-attention summary)."""

from __future__ import annotations

import torch
from torch import nn

from scent_search.config import ModelConfig
from scent_search.model.blocks import Attention, FeedForward, GaussianFourierFeatures, PreNorm

ENCODER_FF_MULT = 4  # the encoder's own FeedForward; not a searched knob


def grid_centres(h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """Pixel-centre coords of an h x w grid in [-1, 1], (h*w, 2) ordered (y, x), row-major."""
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.dim
        self.patch_embed = nn.Conv2d(cfg.in_channels, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.pos_features = GaussianFourierFeatures(2, cfg.feature_dim, cfg.sigma_q)
        self.pos_proj = nn.Linear(cfg.feature_dim, dim)
        self.latents = nn.Parameter(torch.randn(cfg.num_lp_tokens, dim) * 0.02)
        self.cross_attn = PreNorm(dim, Attention(dim, dim, cfg.encoder_heads, dim // cfg.encoder_heads), context_dim=dim)
        self.ff = PreNorm(dim, FeedForward(dim, ENCODER_FF_MULT))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(lr)  # (B, dim, h/p, w/p)
        b, _, gh, gw = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, N, dim), N = gh*gw patches
        centres = grid_centres(gh, gw, device=lr.device, dtype=tokens.dtype)  # (N, 2)
        tokens = tokens + self.pos_proj(self.pos_features(centres)).to(tokens.dtype)
        x = self.latents.expand(b, -1, -1)  # (B, M, dim)
        x = x + self.cross_attn(x, tokens)
        return x + self.ff(x)  # (B, M, dim)
