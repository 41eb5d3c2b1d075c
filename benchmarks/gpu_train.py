"""Train a preset on CUDA at the researcher's shape and print steps/s, peak memory and PSNR vs bicubic.

Prepared for a GPU machine (not run on the CPU-only development box). Defaults: the option-a preset
(hidden_dim 256), bf16 autocast, batch 64 x 1024 queries, LR 32, a fixed number of steps, default data.

    python benchmarks/gpu_train.py                                  # option-a, bf16, 2000 steps
    python benchmarks/gpu_train.py --steps 500 --residual on --json
    python benchmarks/gpu_train.py --preset baseline --checkpointing --steps 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from scent_search.config import TrainConfig
from scent_search.errors import TrainingFailed
from scent_search.model import preset_config
from scent_search.train import load_data, train


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="option-a")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sample-q", type=int, default=1024)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam lr (the design's default 1e-4)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--residual", choices=("off", "on"), default="off", help="model's residual_bicubic switch")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing of the decoder stacks")
    p.add_argument("--eval-points", type=int, default=4)
    p.add_argument("--val-crops", type=int, default=64)
    p.add_argument("--data", default=None, help="folder of images (default: the scikit-image photos)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    device = torch.device(args.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        print(f"needs a CUDA device, got {args.device} (cuda available: {torch.cuda.is_available()})", file=sys.stderr)
        return 2
    model_cfg = preset_config(args.preset, residual_bicubic=args.residual == "on")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, sample_q=args.sample_q, lr=args.lr,
                      warmup_steps=args.warmup, precision=args.precision, checkpointing=args.checkpointing,
                      eval_points=args.eval_points, val_crops=args.val_crops)
    print(f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}")
    print(f"preset {args.preset} (residual_bicubic={args.residual == 'on'}), {args.precision}, batch "
          f"{args.batch_size} x {args.sample_q} queries, {args.steps} steps, lr {args.lr}")
    data = load_data(args.data, cfg)
    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    try:
        r = train(model_cfg, cfg, data, device, on_eval=lambda i, v: print(f"  eval {i}: x4 PSNR {v:.2f} dB",
                                                                           flush=True))
    except TrainingFailed as e:
        print(f"training failed ({e.reason}): {e}")
        return 1
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device)
    achieved = r.flops_per_step * r.steps_per_s
    print(f"backend {r.backend}, {r.n_params} params; {r.steps_done} steps in {r.train_seconds:.0f} s "
          f"(wall {wall:.0f} s incl. evaluation)")
    print(f"{r.steps_per_s:.2f} steps/s, {r.samples_per_s:.0f} samples/s, {r.flops_per_step / 1e12:.3f} TFLOP/step "
          f"-> {achieved / 1e12:.1f} TFLOP/s; peak allocated {peak / 2 ** 30:.2f} GiB")
    print(f"L1 loss {sum(r.losses[:50]) / 50:.4f} (first 50) -> {sum(r.losses[-50:]) / 50:.4f} (last 50)")
    print(f"x4 PSNR {r.psnr:.2f} dB (best {r.best_psnr:.2f}) vs bicubic {r.bicubic_psnr:.2f} dB "
          f"({r.psnr - r.bicubic_psnr:+.2f} dB)")
    if args.json:
        print(json.dumps(dict(preset=args.preset, precision=args.precision, batch_size=args.batch_size,
                              sample_q=args.sample_q, steps=r.steps_done, steps_per_s=r.steps_per_s,
                              samples_per_s=r.samples_per_s, flops_per_step=r.flops_per_step,
                              peak_allocated_bytes=peak, psnr=r.psnr, bicubic_psnr=r.bicubic_psnr,
                              evals=r.evals, backend=r.backend)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
