"""SCENT decoder (the researcher's `LAINRDecoderSCENT_MemoryEfficient`): per-query RGB from query coordinates,
modulated by the latents of the LP tokens.

Names follow the design (docs/design.md); the memory breakdown reports them one by one:
query embedding + spatial bias + modulation_ca, bandwidth_lins[k], modulation_lins[k], hv_lins[k-1], and skips[k]
(the Fourier skip projections, reported together with the output projections out_lins[k]).

Per scale k, with gamma_k the Fourier features of the coords at sigma_ls[k]:
    m_k = ReLU(bandwidth_lins[k](gamma_k) + modulation_lins[k](modulation))     a sum, not a product
    h_0 = m_0;  h_k = hv_lins[k-1](m_k + h_{k-1})                               two residual FeedForwards
    rgb = sum_k out_lins[k](h_k + skips[k](gamma_k))
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from scent_search.config import SPATIAL_BIASES, ModelConfig
from scent_search.model.blocks import (Attention, GaussianFourierFeatures, PreNorm, ResidualFeedForwards,
                                       full_precision)
from scent_search.model.encoder import Layout

MODULATION_DIM_HEAD = 64  # the researcher's modulation_ca: Attention(hidden, context, heads=2, dim_head=64)
HV_DEPTH = 2  # hv_lins: two residual FeedForwards per scale transition, whatever num_decoder_layers is
RASTER_ALPHA = 10.0  # the researcher's fixed strength of the raster bias


class NoBias(nn.Module):
    """spatial_bias = "none": every LP token is equally near every query."""

    def forward(self, coords: torch.Tensor, layout: Layout) -> None:
        return None


class RasterBias(nn.Module):
    """spatial_bias = "raster", the researcher's 1-D approximation: -10 (t_q - t_i)^2.

    t_q is the raster fraction of the centre of the patch the query falls in, t_i = (i + 0.5) / m that of LP
    token i. Neighbouring patch rows differ by 1 / gh in t, i.e. by ~10 / gh^2 in the logits: a weak prior.
    """

    def forward(self, coords: torch.Tensor, layout: Layout) -> torch.Tensor:
        gh, gw = layout.grid
        with full_precision(coords.device.type):
            x01 = (coords.float() + 1) / 2  # (B, Q, 2) in [0, 1]
            row = torch.floor(x01[..., 0] * gh).clamp(0, gh - 1)
            col = torch.floor(x01[..., 1] * gw).clamp(0, gw - 1)
            t = (row * gw + col + 0.5) / (gh * gw)  # (B, Q)
            return -RASTER_ALPHA * (t[..., None] - layout.raster).square()  # (B, Q, m)


class GridBias(nn.Module):
    """spatial_bias = "grid": -alpha d^2, d the 2-D distance from the query to LP token i in patch spacings.

    alpha = exp(log_alpha) is learnt (1 at initialisation: the nearest tokens dominate, the next ring is e^-1
    behind per unit of squared distance)."""

    def __init__(self) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(()))

    def forward(self, coords: torch.Tensor, layout: Layout) -> torch.Tensor:
        gh, gw = layout.grid
        with full_precision(coords.device.type):
            spacing = coords.new_tensor([2 / gh, 2 / gw], dtype=torch.float32)  # one patch, in [-1, 1] units
            diff = (coords.float()[..., None, :] - layout.positions) / spacing  # (B, Q, m, 2)
            return -self.log_alpha.float().exp() * diff.square().sum(-1)  # (B, Q, m)


BIASES: dict[str, type[nn.Module]] = {"grid": GridBias, "raster": RasterBias, "none": NoBias}
assert tuple(BIASES) == SPATIAL_BIASES  # config validates the names; this registry builds them


class Branch(nn.Module):
    """Linear(in_dim -> hidden) -> ReLU, then (num_decoder_layers - 1) blocks of two residual PreNorm(FeedForward)."""

    def __init__(self, in_dim: int, hidden_dim: int, mult: int, num_decoder_layers: int):
        super().__init__()
        self.lin = nn.Linear(in_dim, hidden_dim)
        self.act = nn.ReLU()
        self.blocks = ResidualFeedForwards(hidden_dim, mult, depth=2 * (num_decoder_layers - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.act(self.lin(x)))


class SCENTDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden, n = cfg.hidden_dim, cfg.num_scales
        self.query_features = GaussianFourierFeatures(2, cfg.feature_dim, cfg.sigma_q)
        self.query_lin = nn.Linear(cfg.feature_dim, hidden)
        self.spatial_bias = BIASES[cfg.spatial_bias]()
        self.modulation_ca = PreNorm(hidden, Attention(hidden, cfg.dim, cfg.modulation_heads, MODULATION_DIM_HEAD),
                                     context_dim=cfg.dim)
        # The Fourier maps stay per scale even when branches are shared: sharing reuses weights, not bandwidths.
        self.bandwidth_features = nn.ModuleList(GaussianFourierFeatures(2, cfg.feature_dim, s) for s in cfg.sigma_ls)

        def branches(in_dim: int) -> nn.ModuleList:
            if cfg.share_scales:  # one module object at every index: parameters shrink, activations do not
                shared = Branch(in_dim, hidden, cfg.mult, cfg.num_decoder_layers)
                return nn.ModuleList([shared] * n)
            return nn.ModuleList(Branch(in_dim, hidden, cfg.mult, cfg.num_decoder_layers) for _ in range(n))

        self.bandwidth_lins = branches(cfg.feature_dim)
        self.modulation_lins = branches(hidden)
        self.hv_lins = nn.ModuleList(ResidualFeedForwards(hidden, cfg.mult, HV_DEPTH) for _ in range(n - 1))
        self.skips = nn.ModuleList(nn.Linear(cfg.feature_dim, hidden) for _ in range(n))  # Fourier skip projections
        self.out_lins = nn.ModuleList(nn.Linear(hidden, 3) for _ in range(n))
        self.act = nn.ReLU()
        self.checkpointing = False

    def _stack(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Run one decoder stack, recomputing its activations in backward when checkpointing is on."""
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward(self, latents: torch.Tensor, layout: Layout, coords: torch.Tensor) -> torch.Tensor:
        """latents (B, m, dim) at `layout`'s positions, coords (B, Q, 2) in [-1, 1] -> rgb (B, Q, 3)."""
        q = self.act(self.query_lin(self.query_features(coords)))  # (B, Q, hidden)
        bias = self.spatial_bias(coords, layout)  # (B, Q, m) or None
        modulation = self.modulation_ca(q, latents, bias=bias)  # (B, Q, hidden)
        out, h = 0, None
        for k, features in enumerate(self.bandwidth_features):
            gamma = features(coords)  # (B, Q, feature_dim), fp32
            m = self.act(self._stack(self.bandwidth_lins[k], gamma) + self._stack(self.modulation_lins[k], modulation))
            h = m if k == 0 else self._stack(self.hv_lins[k - 1], m + h)  # (B, Q, hidden)
            out = out + self.out_lins[k](h + self.skips[k](gamma))  # (B, Q, 3)
        return out
