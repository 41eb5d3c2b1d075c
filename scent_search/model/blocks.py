"""Building blocks shared by the encoder and the SCENT decoder (docs/design.md, "The model")."""

from __future__ import annotations

import contextlib
import math
import threading

import torch
import torch.nn.functional as F
from torch import nn


_fp32_regions = threading.local()


@contextlib.contextmanager
def full_precision(device_type: str):
    """Autocast off inside: for numerics that bf16 would wreck (Fourier phases, the scan's state sums).

    `in_full_precision()` tells the memory predictor's CUDA-autocast emulation to leave these ops alone too.
    """
    _fp32_regions.depth = getattr(_fp32_regions, "depth", 0) + 1
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        _fp32_regions.depth -= 1


def in_full_precision() -> bool:
    return getattr(_fp32_regions, "depth", 0) > 0


class GaussianFourierFeatures(nn.Module):
    """coords (..., 2) in [-1, 1] -> [sin, cos](2 pi x B^T) (..., feature_dim), the researcher's convention.

    x = (coords + 1) / 2 maps the image to [0, 1]; B ~ N(0, 1) / sigma is (feature_dim / 2, 2) and learnable,
    so sigma *divides* the frequencies: sigma = 128 is a gentle ramp over the image, sigma = 1 about one period
    per image. Computed in fp32 even under autocast: phases of learnt high frequencies reach many radians, and
    bf16's 8-bit mantissa would leave them wrong by more than a radian. The next Linear casts as usual.
    """

    def __init__(self, in_dim: int, feature_dim: int, sigma: float):
        super().__init__()
        self.sigma = sigma
        self.B = nn.Parameter(torch.randn(feature_dim // 2, in_dim) / sigma)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        with full_precision(coords.device.type):
            x = (coords.float() + 1) / 2  # [-1, 1] -> [0, 1]
            proj = 2 * math.pi * (x @ self.B.float().t())  # (..., feature_dim / 2)
            return torch.cat([proj.sin(), proj.cos()], dim=-1)


class GEGLU(nn.Module):
    """Split the last dim in halves (a, b) and return a * gelu(b)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=-1)
        return a * F.gelu(b)


class FeedForward(nn.Module):
    """Linear(dim -> dim*mult*2) -> GEGLU -> Linear(dim*mult -> dim)."""

    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreNorm(nn.Module):
    """LayerNorm, then fn. With context_dim, the context is normed too (cross-attention). The caller adds the residual."""

    def __init__(self, dim: int, fn: nn.Module, context_dim: int | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if self.norm_context is None:
            return self.fn(self.norm(x), **kwargs)
        return self.fn(self.norm(x), self.norm_context(context), **kwargs)


class Attention(nn.Module):
    """Multi-head cross-attention: queries (B, Q, query_dim) attend to context (B, M, context_dim).

    `bias` (B, Q, M), if given, is added to the attention logits (modulation_ca's spatial bias). Uses
    `scaled_dot_product_attention`: on CUDA the flash kernel (no bias) or the memory-efficient kernel (with a
    bias) keeps no (B, heads, Q, M) probability matrix for backward. The memory predictor models that.
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, q, _ = x.shape
        m = context.shape[1]
        h = self.heads
        query = self.to_q(x).view(b, q, h, -1).transpose(1, 2)  # (B, h, Q, d)
        k, v = self.to_kv(context).view(b, m, 2, h, -1).permute(2, 0, 3, 1, 4)  # 2 x (B, h, M, d)
        mask = None if bias is None else bias.unsqueeze(1).to(query.dtype)  # (B, 1, Q, M), shared by the heads
        out = F.scaled_dot_product_attention(query, k, v, attn_mask=mask)  # (B, h, Q, d)
        return self.to_out(out.transpose(1, 2).reshape(b, q, -1))


class ResidualFeedForwards(nn.Module):
    """`depth` residual PreNorm(FeedForward) layers: x = x + ff(norm(x)), each."""

    def __init__(self, dim: int, mult: int, depth: int):
        super().__init__()
        self.layers = nn.ModuleList(PreNorm(dim, FeedForward(dim, mult)) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x
