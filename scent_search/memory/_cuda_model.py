"""What differs on CUDA, modelled on a CPU stand-in device (docs/memory.md, "What the prediction models").

- `CudaAutocast`: CUDA's bf16 autocast casts (matmul-like ops to bf16, norms/exp/softplus/losses to fp32,
  fp32 weights cast once per forward and cached). CPU autocast follows other op lists (e.g. it leaves
  layer_norm in bf16), so it is emulated at the torch-function level, above autograd, where the casts and
  the copies autograd saves happen on CUDA too.
- `mamba_inner_forward`: mamba-ssm's fused `mamba_inner_fn` saves only its inputs and a few (B, d, L)
  tensors, far less than the reference scan. A stand-in autograd Function allocates what it saves.
- `torch_scan_forward`: the pure-PyTorch processor path with `selective_scan` replaced by a stand-in that
  allocates what the real chunked scan allocates. Its coefficients are fitted on the fly from the real scan
  at five tiny shapes (`ScanFootprint`), because running the real scan's ~10k small ops would be most of a
  prediction's time. Tests hold the stand-in against the real scan.
- `CUBLAS_WORKSPACE_BYTES`: cuBLAS workspaces come from the caching allocator and stay allocated.

- `CudaAttention`: modulation_ca with a learnt spatial bias (spatial_bias = "grid") passes an attention mask that
  requires grad. The CPU then falls back to SDPA's math path, which keeps the (B, h, Q, M) probabilities; CUDA
  runs the memory-efficient kernel, which keeps only its output and a logsumexp and builds the bias gradient
  (B, h, Q, M) in backward. The stand-in allocates that.

Without a learnt bias, attention needs no stand-in: the CPU's `_scaled_dot_product_flash_attention_for_cpu`
(which the FakeTensor run dispatches to, with or without a constant mask) saves what the CUDA kernels save, out
in (B, Q, h, d) layout plus a (B, h, Q) fp32 logsumexp, and no (B, h, Q, M) matrix. Tests check both footprints.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from scent_search.model import processor as _processor
from scent_search.model.blocks import in_full_precision

# cuBLAS keeps one workspace per (handle, stream); forward and the autograd device thread use one handle each.
# torch's default size is ":4096:8" (32 MiB) on sm90 (H100/H200) and ":4096:2:16:8" (8 MiB + 128 KiB) before.
CUBLAS_WORKSPACE_BYTES = {"sm90": 2 * 32 * 2 ** 20, "sm80": 2 * (8 * 2 ** 20 + 128 * 2 ** 10)}

# ---------------------------------------------------------------------------------------------------------
# CUDA bf16 autocast, emulated

# The CUDA policy lists of aten/src/ATen/autocast_mode.cpp, as the torch functions the model reaches.
_LOWER = {F.linear, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.mm,
          torch.bmm, torch.addmm, torch.baddbmm, torch.conv1d, torch.conv2d, torch.einsum,
          F.scaled_dot_product_attention}
_FP32 = {F.layer_norm, F.group_norm, F.softplus, torch.exp, torch.Tensor.exp, torch.log, torch.Tensor.log,
         torch.rsqrt, torch.Tensor.rsqrt, torch.pow, torch.Tensor.pow, F.l1_loss, F.mse_loss, F.smooth_l1_loss}
# fp32_set_opt_dtype: with a low-precision input and no dtype given, run with dtype=float32 (no input copy)
_FP32_OPT = {torch.cumsum, torch.Tensor.cumsum, torch.softmax, torch.Tensor.softmax, F.softmax, F.log_softmax,
             torch.sum, torch.Tensor.sum, torch.prod, torch.Tensor.prod}


class CudaAutocast(TorchFunctionMode):
    """Cast op inputs the way `torch.autocast("cuda", dtype)` would, for tensors on any device.

    `enabled` is toggled by the step (on for the forward and for checkpoint recomputation, off for the loss
    and the optimizer, as in train.py); `clear_cache()` ends a forward like leaving the autocast context.
    """

    def __init__(self, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.dtype = dtype
        self.enabled = False
        self.cache_enabled = True
        self._cache: dict[int, torch.Tensor] = {}  # id(fp32 leaf weight) -> its low-precision copy

    def clear_cache(self) -> None:
        self._cache.clear()

    @contextlib.contextmanager
    def region(self, cache: bool) -> Iterator[None]:
        """Autocast on inside (with or without the weight cache); leaving it drops the cached bf16 copies, as
        leaving `torch.autocast` does."""
        self.enabled, self.cache_enabled = True, cache
        try:
            yield
        finally:
            self.enabled = False
            self.clear_cache()

    def _low(self, t):
        if not (isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype not in (torch.float64, self.dtype)):
            return t
        if self.cache_enabled and t.is_leaf and t.requires_grad:
            hit = self._cache.get(id(t))
            if hit is None:
                hit = self._cache[id(t)] = t.to(self.dtype)
            return hit
        return t.to(self.dtype)

    @staticmethod
    def _fp32(t):
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype in (torch.bfloat16, torch.float16):
            return t.float()
        return t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.enabled and not in_full_precision():  # the model turns autocast off in some regions
            if func in _FP32_OPT:
                if kwargs.get("dtype") is None and any(isinstance(a, torch.Tensor) and
                                                       a.dtype in (torch.bfloat16, torch.float16) for a in args[:1]):
                    kwargs = {**kwargs, "dtype": torch.float32}
                return func(*args, **kwargs)
            cast = self._low if func in _LOWER else self._fp32 if func in _FP32 else None
            if cast is not None:
                args = tuple([cast(x) for x in a] if isinstance(a, (list, tuple)) else cast(a) for a in args)
                kwargs = {k: cast(v) for k, v in kwargs.items()}
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Memory-efficient attention with a bias that requires grad

EFFICIENT_LSE_ROWS = 32  # the kernel's logsumexp is (B, h, ceil(Q / 32) * 32) fp32
EFFICIENT_BIAS_ALIGN = 16  # it pads the bias's last dim to a multiple of 16 (a copy)


def _ceil_to(n: int, k: int) -> int:
    return -(-n // k) * k


class _EfficientAttention(torch.autograd.Function):
    """Allocates what `_scaled_dot_product_efficient_attention` (with a bias that requires grad) keeps and builds.

    Forward keeps q, k, v, the padded bias, out and the logsumexp. Backward builds dq, dk, dv, a (B, h, Q) fp32
    delta and the full bias gradient (B, h, Q, M_pad), which autograd then sums over the heads to the mask's
    (B, 1, Q, M).
    """

    @staticmethod
    def forward(ctx, q, k, v, mask):
        b, h, nq, _ = q.shape
        m = k.shape[2]
        padded = mask.new_empty(*mask.shape[:-1], _ceil_to(m, EFFICIENT_BIAS_ALIGN)) if m % EFFICIENT_BIAS_ALIGN \
            else mask
        out = q.new_empty(b, nq, h, v.shape[-1]).transpose(1, 2)  # (B, h, Q, d) in (B, Q, h, d) layout
        lse = q.new_empty(b, h, _ceil_to(nq, EFFICIENT_LSE_ROWS), dtype=torch.float32)
        ctx.save_for_backward(q, k, v, padded, out, lse)
        ctx.mask_shape = mask.shape
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, padded, out, lse = ctx.saved_tensors
        b, h, nq, _ = q.shape
        delta = lse.new_empty(b, h, nq)
        grad_bias = padded.new_empty(b, h, nq, padded.shape[-1])
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        del delta
        dmask = grad_bias[..., :ctx.mask_shape[-1]].sum(1, keepdim=True)  # (B, 1, Q, M)
        return dq, dk, dv, dmask


class CudaAttention(TorchFunctionMode):
    """Routes `scaled_dot_product_attention` with a mask that requires grad to the memory-efficient stand-in."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
            if isinstance(mask, torch.Tensor) and mask.requires_grad:
                return _EfficientAttention.apply(q, k, v, mask)
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# The pure-PyTorch selective scan: a calibrated stand-in


def _features(b: int, L: int, d: int, n: int, chunk: int) -> np.ndarray:
    U = b * L * d * n * 4  # one (b, L, d, n) fp32 tensor, bytes
    return np.array([U, b * L * d * 4, b * L * n * 4, U / math.ceil(L / chunk), 1.0])


class ScanFootprint:
    """Bytes the real `selective_scan` keeps, and its transient peaks, as linear functions of tensor sizes.

    Fitted from five real (FakeTensor) runs of the scan at tiny shapes, per input dtypes and autocast mode.
    Features: (b,L,d,n) fp32 bytes, (b,L,d) fp32 bytes, (b,L,n) fp32 bytes, one chunk's (b,T,d,n) bytes, 1.
    """

    def __init__(self, dtypes: tuple[torch.dtype, ...], autocast: torch.dtype | None, chunk: int):
        from torch._subclasses.fake_tensor import FakeTensorMode

        from scent_search.memory._tracker import StorageTracker, round_alloc

        c = chunk
        shapes = [(2, 2 * c, 64, 16), (2, 2 * c, 64, 32), (2, 4 * c, 64, 16), (2, 2 * c, 128, 16), (4, 2 * c, 64, 16)]
        rows, ys = [], []
        for b, L, d, n in shapes:
            with FakeTensorMode():
                du, ddelta, dB, dC = dtypes
                ins = [torch.empty(b, L, d, dtype=du), torch.empty(b, L, d, dtype=ddelta), torch.empty(d, n),
                       torch.empty(b, L, n, dtype=dB), torch.empty(b, L, n, dtype=dC), torch.empty(d)]
                for t in ins:
                    t.requires_grad_(True)
                emu = CudaAutocast(autocast) if autocast is not None else None
                if emu is not None:
                    emu.enabled = True
                tr = StorageTracker()
                with tr:
                    if emu is not None:
                        with emu:
                            y = _processor.selective_scan(*ins, chunk=c)
                    else:
                        y = _processor.selective_scan(*ins, chunk=c)
                    saved, fwd_peak = tr.total, tr.peak
                    dy = torch.empty_like(y)
                    tr.reset_peak()
                    start = tr.total
                    grads = torch.autograd.grad(y, ins, dy)
                    bwd_peak = tr.peak
                    y_bytes = round_alloc(y.untyped_storage().nbytes())
                    g_bytes = sum(round_alloc(g.untyped_storage().nbytes()) for g in grads)
                    del y, dy, grads
            rows.append(_features(b, L, d, n, c))
            ys.append([saved - y_bytes, fwd_peak - saved, bwd_peak - start - g_bytes])
        self.coef = np.linalg.solve(np.array(rows), np.array(ys))  # (5 features, 3 quantities)
        self.chunk = chunk

    def bytes(self, b: int, L: int, d: int, n: int) -> tuple[int, int, int]:
        """(kept for backward, extra forward peak, extra backward peak) in bytes, each >= 0."""
        vals = _features(b, L, d, n, self.chunk) @ self.coef
        return tuple(max(0, int(round(v))) for v in vals)


@functools.lru_cache(maxsize=None)
def scan_footprint(dtypes: tuple[torch.dtype, ...], autocast: torch.dtype | None, chunk: int) -> ScanFootprint:
    return ScanFootprint(dtypes, autocast, chunk)


def _blob(nbytes: int, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(max(nbytes, 0), dtype=torch.uint8, device=like.device)


class _ScanStandIn(torch.autograd.Function):
    """Allocates what `selective_scan` allocates (per its ScanFootprint); the values are meaningless."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, footprint: ScanFootprint):
        b, L, d = u.shape
        kept, fwd_extra, bwd_extra = footprint.bytes(b, L, d, A.shape[1])
        ctx.bwd_extra = bwd_extra
        ctx.save_for_backward(_blob(kept, u), u, delta, A, B, C, D)
        y = u.new_empty(b, L, d, dtype=torch.promote_types(u.dtype, torch.float32))
        tmp = _blob(fwd_extra, u)
        del tmp
        return y

    @staticmethod
    def backward(ctx, dy):
        _, *ins = ctx.saved_tensors
        grads = [torch.empty_like(t) if need else None for t, need in zip(ins, ctx.needs_input_grad)]
        tmp = _blob(ctx.bwd_extra, dy)
        del tmp
        return (*grads, None)


class ScanStandIn:
    """Callable with `selective_scan`'s signature; checks the dtypes match the fitted footprint."""

    def __init__(self, footprint: ScanFootprint, dtypes: tuple[torch.dtype, ...]):
        self.footprint, self.dtypes = footprint, dtypes

    def __call__(self, u, delta, A, B, C, D):
        got = (u.dtype, delta.dtype, B.dtype, C.dtype)
        if got != self.dtypes:
            raise RuntimeError(f"scan stand-in fitted for dtypes {self.dtypes}, called with {got}")
        return _ScanStandIn.apply(u, delta, A, B, C, D, self.footprint)


def torch_scan_forward(self, x: torch.Tensor, scan) -> torch.Tensor:
    """Mamba.forward's pure-PyTorch path (scent_search/model/processor.py) with `selective_scan` swapped.

    Kept line for line with the model; a test compares it with the real block.
    """
    A = -torch.exp(self.A_log.float())  # (d_inner, n)
    L = x.shape[1]
    u, z = self.in_proj(x).chunk(2, dim=-1)  # 2 x (B, L, d_inner)
    u = F.silu(self.conv1d(u.transpose(1, 2))[..., :L].transpose(1, 2))  # causal depthwise conv
    dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
    delta = F.softplus(self.dt_proj(dt))  # (B, L, d_inner)
    y = scan(u, delta, A, B, C, self.D).to(u.dtype)
    return self.out_proj(y * F.silu(z))


# ---------------------------------------------------------------------------------------------------------
# mamba-ssm's fused mamba_inner_fn (checkpoint_lvl=1, its default), as a stand-in

MAMBA_SCAN_CHUNK = 2048  # selective_scan_cuda keeps one (d_state*2) fp32 carry per 2048-token chunk


class _MambaInner(torch.autograd.Function):
    """Allocates what mamba_ssm's MambaInnerFn keeps and its transients (mamba_ssm/ops/selective_scan_interface.py).

    Kept for backward: xz made contiguous (B, 2d, L), x_dbl (B*L, r+2n), B and C (B, 1, n, L), the scan's fp32
    chunk carries (B, d, ceil(L/2048), 2n), out (B, d, L), and bf16 copies of the projection weights under
    autocast. conv1d_out and delta are recomputed in backward (checkpoint_lvl=1).
    """

    @staticmethod
    def forward(ctx, xz, conv_w, conv_b, x_proj_w, dt_proj_w, out_proj_w, out_proj_b, A, D, delta_bias, low_dtype):
        b, two_d, L = xz.shape
        d, n, r = two_d // 2, A.shape[1], dt_proj_w.shape[1]
        act = xz.dtype
        params = (conv_w, conv_b, x_proj_w, dt_proj_w, out_proj_w, out_proj_b, A, D, delta_bias)
        if low_dtype is not None:  # under autocast it casts the projection weights itself
            x_proj_w, dt_proj_w, out_proj_w = (w.to(low_dtype) for w in (x_proj_w, dt_proj_w, out_proj_w))
        xz_c = xz.contiguous() if xz.stride(-1) != 1 else xz
        conv1d_out = xz.new_empty(b, d, L, dtype=act)
        x_dbl = xz.new_empty(b * L, r + 2 * n, dtype=act)
        delta = xz.new_empty(d, b * L, dtype=act)
        B = xz.new_empty(b, 1, n, L, dtype=act)
        C = xz.new_empty(b, 1, n, L, dtype=act)
        out = xz.new_empty(b, d, L, dtype=act)
        scan_carries = xz.new_empty(b, d, math.ceil(L / MAMBA_SCAN_CHUNK), 2 * n, dtype=torch.float32)
        out_z = xz.new_empty(b, d, L, dtype=act)
        y = xz.new_empty(b, L, out_proj_w.shape[0], dtype=act)  # F.linear(out_z^T, out_proj_w, out_proj_b)
        del conv1d_out, delta, out_z
        ctx.save_for_backward(xz_c, x_dbl, x_proj_w, dt_proj_w, out_proj_w, B, C, scan_carries, out, *params)
        ctx.shape = (b, d, L, act)
        return y

    @staticmethod
    def backward(ctx, dout):
        xz_c, x_dbl, _, _, _, B, C, _, _, *params = ctx.saved_tensors
        b, d, L, act = ctx.shape
        # recomputed conv1d_out and delta, dout_y, dconv1d_out, ddelta, recomputed out_z; dB, dC; dx_dbl
        tmps = [dout.new_empty(b, d, L, dtype=act) for _ in range(6)]
        tmps += [torch.empty_like(B, dtype=torch.float32), torch.empty_like(C, dtype=torch.float32),
                 torch.empty_like(x_dbl)]
        dxz = torch.empty_like(xz_c)
        del tmps
        grads = [torch.empty_like(p) if (p is not None and need) else None
                 for p, need in zip(params, ctx.needs_input_grad[1:10])]
        return (dxz, *grads, None)


def mamba_inner_forward(self, x: torch.Tensor, low_dtype: torch.dtype | None) -> torch.Tensor:
    """Mamba.forward's mamba-ssm path (scent_search/model/processor.py), with the stand-in for mamba_inner_fn."""
    A = -torch.exp(self.A_log.float())  # (d_inner, n)
    xz = (x @ self.in_proj.weight.t()).transpose(1, 2)  # (B, 2*d_inner, L)
    return _MambaInner.apply(xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
                             self.out_proj.weight, self.out_proj.bias, A, self.D.float(), self.dt_proj.bias.float(),
                             low_dtype)
