"""Noise against signal of a study's objective: is the PSNR ranking the configs, or the seeds?

Prints, in one run, for a study spec (default: studies/default.toml, at its own [train] fidelity):
- noise: the x4 validation PSNR of one config trained with several seeds (model initialisation and the
  training sample stream both follow the seed), and its standard deviation;
- signal: the PSNR of several configs of the space that fit the budget (seed 0), their range (best - worst)
  and standard deviation;
- the ratio range / noise std (the target for the default study is >= 5).

    python benchmarks/noise.py                                  # the recorded run (docs/benchmarks.md)
    python benchmarks/noise.py studies/default.toml --seeds 5 --configs 10 --jobs 2
    python benchmarks/noise.py --smoke                          # a few steps, to check the script runs
    python benchmarks/noise.py --vary spatial_bias=grid,raster,none --seeds 3   # one model field, beside its noise
    python benchmarks/noise.py --vary num_lp_tokens=16,64 --seeds 3

`--vary FIELD=V1,V2,...` trains the middle config of the space (the middle choice of every searched knob) with
each value of one ModelConfig field, each with `--seeds` seeds, and prints mean ± std per value instead.

Trainings run in parallel processes (`--jobs`), one intra-op thread each.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import statistics
import time
from pathlib import Path

from scent_search.config import TrainConfig


def _train(args: tuple) -> dict:
    """One training run in a worker process: (model_cfg dict, train_cfg dict, data) -> figures."""
    import torch

    from scent_search.config import ModelConfig
    from scent_search.train import train

    model, tcfg, data = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    r = train(ModelConfig(**model), TrainConfig(**tcfg), data, "cpu")
    return {"psnr": r.psnr, "bicubic": r.bicubic_psnr, "steps": r.steps_done, "seconds": time.perf_counter() - t0,
            "n_params": r.n_params}


def _label(model: dict, knobs: list[str]) -> str:
    from scent_search.records.knobs import KNOBS, knobs_label

    return knobs_label({k: (KNOBS[k].to_optuna or (lambda v: v))(model[k]) for k in knobs})


def vary(spec, tcfg: TrainConfig, args) -> None:
    """Train the space's middle config with each value of one model field, `args.seeds` seeds each."""
    from scent_search.mapping import parse_literal
    from scent_search.search.feasibility import searched
    from scent_search.search.space import trial_config

    field, _, raw = args.vary.partition("=")
    values = [parse_literal(v) for v in raw.split(",")]
    middle = {name: dist.choices[len(dist.choices) // 2] for name, dist in searched(spec).items()
              if hasattr(dist, "choices")}
    base = trial_config(spec, middle).model
    data = spec.data if spec.data != "default" else None
    jobs = [(base.replace(**{field: v}).to_dict(), tcfg.replace(seed=s).to_dict(), data)
            for v in values for s in range(args.seeds)]
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_train, jobs))
    print(f"{field} on {_label(base.to_dict(), list(middle))}, {tcfg.steps} steps, {args.seeds} seeds each "
          f"(bicubic {results[0]['bicubic']:.3f} dB)")
    rows = []
    for i, v in enumerate(values):
        psnr = [r["psnr"] for r in results[i * args.seeds:(i + 1) * args.seeds]]
        std = statistics.stdev(psnr) if len(psnr) > 1 else float("nan")
        rows.append((v, statistics.mean(psnr), std))
        print(f"  {field}={v!s:<10} {statistics.mean(psnr):.3f} ± {std:.3f} dB   seeds: "
              f"{', '.join(f'{x:.3f}' for x in psnr)}")
    best = max(rows, key=lambda r: r[1])
    pooled = statistics.mean(r[2] ** 2 for r in rows) ** 0.5
    print(f"  best {field}={best[0]}; pooled seed std {pooled:.3f} dB; differences to the best in units of it: "
          + ", ".join(f"{r[0]}: {(best[1] - r[1]) / pooled:.1f}" for r in rows if r is not best))
    print(f"total {time.perf_counter() - t0:.0f} s with {args.jobs} jobs")
    if args.json:
        print(json.dumps({"field": field, "rows": rows, "pooled_std": pooled, "steps": tcfg.steps}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", default=None, help="study spec (default: studies/default.toml)")
    p.add_argument("--seeds", type=int, default=4, help="seeds of the noise config (>= 3)")
    p.add_argument("--configs", type=int, default=8, help="configs of the space for the spread (seed 0)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--smoke", action="store_true", help="3 steps, 3 seeds, 2 configs: only checks that it runs")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    p.add_argument("--vary", default=None, metavar="FIELD=V1,V2", help="compare values of one model field")
    args = p.parse_args()

    from scent_search.memory import DEFAULT_MARGIN, predict
    from scent_search.search import default_spec_path, load_spec
    from scent_search.search.feasibility import configs as space_configs
    from scent_search.search.feasibility import same_config
    from scent_search.units import GIB
    from scent_search.search.space import trial_config

    spec = load_spec(args.spec or default_spec_path())
    if args.smoke:
        args.seeds, args.configs, args.steps = 3, 2, 3
    tcfg = spec.train.replace(seconds=None, eval_points=1)  # a budget in steps: machine load changes nothing
    if args.steps:
        tcfg = tcfg.replace(steps=args.steps)
    t0 = time.perf_counter()
    if args.vary:
        vary(spec, tcfg, args)
        return
    # One config per model (configs that build the same model train to the same PSNR: ModelConfig.canonical).
    same = same_config(spec)
    distinct = list({same(params): params for params in reversed(space_configs(spec))}.values())[::-1]
    configs = [trial_config(spec, params) for params in distinct]
    if args.smoke:  # a few configs: the map of the whole space alone takes a minute
        configs = configs[:6]
    peaks = [predict(c.model, c.shape) for c in configs]  # one prediction each
    fits = [(c, p) for c, p in zip(configs, peaks) if p.constraint_bytes(DEFAULT_MARGIN) <= spec.budget_gib * GIB]
    feasible = [c for c, _ in fits]
    print(f"spec {spec.source}: {len(configs)} distinct configs, {len(feasible)} fit {spec.budget_gib:g} GiB "
          f"(predicted, {time.perf_counter() - t0:.0f} s); training {tcfg.steps} steps, batch {tcfg.batch_size} x "
          f"{tcfg.sample_q} queries, LR {tcfg.lr_size}, lr {tcfg.lr:g}; validation {tcfg.val_crops} crops of "
          f"{tcfg.val_hr_size} px at x4")
    knobs = [k for k, v in spec.space.choices.items() if v is not None and k in feasible[0].model.to_dict()]
    # The noise config: the middle of the feasible configs by predicted peak (a typical one, not an extreme).
    noise_cfg = sorted(fits, key=lambda cp: cp[1].peak_allocated_bytes)[len(fits) // 2][0]
    rng = random.Random(0)
    spread_cfgs = rng.sample(feasible, min(args.configs, len(feasible)))
    jobs = [(noise_cfg.model.to_dict(), tcfg.replace(seed=s).to_dict(), spec.data if spec.data != "default" else None)
            for s in range(args.seeds)]
    jobs += [(c.model.to_dict(), tcfg.to_dict(), spec.data if spec.data != "default" else None) for c in spread_cfgs]
    with cf.ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_train, jobs))
    seeds, spread = results[:args.seeds], results[args.seeds:]

    noise_psnr = [r["psnr"] for r in seeds]
    noise_std = statistics.stdev(noise_psnr)
    print(f"\nnoise: {_label(noise_cfg.model.to_dict(), knobs)}, {args.seeds} seeds")
    for s, r in enumerate(seeds):
        print(f"  seed {s}: {r['psnr']:.3f} dB  ({r['seconds']:.0f} s)")
    print(f"  mean {statistics.mean(noise_psnr):.3f} dB, std {noise_std:.3f} dB (bicubic {seeds[0]['bicubic']:.3f})")
    print(f"\nsignal: {len(spread)} feasible configs, seed 0")
    for c, r in sorted(zip(spread_cfgs, spread), key=lambda cr: -cr[1]["psnr"]):
        print(f"  {_label(c.model.to_dict(), knobs):<40s} {r['psnr']:.3f} dB  {r['n_params']:>9,d} params  "
              f"({r['seconds']:.0f} s)")
    psnrs = [r["psnr"] for r in spread]
    rng_db = max(psnrs) - min(psnrs)
    std_db = statistics.stdev(psnrs) if len(psnrs) > 1 else 0.0
    print(f"  range {rng_db:.3f} dB, std {std_db:.3f} dB")
    print(f"\nrange / noise std = {rng_db / noise_std:.1f}   (std across configs / noise std = {std_db / noise_std:.1f}); "
          f"target for the default study: range >= 5 x noise")
    print(f"total {time.perf_counter() - t0:.0f} s with {args.jobs} jobs")
    if args.json:
        print(json.dumps({"noise_psnr": noise_psnr, "noise_std": noise_std, "spread_psnr": psnrs, "range": rng_db,
                          "spread_std": std_db, "steps": tcfg.steps}))


if __name__ == "__main__":
    main()
