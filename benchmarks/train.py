"""Training throughput, PSNR vs bicubic and the learning curve on this CPU (docs/benchmarks.md, "Training").

Prints, in one run:
- this machine's fp32 matmul FLOP/s (torch.mm, square operands), the yardstick for the model's FLOP/s;
- for a small config: steps/s, samples/s, training FLOPs per step (FlopCounterMode, fwd + bwd), achieved FLOP/s
  and its fraction of the matmul figure;
- the learning curve: x4 validation PSNR (the default crops: HR 128 from LR 32) at evenly spaced steps of a
  fixed CPU budget on the default data, beside bicubic on the same crops.

    python benchmarks/train.py --seconds 600 --curve curves.json --label new     # the recorded run
    PYTHONPATH=../old-checkout python benchmarks/train.py --seconds 600 --curve curves.json --label old
    python benchmarks/train.py --plot curves.json --png docs/learning-curve.png   # both curves in one PNG
    python benchmarks/train.py --seconds 60 --residual on --lr 3e-4 --set hidden_dim=96
    python benchmarks/train.py --diagnose --seconds 90  # is the model reading its LR input at all?
    python benchmarks/train.py --smoke                  # a few steps: checks that the script runs

Without --set the script only uses APIs that the first model (before the researcher's architecture) also had,
so the same script measures both: run it with an older checkout first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from scent_search.config import ModelConfig, TrainConfig
from scent_search.data import DataSplit, ImageSource, make_validation_set
from scent_search.train import load_data, psnr, train

# The "small config": the researcher's architecture shrunk to train on a laptop-class CPU. Fields every model
# version has (the script also measures older checkouts).
SMALL = dict(dim=64, num_lp_tokens=64, feature_dim=32, hidden_dim=64, mult=2, num_processor_layers=2,
             num_decoder_layers=2)


def matmul_flops_per_s(n: int = 1024, seconds: float = 3.0) -> float:
    """Best-of-runs fp32 FLOP/s of an n x n @ n x n matmul on the CPU (2 n^3 FLOPs each)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b  # warm-up (thread pool, caches)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def diagnose(base: ModelConfig, tcfg: TrainConfig, data: DataSplit) -> None:
    """Checks behind the "Why" table of docs/benchmarks.md: is the model reading its LR input at all?"""
    val = make_validation_set(data.val, hr_size=tcfg.val_hr_size, n_crops=tcfg.val_crops).scales[4.0]
    hr = val.hr  # (N, 3, 128, 128)
    mean_colour = psnr(hr.mean((2, 3), keepdim=True).expand_as(hr), hr, 4).mean().item()
    print(f"\nvalidation crops: predicting each crop's mean colour scores {mean_colour:.2f} dB")
    r = train(base, tcfg, data, "cpu", return_model=True)
    with torch.no_grad():
        pred = r.model.eval().decode_chunked(val.lr, val.coords.expand(len(hr), -1, -1), tcfg.eval_chunk)
    pred = pred.clamp(0, 1).view(len(hr), *hr.shape[2:], 3).permute(0, 3, 1, 2)  # (N, 3, H, W)
    ratio = (pred.std((2, 3)) / hr.std((2, 3))).mean().item()
    print(f"default data, {r.steps_done} steps: {r.psnr:.2f} dB (bicubic {r.bicubic_psnr:.2f}); predicted / true "
          f"within-crop std {ratio:.3f}")
    # One validation crop as the whole data set (train = val), at x4 only: memorisation, no generalisation needed.
    crop = (hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (128, 128, 3)
    one = ImageSource([crop], ["val-crop-0"])
    one_split = DataSplit(train=one, val=one, spec="one crop")
    one_mean = psnr(hr[:1].mean((2, 3), keepdim=True).expand_as(hr[:1]), hr[:1], 4).item()
    for augment in (True, False):
        cfg = tcfg.replace(batch_size=8, sample_q=1024, scale_min=4.0, scale_max=4.0, augment=augment, val_crops=1)
        r = train(base, cfg, one_split, "cpu")
        print(f"overfit one crop, augment={augment}: {r.steps_done} steps, {r.psnr:.2f} dB (bicubic "
              f"{r.bicubic_psnr:.2f}, the crop's mean colour {one_mean:.2f})")


def plot(curves_path: Path, png: Path) -> None:
    """Every curve of `curves_path` (PSNR vs steps), with each run's bicubic level, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    curves = json.loads(curves_path.read_text())
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for label, c in curves.items():
        steps, values = zip(*c["evals"])
        ax.plot(steps, values, marker="o", ms=3, label=f"{label} ({c['steps']} steps in {c['train_seconds']:.0f} s)")
    bicubic = {round(c["bicubic_psnr"], 2) for c in curves.values()}
    for b in sorted(bicubic):
        ax.axhline(b, color="grey", ls="--", lw=1)
        ax.annotate(f"bicubic {b:.2f} dB", (0.01, b), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    ax.set_xlabel("training step")
    ax.set_ylabel("x4 validation PSNR (dB)")
    ax.set_title("Learning curve on the default data (HR 128 from LR 32, residual off)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(png)
    print(f"wrote {png}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=600.0, help="training budget per run (eval time excluded)")
    p.add_argument("--steps", type=int, default=10 ** 9, help="step budget (whichever of --steps/--seconds first)")
    p.add_argument("--residual", choices=("off", "on", "both"), default="off")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--sample-q", type=int, default=256, help="queries per sample (CPU-sized; the GPU target is 1024)")
    p.add_argument("--lr-size", type=int, default=32, help="training LR side (validation is always LR 32 at x4)")
    p.add_argument("--eval-points", type=int, default=12, help="points of the learning curve")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a ModelConfig field")
    p.add_argument("--data", default=None, help="folder of images (default: the scikit-image photos)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--curve", type=Path, default=None, help="add this run's learning curve to a JSON file")
    p.add_argument("--label", default="model", help="name of the curve in --curve / the PNG")
    p.add_argument("--plot", type=Path, default=None, metavar="CURVES.json", help="draw the curves of a file, then exit")
    p.add_argument("--png", type=Path, default=Path("learning-curve.png"))
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    p.add_argument("--diagnose", action="store_true", help="run the checks behind the diagnosis instead")
    p.add_argument("--smoke", action="store_true", help="a few steps on a tiny config: checks that the script runs")
    args = p.parse_args()
    if args.plot:
        plot(args.plot, args.png)
        return
    if args.smoke:
        import tempfile

        args.seconds, args.steps, args.eval_points, args.batch_size = 60.0, 4, 2, 2
        args.set += ["dim=16", "num_lp_tokens=16", "hidden_dim=16", "num_processor_layers=1"]
        smoke_dir = Path(tempfile.mkdtemp())
        args.curve, args.png = args.curve or smoke_dir / "curves.json", smoke_dir / "curve.png"

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mm = matmul_flops_per_s(seconds=0.3 if args.smoke else 3.0)
    print(f"CPU: {torch.get_num_threads()} threads, fp32 matmul 1024^3: {mm / 1e9:.1f} GFLOP/s")
    overrides = dict(SMALL)
    if args.set:  # (an older checkout has no scent_search.mapping: measure it without --set)
        from scent_search.mapping import parse_literal

        overrides.update({k: parse_literal(v) for k, v in (s.split("=", 1) for s in args.set)})
    base = ModelConfig(**overrides)
    tcfg = TrainConfig(steps=args.steps, seconds=args.seconds, batch_size=args.batch_size, sample_q=args.sample_q,
                       lr_size=args.lr_size, lr=args.lr, warmup_steps=args.warmup, eval_points=args.eval_points,
                       seed=args.seed, **({"val_crops": 2} if args.smoke else {}))
    print(f"model: {overrides}")
    print(f"train: {args.seconds:.0f} s / {args.steps} steps budget, batch {args.batch_size} x {args.sample_q} queries, "
          f"LR {args.lr_size}, lr {args.lr}, cosine, warmup {args.warmup}; data: "
          f"{args.data or 'default (scikit-image photos)'}")
    data = load_data(args.data, tcfg)
    if args.diagnose:
        diagnose(base.replace(residual_bicubic=False), tcfg.replace(eval_points=1), data)
        return
    rows = []
    for residual in {"off": (False,), "on": (True,), "both": (False, True)}[args.residual]:
        cfg = base.replace(residual_bicubic=residual)
        t0, c0 = time.perf_counter(), time.process_time()
        r = train(cfg, tcfg, data, "cpu")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        achieved = r.flops_per_step * r.steps_per_s
        row = dict(residual_bicubic=residual, n_params=r.n_params, steps=r.steps_done, steps_per_s=r.steps_per_s,
                   samples_per_s=r.samples_per_s, flops_per_step=r.flops_per_step, achieved_flops_per_s=achieved,
                   fraction_of_matmul=achieved / mm, psnr=r.psnr, best_psnr=r.best_psnr, bicubic_psnr=r.bicubic_psnr,
                   evals=r.evals, first_loss=statistics.mean(r.losses[:20]), last_loss=statistics.mean(r.losses[-20:]),
                   wall_s=wall, cpu_s=cpu, train_seconds=r.train_seconds)
        rows.append(row)
        print(f"\nresidual_bicubic={residual}: {r.n_params} params, {r.steps_done} steps in {r.train_seconds:.0f} s "
              f"(+{wall - r.train_seconds:.0f} s eval/setup; {cpu / 60:.1f} CPU-minutes in all)")
        print(f"  {r.steps_per_s:.2f} steps/s, {r.samples_per_s:.1f} samples/s, "
              f"{r.flops_per_step / 1e9:.2f} GFLOP/step -> {achieved / 1e9:.2f} GFLOP/s = "
              f"{100 * achieved / mm:.1f}% of matmul")
        print(f"  L1 loss {row['first_loss']:.4f} (first 20 steps) -> {row['last_loss']:.4f} (last 20)")
        print(f"  learning curve (x4 PSNR; bicubic {r.bicubic_psnr:.2f} dB):")
        print(f"    {'step':>7s}  {'PSNR dB':>8s}  {'vs bicubic':>10s}")
        for step, value in r.evals:
            print(f"    {step:>7d}  {value:>8.2f}  {value - r.bicubic_psnr:>+10.2f}")
        print(f"  x4 PSNR best {r.best_psnr:.2f} dB, final {r.psnr:.2f} dB, bicubic {r.bicubic_psnr:.2f} dB "
              f"({r.best_psnr - r.bicubic_psnr:+.2f} dB)")
        if args.curve is not None:
            curves = json.loads(args.curve.read_text()) if args.curve.exists() else {}
            label = args.label + (" (residual on)" if residual else "")
            curves[label] = {k: row[k] for k in ("evals", "bicubic_psnr", "steps", "train_seconds", "cpu_s", "n_params")}
            curves[label]["model"] = overrides
            args.curve.write_text(json.dumps(curves, indent=1))
    if args.json:
        print(json.dumps(dict(matmul_flops_per_s=mm, runs=rows)))
    if args.smoke:  # the PNG path too
        plot(args.curve, args.png)


if __name__ == "__main__":
    main()
