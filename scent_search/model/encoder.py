"""Encoder: LR image -> one raster sequence of patch tokens with the learnable LP tokens spread among them.

As in the researcher's Mamba-GINR encoder, the LP tokens join the patch tokens in a single sequence that the
bidirectional Mamba processor reads; the LP tokens' outputs are the latents. LP token i sits at raster fraction
(i + 0.5) / m of the patch sequence (the position the decoder's spatial bias assumes), so every latent has a
place in the image, whatever the LR size and however many LP tokens there are.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import nn

from scent_search.config import ModelConfig
from scent_search.model.blocks import GaussianFourierFeatures


def grid_centres(h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """Pixel-centre coords of an h x w grid in [-1, 1], (h*w, 2) ordered (y, x), row-major."""
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


class Layout(NamedTuple):
    """Where the LP tokens sit among gh x gw patch tokens (N = gh * gw patches, m LP tokens)."""

    grid: tuple[int, int]  # (gh, gw): the patch grid
    raster: torch.Tensor  # (m,) raster fraction (i + 0.5) / m of LP token i, in (0, 1)
    positions: torch.Tensor  # (m, 2) (y, x) in [-1, 1] of that raster point on the patch grid
    lp_index: torch.Tensor  # (m,) index of LP token i in the merged sequence of N + m tokens
    patch_index: torch.Tensor  # (N,) index of patch j in the merged sequence


@functools.lru_cache(maxsize=64)
def _layout_lists(m: int, gh: int, gw: int) -> tuple[list, list, list, list]:
    """lp_layout's numbers as plain lists: they depend on (m, gh, gw) only, never on data (FakeTensor-safe)."""
    n = gh * gw
    raster = [(i + 0.5) / m for i in range(m)]
    positions, lp_index = [], []
    for i in range(m):
        num, den = (2 * i + 1) * n, 2 * m  # s_i = t_i * N = num / den exactly, in patch units
        row = min(num // (den * gw), gh - 1)
        positions.append([-1 + (2 * row + 1) / gh, -1 + 2 * (num / den - row * gw) / gw])
        lp_index.append(min(-(-num // den), n) + i)  # the patches with index < s_i and the i LP tokens before it
    lp = set(lp_index)
    patch_index = [j for j in range(n + m) if j not in lp]
    return raster, positions, lp_index, patch_index


def lp_layout(m: int, gh: int, gw: int, device=None) -> Layout:
    """Spread m LP tokens evenly through the raster sequence of gh x gw patches.

    LP token i stands for raster fraction t_i = (i + 0.5) / m, i.e. the continuous raster coordinate
    s_i = t_i * N (in patch units). It is inserted after the patches whose index is below s_i, and its image
    position is the point s_i on the grid: row floor(s_i / gw), column s_i mod gw. With m = N it follows its own
    patch and sits at that patch's centre; with m = N / 4 it sits mid-way along its run of four patches.
    """
    raster, positions, lp_index, patch_index = _layout_lists(m, gh, gw)
    return Layout((gh, gw), torch.tensor(raster, device=device), torch.tensor(positions, device=device),
                  torch.tensor(lp_index, device=device), torch.tensor(patch_index, device=device))


class Encoder(nn.Module):
    """lr (B, 3, h, w) -> sequence (B, N + m, dim) of patch and LP tokens, and its Layout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.dim
        self.patch_embed = nn.Conv2d(cfg.in_channels, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.pos_features = GaussianFourierFeatures(2, cfg.feature_dim, cfg.sigma_q)
        self.pos_proj = nn.Linear(cfg.feature_dim, dim)
        self.lp_tokens = nn.Parameter(torch.randn(cfg.num_lp_tokens, dim) * 0.02)

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, Layout]:
        patches = self.patch_embed(lr)  # (B, dim, gh, gw)
        b, dim, gh, gw = patches.shape
        patches = patches.flatten(2).transpose(1, 2)  # (B, N, dim), raster order
        layout = lp_layout(self.lp_tokens.shape[0], gh, gw, device=lr.device)
        centres = grid_centres(gh, gw, device=lr.device)  # (N, 2)
        # The same positional features for patches and LP tokens: a token's place in the image, not in the sequence.
        pos = self.pos_proj(self.pos_features(torch.cat([centres, layout.positions])))  # (N + m, dim)
        n = centres.shape[0]
        lp = self.lp_tokens + pos[n:].to(self.lp_tokens.dtype)  # (m, dim)
        seq = patches.new_empty(b, n + lp.shape[0], dim)  # (B, N + m, dim)
        seq[:, layout.patch_index] = patches + pos[:n].to(patches.dtype)
        seq[:, layout.lp_index] = lp.to(seq.dtype)
        return seq, layout
