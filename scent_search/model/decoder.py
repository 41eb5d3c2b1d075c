"""SCENT decoder: per-query RGB from query coordinates, modulated by the processor's latents.

Names follow the design (DESIGN.md section 2); the memory breakdown reports them one by one:
query_embed, modulation_ca, bandwidth_lins[l], modulation_lins[l], hv_lins[l-1], skips[l].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from scent_search.config import ModelConfig
from scent_search.model.blocks import Attention, GaussianFourierFeatures, ResidualFeedForwards


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
        self.query_embed = nn.Linear(cfg.feature_dim, hidden)
        self.modulation_ca = Attention(hidden, cfg.dim, cfg.modulation_heads, hidden // cfg.modulation_heads)
        # The Fourier maps stay per scale even when branches are shared: sharing reuses weights, not bandwidths.
        self.bandwidth_features = nn.ModuleList(GaussianFourierFeatures(2, cfg.feature_dim, s) for s in cfg.sigma_ls)

        def branches(in_dim: int) -> nn.ModuleList:
            if cfg.share_scales:  # one module object at every index: parameters shrink, activations do not
                shared = Branch(in_dim, hidden, cfg.mult, cfg.num_decoder_layers)
                return nn.ModuleList([shared] * n)
            return nn.ModuleList(Branch(in_dim, hidden, cfg.mult, cfg.num_decoder_layers) for _ in range(n))

        self.bandwidth_lins = branches(cfg.feature_dim)
        self.modulation_lins = branches(hidden)
        self.hv_lins = nn.ModuleList(ResidualFeedForwards(hidden, cfg.mult, cfg.num_decoder_layers - 1)
                                     for _ in range(n - 1))
        self.skips = nn.ModuleList(nn.Linear(hidden, 3) for _ in range(n))
        self.checkpointing = False

    def _stack(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Run one decoder stack, recomputing its activations in backward when checkpointing is on."""
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward(self, latents: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """latents (B, M, dim), coords (B, Q, 2) in [-1, 1] -> rgb (B, Q, 3)."""
        q = self.query_embed(self.query_features(coords))  # (B, Q, hidden)
        modulation = self.modulation_ca(q, latents)  # (B, Q, hidden)
        out, h = 0, None
        for l, (features, b_lin, m_lin) in enumerate(zip(self.bandwidth_features, self.bandwidth_lins, self.modulation_lins)):
            b = self._stack(b_lin, features(coords).to(q.dtype))  # (B, Q, hidden)
            m = self._stack(m_lin, modulation)  # (B, Q, hidden)
            h = b * m if l == 0 else self._stack(self.hv_lins[l - 1], h) + b * m  # (B, Q, hidden)
            out = out + self.skips[l](h)  # (B, Q, 3)
        return out
