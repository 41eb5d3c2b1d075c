"""Memory probe: how long one prediction takes on this CPU, and the full seed-check table.

    python benchmarks/probe.py [--repeat 3] [--threads 1]

Prints the time to predict the baseline preset at batch 64 / 1024 queries / LR 32 / fp32: the first call in a
fresh process (it pays FakeTensorMode's one-time set-up and the scan stand-in's fit) and warm calls (what a
search pays per trial), then `scent-search seed-check`'s table (mamba-ssm's kernels, what the researcher runs)
and the same claims with the pure-PyTorch processor. Results go to docs/benchmarks.md.

    python benchmarks/probe.py --repeat 1 --smoke    # one warm call, no seed-check: checks that it runs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="warm predictions to time (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--smoke", action="store_true", help="time the predictions only (no seed-check tables)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from click.testing import CliRunner

    from scent_search.cli import cli
    from scent_search.config import TargetShape
    from scent_search.memory import gib, profile_step
    from scent_search.model import preset_config

    from torch._subclasses.fake_tensor import FakeTensorMode

    cfg, shape = preset_config("baseline"), TargetShape(batch_size=64, queries=1024, lr_size=32, precision="fp32")
    t0 = time.perf_counter()
    with FakeTensorMode():  # FakeTensorMode's one-time set-up in a process (lazy imports, dispatch tables)
        torch.empty(2, 2) @ torch.empty(2, 2)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    prof = profile_step(cfg, shape)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        profile_step(cfg, shape)
        warm.append(time.perf_counter() - t0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} thread(s)")
    print(f"predict baseline @ batch 64 / 1024 queries / LR 32 / fp32 (backend {prof.backend}): "
          f"peak {gib(prof.peak_allocated_bytes):.2f} GiB")
    print(f"  first call in a fresh process: {setup + cold:.2f} s = FakeTensorMode set-up {setup:.2f} s "
          f"+ first prediction {cold:.2f} s (includes fitting the scan stand-in)")
    print(f"  warm, median of {args.repeat}: {statistics.median(warm):.2f} s  (all: "
          f"{', '.join(f'{w:.2f}' for w in warm)})")
    if args.smoke:
        return
    print()
    res = CliRunner().invoke(cli, ["seed-check"])
    print(res.output, end="")
    from scent_search.memory import seed_check

    other = seed_check(backend="torch")  # the pure-PyTorch processor: the scan's memory grows, the decoder's not
    print()
    print("with the pure-PyTorch processor (scent-search seed-check --backend torch):")
    for c in other["claims"]:
        print(f"  {c['claim']:<48}{c['tool']:>10g} {c['unit']:<7}{'yes' if c['holds'] else 'NO'}")
    print(f"  {sum(c['holds'] for c in other['claims'])} of {len(other['claims'])} claims hold")


if __name__ == "__main__":
    main()
