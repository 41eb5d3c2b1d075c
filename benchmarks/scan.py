"""Speed of the vectorised selective scan against the sequential reference, on this CPU, in one run.

    python benchmarks/scan.py [--batch 8] [--length 256] [--d-inner 512] [--repeats 5]

Prints median milliseconds of forward and forward+backward, and the speed-up of the vectorised scan over two
sequential loops: `selective_scan_ref` (the package's reference: each step computes its own decay, a
cache-resident loop) and the formulation of state-spaces/mamba's `selective_scan_ref` (decay and input terms
precomputed for the whole sequence, then a loop over slices of them). All run in fp32 on the same inputs,
interleaved, so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scent_search.model import selective_scan, selective_scan_ref


def inputs(b: int, L: int, d: int, n: int = 16):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, L, d, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(b, L, d, generator=g) - 2)
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)  # mamba's init, A = -(1..n)
    return [t.requires_grad_() for t in (u, delta, A, torch.randn(b, L, n, generator=g),
                                          torch.randn(b, L, n, generator=g), torch.ones(d))]


def mamba_style_ref(u, delta, A, B, C, D):
    """state-spaces/mamba's reference loop, in our (b, L, d) layout: precompute, then step through slices."""
    delta_A = torch.exp(torch.einsum("bld,dn->bldn", delta, A))
    delta_B_u = torch.einsum("bld,bln,bld->bldn", delta, B, u)
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        h = delta_A[:, t] * h + delta_B_u[:, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    return torch.stack(ys, dim=1) + u * D


def timed(fn, args, backward: bool) -> float:
    t0 = time.perf_counter()
    y = fn(*args)
    if backward:
        y.sum().backward()
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--d-inner", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    args = inputs(a.batch, a.length, a.d_inner)
    print(f"selective scan, batch {a.batch}, L {a.length}, d_inner {a.d_inner}, d_state 16, fp32, "
          f"{torch.get_num_threads()} threads, median of {a.repeats}")
    for backward in (False, True):
        fns = {"vectorised": selective_scan, "sequential ref": selective_scan_ref, "mamba-style ref": mamba_style_ref}
        times = {k: [] for k in fns}
        for _ in range(a.repeats + 1):  # first round is warm-up
            for name, fn in fns.items():
                times[name].append(timed(fn, args, backward))
        med = {k: statistics.median(v[1:]) for k, v in times.items()}
        label = "forward+backward" if backward else "forward"
        print(f"{label}:")
        for name, ms in med.items():
            ratio = "" if name == "vectorised" else f"   speed-up of vectorised: x{ms / med['vectorised']:.2f}"
            print(f"  {name:>16} {ms:9.1f} ms{ratio}")


if __name__ == "__main__":
    main()
