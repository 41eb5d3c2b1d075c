"""Processor: a bidirectional Mamba (BiMamba) over the encoder's sequence of patch and LP tokens.

Each of num_processor_layers pre-norm residual blocks runs one Mamba over the sequence and another over the
reversed sequence, and merges the two with a Linear(2 dim -> dim), as in the researcher's BiMamba. The LP
tokens' outputs are the latents.

The Mamba block keeps mamba-ssm's parameter names and shapes (`in_proj, conv1d, x_proj, dt_proj, A_log, D,
out_proj`), so state dicts load both ways. On CUDA with mamba-ssm importable, the forward runs mamba-ssm's
fused `mamba_inner_fn` (what `mamba_ssm.Mamba.forward` runs when training); otherwise the pure-PyTorch path
below, built on the vectorised `selective_scan`, which is tested against `selective_scan_ref`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scent_search.config import ModelConfig
from scent_search.model.blocks import full_precision

try:  # the one import guard for the CUDA fast path (the `cuda` extra)
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn
except Exception:  # ImportError, or a CUDA-less build failing at import time
    mamba_inner_fn = None

D_STATE, D_CONV, EXPAND = 16, 4, 2  # the researcher's Mamba: d_state 16, d_conv 4, expand 2
SCAN_CHUNK = 8  # tokens per chunk of the vectorised scan


def _log_decay_floor(dtype: torch.dtype, chunk: int) -> float:
    """Per-token floor on delta*A so a chunk's cumulative decay S keeps exp(-S) far from overflow.

    fp32 overflows past e^88. The floor spends 70% of that range on exp(-S) (e^62 at most over a chunk of 8:
    -7.8 nats a token) and leaves a factor of 4e11 for the inputs it multiplies (delta * u * B) and for the
    gradients. It binds only where a token keeps less than e^-7.8 (0.04%) of the previous state. In float64
    (tests) it is -62 nats a token, i.e. never binds.
    """
    return -0.7 * math.log(torch.finfo(dtype).max) / chunk


def mamba_ssm_available() -> bool:
    return mamba_inner_fn is not None


def selective_scan_ref(u, delta, A, B, C, D):
    """Plain sequential selective scan, one token at a time (the reference the fast paths are tested against).

    u, delta: (b, L, d); A: (d, n); B, C: (b, L, n); D: (d,). Returns y (b, L, d).
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t;  y_t = <C_t, h_t> + D * u_t
    """
    b, L, d = u.shape
    h = u.new_zeros(b, d, A.shape[1])  # (b, d, n)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    return torch.stack(ys, dim=1) + u * D


def selective_scan(u, delta, A, B, C, D, chunk: int = SCAN_CHUNK):
    """Vectorised selective scan: closed form inside chunks of `chunk` tokens, a carry between chunks.

    Inside a chunk, with S_t = sum_{s<=t} delta_s A (cumulative log decay from the chunk start):
        h_t = exp(S_t) * (h_0 + cumsum_s(exp(-S_s) * delta_s B_s u_s))
    so each chunk is a handful of whole-tensor ops and the Python loop runs L / chunk times, not L.
    The (b, chunk, d, n) tensors are built per chunk, never for the whole sequence at once.
    Computed in fp32 (or the input's float64) whatever the autocast dtype, as mamba-ssm does.
    """
    with full_precision(u.device.type):
        return _selective_scan(u, delta, A, B, C, D, chunk)


def _selective_scan(u, delta, A, B, C, D, chunk: int):
    dtype = torch.promote_types(u.dtype, torch.float32)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    b, L, d = u.shape
    floor = _log_decay_floor(dtype, chunk)
    du = delta * u  # (b, L, d)
    h = u.new_zeros(b, d, A.shape[1])  # (b, d, n) carry between chunks
    ys = []
    for s in range(0, L, chunk):
        e = s + chunk
        S = torch.cumsum((delta[:, s:e, :, None] * A).clamp_min(floor), dim=1)  # (b, T, d, n), <= 0
        # exp(-S) multiplies rather than exp(S) dividing: the gradient of a division by exp(S) squares it
        # (e^160 at the floor), which overflows fp32 and turned whole training runs into NaN.
        hc = torch.exp(S) * (h[:, None] + torch.cumsum(du[:, s:e, :, None] * B[:, s:e, None, :] * torch.exp(-S), dim=1))
        ys.append(torch.einsum("btdn,btn->btd", hc, C[:, s:e]))  # (b, T, d)
        h = hc[:, -1]
    return torch.cat(ys, dim=1) + u * D.to(dtype)


class Mamba(nn.Module):
    """A Mamba (S6) block with mamba-ssm's parameter names: (B, L, d_model) -> (B, L, d_model)."""

    def __init__(self, d_model: int, d_state: int = D_STATE, d_conv: int = D_CONV, expand: int = EXPAND,
                 dt_min: float = 1e-3, dt_max: float = 0.1):
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # mamba-ssm's init: dt log-uniform in [dt_min, dt_max] through an inverse-softplus bias; A = -(1..n).
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        A = -torch.exp(self.A_log.float())  # (d_inner, n)
        if x.is_cuda and mamba_inner_fn is not None:
            xz = (x @ self.in_proj.weight.t()).transpose(1, 2)  # (B, 2*d_inner, L), the layout the kernel wants
            return mamba_inner_fn(xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight,
                                  self.dt_proj.weight, self.out_proj.weight, self.out_proj.bias, A, None, None,
                                  self.D.float(), delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        L = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)  # 2 x (B, L, d_inner)
        u = F.silu(self.conv1d(u.transpose(1, 2))[..., :L].transpose(1, 2))  # causal depthwise conv
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # (B, L, d_inner)
        y = selective_scan(u, delta, A, B, C, self.D).to(u.dtype)
        return self.out_proj(y * F.silu(z))


class BiMamba(nn.Module):
    """(B, L, d) -> (B, L, d): a forward scan and a scan of the reversed sequence, merged by a Linear.

    The fused kernel path runs two `Mamba` calls, one per direction."""

    def __init__(self, d_model: int):
        super().__init__()
        self.forward_mamba = Mamba(d_model)
        self.backward_mamba = Mamba(d_model)
        self.proj = nn.Linear(2 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fwd = self.forward_mamba(x)  # (B, L, d): token t has seen tokens <= t
        bwd = self.backward_mamba(x.flip(1)).flip(1)  # (B, L, d): token t has seen tokens >= t
        return self.proj(torch.cat([fwd, bwd], dim=-1))


class Processor(nn.Module):
    """num_processor_layers pre-norm residual BiMamba blocks over (B, L, dim), then a LayerNorm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.dim) for _ in range(cfg.num_processor_layers))
        self.layers = nn.ModuleList(BiMamba(cfg.dim) for _ in range(cfg.num_processor_layers))
        self.norm_out = nn.LayerNorm(cfg.dim)

    def backend(self, device: torch.device | str) -> str:
        """Which implementation runs for tensors on `device`: 'mamba_ssm' or 'torch'."""
        return "mamba_ssm" if torch.device(device).type == "cuda" and mamba_ssm_available() else "torch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for norm, bimamba in zip(self.norms, self.layers):
            x = x + bimamba(norm(x))
        return self.norm_out(x)
