"""Measured against predicted peak memory of every preset at the seed's shape, on CUDA (fp32 and bf16).

    python benchmarks/gpu_memory.py [--presets baseline,option-a] [--precisions fp32,bf16]
                                    [--batch-size 64] [--queries 1024] [--storage URL] [--dry-run] [--json F]

On a GPU: for each preset and precision, one warm-up step and one measured step (scent_search.memory's
measure path), then the prediction for the same config, shape and processor backend; prints preset,
precision, measured allocated / reserved, predicted, predicted/measured. Target: predictions within 5% of
max_memory_allocated and never under it by more than 2%. Exit code 1 when a row misses the target.
With --storage the (predicted, measured) pairs are stored as calibration (the search's margin).
--dry-run runs the predictions only (no GPU needed): it checks the script's logic on a CPU machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

TARGET_WITHIN = 0.05  # |predicted / measured - 1| <= 5%
TARGET_UNDER = 0.02  # predicted >= measured * (1 - 2%)


def main(argv: list[str] | None = None) -> int:
    from scent_search.config import TargetShape
    from scent_search.memory import ProfileCache, gib, profile_step
    from scent_search.memory._predict import default_backend
    from scent_search.model import PRESETS, preset_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--queries", type=int, default=1024)
    ap.add_argument("--lr-size", type=int, default=32)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--storage", default=None, help="store calibration pairs here (SQLAlchemy URL)")
    ap.add_argument("--dry-run", action="store_true", help="predictions only, no GPU")
    ap.add_argument("--json", dest="json_path", default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)

    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to check predictions only", file=sys.stderr)
        return 2
    cache = ProfileCache(args.storage) if args.storage and not args.dry_run else None
    rows, misses = [], 0
    header = (f"{'preset':<21}{'prec':<6}{'measured GiB':>13}{'reserved GiB':>13}{'predicted GiB':>14}"
              f"{'pred/meas':>10}{'after GiB':>10}{'time s':>8}  backend")
    print(header)
    for name in args.presets.split(","):
        for precision in args.precisions.split(","):
            cfg = preset_config(name)
            shape = TargetShape(batch_size=args.batch_size, queries=args.queries, lr_size=args.lr_size,
                                precision=precision)
            t0 = time.perf_counter()
            measured = None if args.dry_run else profile_step(cfg, shape, device=args.device)
            backend = measured.backend if measured else default_backend()
            pred = profile_step(cfg, shape, device="predict", backend=backend)
            dt = time.perf_counter() - t0
            after = torch.cuda.memory_allocated() if not args.dry_run else 0  # must be ~0: profiles free all
            row = {"preset": name, "precision": precision, "backend": backend,
                   "predicted_bytes": pred.peak_allocated_bytes, "seconds": round(dt, 2),
                   "allocated_after_bytes": after}
            if measured is not None:
                row.update(measured_allocated_bytes=measured.peak_allocated_bytes,
                           measured_reserved_bytes=measured.peak_reserved_bytes, oom=measured.oom,
                           device=measured.device_kind)
                ok = not measured.oom and abs(pred.peak_allocated_bytes / measured.peak_allocated_bytes - 1) \
                    <= TARGET_WITHIN and pred.peak_allocated_bytes >= measured.peak_allocated_bytes * (1 - TARGET_UNDER)
                row["ratio"] = round(pred.peak_allocated_bytes / measured.peak_allocated_bytes, 4)
                row["meets_target"] = ok
                misses += not ok
                if cache is not None and not measured.oom:
                    cache.record_calibration(pred, measured)
                meas_s = "OOM" if measured.oom else f"{gib(measured.peak_allocated_bytes):.3f}"
                res_s = "-" if measured.peak_reserved_bytes is None else f"{gib(measured.peak_reserved_bytes):.3f}"
                ratio_s = f"{row['ratio']:.4f}" + ("" if ok else " *")
            else:
                meas_s = res_s = ratio_s = "-"
            print(f"{name:<21}{precision:<6}{meas_s:>13}{res_s:>13}{gib(pred.peak_allocated_bytes):>14.3f}"
                  f"{ratio_s:>10}{gib(after):>10.3f}{dt:>8.1f}  {backend}", flush=True)
            rows.append(row)
    if cache is not None:
        print(f"calibration margin now: {cache.calibration_margin():.4f}")
    if not args.dry_run:
        print(f"{len(rows) - misses} of {len(rows)} rows within {TARGET_WITHIN:.0%} and not under by more than "
              f"{TARGET_UNDER:.0%} (* marks a miss)")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"device": rows[0].get("device") if rows else None, "torch": torch.__version__, "rows": rows},
                      f, indent=2)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
