"""Figures of the search service (results in docs/benchmarks.md, section "Search").

    python benchmarks/search.py                      # all three parts
    python benchmarks/search.py --parts overhead --trials 30
    python benchmarks/search.py --smoke              # every part at its smallest (tests/test_benchmarks.py)

1. overhead: storage overhead per trial, i.e. a trial's wall time outside training and profiling (ask,
   attrs, constraint, tell, heartbeat, slot lock, sampler, the dashboard refreshes after trials and the
   final one at the end of the run, the map's storing), for SQLite and PostgreSQL, averaged over the run.
   Training, profiling and the CPU cost estimate's step timer are stand-ins that return at once, so
   everything measured is the service's own cost.
2. map: the feasibility map of studies/default.toml (every config's predicted peak) into a fresh profile
   cache, then again from the cache: seconds per config, and how many configs fit.
3. sampler: how many trials the search needs to reach the best feasible config, TPE (with the memory
   constraint) against random search, both drawing only feasible untried configs from the map
   (search.FeasibleSampler), median over seeds. A cheap surrogate objective, stated here: the peak is the
   real predictor's (seed-40gb target step: batch 64 x 1024 queries, LR 32, fp32, mamba-ssm's processor
   kernels as on the researcher's GPU; constraint bytes), over the five core knobs of
   studies/seed-40gb.toml (216 configs; precision and checkpointing fixed at fp32, off); the PSNR is the
   fixed function `surrogate_psnr` below (more capacity helps, with diminishing returns).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import types
import uuid
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

TINY = """
name = "bench"
budget_gib = 100.0
device = "cpu"
[target]
batch_size = 4
queries = 256
lr_size = 16
[train]
steps = 2
batch_size = 2
sample_q = 64
lr_size = 16
eval_points = 2
val_hr_size = 64
val_crops = 2
[model]
dim = 16
num_lp_tokens = 8
feature_dim = 8
num_processor_layers = 1
[space]
hidden_dim = [16, 32, 64, 128, 256]
mult = [1, 2, 4]
num_decoder_layers = [1, 2, 3]
share_scales = [false, true]
sigma_ls = [[16.0], [16.0, 4.0]]
[sampler]
name = "tpe"
[pruner]
name = "nop"
"""


# --------------------------------------------------------------------------------------------------
# 1. Storage overhead per trial


def overhead(url: str, trials: int) -> dict[str, float]:
    import tomllib

    from scent_search.report import DashboardArtifactsCallback
    from scent_search.search import Peak, StudySpec, prepare_run, run_study

    spent = {"train": 0.0, "probe": 0.0, "dashboard": 0.0}

    def probe(model_cfg, shape):
        t0 = time.perf_counter()
        b = 2**20 * model_cfg.hidden_dim
        peak = Peak(b, b, b, "predicted", {"other": b}, 1000, "torch", "cpu")
        spent["probe"] += time.perf_counter() - t0
        return peak

    def train(model_cfg, train_cfg, data, device, on_eval=None):
        t0 = time.perf_counter()
        for i in range(train_cfg.eval_points):  # the two reports are storage writes: they stay in "overhead"
            spent["train"] += time.perf_counter() - t0
            on_eval(i, 25.0 + i)
            t0 = time.perf_counter()
        spent["train"] += time.perf_counter() - t0
        return types.SimpleNamespace(psnr=26.0 + model_cfg.hidden_dim / 1e3, bicubic_psnr=25.0, steps_per_s=1.0,
                                     samples_per_s=2.0, flops_per_step=1, n_params=1, backend="torch",
                                     device="cpu", steps_done=2, train_seconds=0.0)

    refresh = DashboardArtifactsCallback()  # what the CLI hands run_study

    def timed_refresh(study, trial):
        t0 = time.perf_counter()
        refresh(study, trial)
        spent["dashboard"] += time.perf_counter() - t0

    spec = StudySpec.from_dict(tomllib.loads(TINY), source="benchmarks/search.py")
    name = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        plan = prepare_run(spec=spec, storage=url, study_name=name, n_trials=trials)
        t0, c0 = time.perf_counter(), time.process_time()
        # The step timer of a CPU run's cost estimate is training too: stood in.
        run_study(plan, train_fn=train, probe=probe, after_trial=timed_refresh, step_timer=lambda cfg: 0.0)
        t1 = time.perf_counter()
        refresh.final(optuna.load_study(study_name=name, storage=url))  # as the CLI does when the run ends
        spent["dashboard"] += time.perf_counter() - t1
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        optuna.delete_study(study_name=name, storage=url)
    outside = wall - spent["train"] - spent["probe"]
    return {"per_trial_ms": 1e3 * outside / trials, "dashboard_ms": 1e3 * spent["dashboard"] / trials,
            "without_dashboard_ms": 1e3 * (outside - spent["dashboard"]) / trials, "cpu_ms": 1e3 * cpu / trials}


# --------------------------------------------------------------------------------------------------
# 2. The feasibility map of the default study


def map_timing(spec_path: Path, space: dict | None = None) -> dict[str, float]:
    from scent_search.search import load_spec, map_study
    from scent_search.search.spec import SearchSpace

    spec = load_spec(spec_path)
    if space:
        spec = spec.replace(space=SearchSpace({**spec.space.to_dict(), **space}))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/map.db"
        cold = map_study(spec=spec, storage=url)
        warm = map_study(spec=spec, storage=url)
    n = len(cold.map.cells)
    return {"configs": n, "fit": len(cold.map.feasible), "budget_gib": spec.budget_gib, "cold_s": cold.seconds,
            "per_config_s": cold.seconds / n, "warm_s": warm.seconds, "warm_new": warm.new_predictions}


# --------------------------------------------------------------------------------------------------
# 3. TPE with the constraint vs random search, both through the feasibility sampler, on a surrogate objective


def surrogate_psnr(hidden_dim: int, mult: int, layers: int, share: bool, scales: int) -> float:
    """A fixed stand-in for x4 PSNR: capacity helps with diminishing returns; sharing costs a little."""
    return (28.0 + 0.8 * math.log2(hidden_dim / 128) + 0.5 * math.log2(mult) + 0.6 * math.log(layers)
            + 0.35 * math.log(scales) - (0.15 if share and scales > 1 else 0.0))


def _psnr_of(params: dict) -> float:
    return surrogate_psnr(params["hidden_dim"], params["mult"], params["num_decoder_layers"], params["share_scales"],
                          len(params["sigma_ls"].split(",")))


def core_spec(spec_path: Path, budget: float, space: dict | None = None):
    """The spec with its opt-in levers unsearched (precision, checkpointing at the target's values)."""
    from scent_search.search import load_spec
    from scent_search.search.spec import SearchSpace

    spec = load_spec(spec_path)
    choices = {**spec.space.to_dict(), "precision": None, "checkpointing": None, **(space or {})}
    return spec.replace(space=SearchSpace(choices), budget_gib=budget)


def trials_to_best(sampler: optuna.samplers.BaseSampler, spec, fmap, best_key: tuple, cap: int, seed: int) -> int:
    from scent_search.search import FeasibleSampler, FeasibleSpace
    from scent_search.search.feasibility import searched

    found = []
    space = FeasibleSpace(fmap)

    def objective(trial: optuna.Trial) -> float:
        for name, dist in searched(spec).items():
            trial.suggest_categorical(name, dist.choices)
        key = fmap.key(trial.params)
        cell = next(c for c in fmap.cells if fmap.key(c.params) == key)
        trial.set_constraint("peak_memory", cell.peak_gib - fmap.budget_gib)
        if key == best_key:
            found.append(trial.number + 1)
            trial.study.stop()
        return _psnr_of(trial.params)

    study = optuna.create_study(direction="maximize",
                                sampler=FeasibleSampler(sampler, space, searched(spec), seed=seed))
    study.optimize(objective, n_trials=min(cap, len(fmap.feasible)))
    return found[0] if found else cap + 1  # not found within the cap: counted as cap + 1


def sampler_comparison(spec, seeds: int, cap: int, storage: str) -> dict[str, object]:
    from scent_search.search import PeakProbe, predict_map

    fmap = predict_map(spec, PeakProbe(storage, "predict", backend="mamba_ssm"))  # the researcher's GPU
    feasible = fmap.feasible
    if not feasible:
        raise SystemExit(f"no config of the sampler part fits {fmap.budget_gib:g} GiB: raise --budget")
    best = max(feasible, key=lambda c: _psnr_of(c.params))
    # studies/seed-40gb.toml's sampler (its constant_liar only matters with several workers at once)
    tpe_opts = {"n_startup_trials": 12, "multivariate": True}
    runs = {"tpe": [], "random": []}
    for seed in range(seeds):
        runs["tpe"].append(trials_to_best(optuna.samplers.TPESampler(seed=seed, **tpe_opts), spec, fmap,
                                          fmap.key(best.params), cap, seed))
        runs["random"].append(trials_to_best(optuna.samplers.RandomSampler(seed=seed), spec, fmap,
                                             fmap.key(best.params), cap, seed))
    return {"configs": len(fmap.cells), "feasible": len(feasible), "budget_gib": fmap.budget_gib,
            "best": "|".join(str(v) for v in best.params.values()), "best_gib": best.peak_gib,
            "best_psnr": _psnr_of(best.params), "tpe_median": statistics.median(runs["tpe"]),
            "random_median": statistics.median(runs["random"]), "tpe": runs["tpe"], "random": runs["random"],
            "cap": cap}


# --------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="overhead,map,sampler")
    p.add_argument("--trials", type=int, default=30, help="trials per storage in the overhead part")
    p.add_argument("--budget", type=float, default=16.0, help="GiB, the sampler part's fixed budget")
    p.add_argument("--seeds", type=int, default=11)
    p.add_argument("--cap", type=int, default=300)
    p.add_argument("--cache", default=f"sqlite:///{Path(tempfile.gettempdir()) / 'scent-bench-seed40-peaks.db'}",
                   help="profile cache (SQLAlchemy URL) of the sampler part's predictions")
    p.add_argument("--pg", default=PG_URL)
    p.add_argument("--smoke", action="store_true",
                   help="every part at its smallest: 3 trials, a 2-config map, a 4-config sampler run, 1 seed")
    args = p.parse_args()
    parts = args.parts.split(",")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    default = REPO / "studies" / "default.toml"
    tiny_space = {"hidden_dim": [32, 64], "mult": [1], "num_decoder_layers": [1], "share_scales": [False],
                  "sigma_ls": [[32.0]]}
    if args.smoke:
        args.trials, args.seeds, args.cap = 3, 1, 10

    if "overhead" in parts:
        print(f"== storage overhead per trial ({args.trials} trials; training and profiling excluded)")
        with tempfile.TemporaryDirectory() as tmp:
            for label, url in (("SQLite", f"sqlite:///{tmp}/bench.db"), ("PostgreSQL", args.pg)):
                try:
                    r = overhead(url, args.trials)
                except Exception as e:  # e.g. no PostgreSQL here: say so, measure the rest
                    print(f"  {label:<10s} skipped: {str(e).splitlines()[0]}")
                    continue
                print(f"  {label:<10s} {r['per_trial_ms']:7.1f} ms/trial  (dashboard refresh "
                      f"{r['dashboard_ms']:.1f} ms, the rest {r['without_dashboard_ms']:.1f} ms; "
                      f"this process's CPU {r['cpu_ms']:.1f} ms)")
    if "map" in parts:
        r = map_timing(default, tiny_space if args.smoke else None)
        print(f"== feasibility map of studies/default.toml{' (smoke: 2 configs)' if args.smoke else ''}")
        print(f"  {r['configs']} configs predicted in {r['cold_s']:.1f} s ({r['per_config_s']:.2f} s each); "
              f"{r['fit']} fit {r['budget_gib']:g} GiB; again from the cache: {r['warm_s']:.2f} s, "
              f"{r['warm_new']} predicted")
    if "sampler" in parts:
        print("== trials to reach the best feasible config: TPE (constrained) vs random, both drawing only feasible "
              "untried configs, surrogate objective")
        spec = core_spec(default, 1e9, tiny_space | {"hidden_dim": [32, 64, 128], "mult": [1, 2]}) if args.smoke \
            else core_spec(REPO / "studies" / "seed-40gb.toml", args.budget)
        with tempfile.TemporaryDirectory() as scratch:  # --smoke leaves no cache behind
            r = sampler_comparison(spec, args.seeds, args.cap, f"sqlite:///{scratch}/peaks.db" if args.smoke
                                   else args.cache)
        print(f"  {r['configs']} configs, {r['feasible']} feasible under {r['budget_gib']:g} GiB; best feasible "
              f"{r['best']} ({r['best_gib']:.1f} GiB, {r['best_psnr']:.2f} dB surrogate)")
        print(f"  TPE:    median {r['tpe_median']} trials  {r['tpe']}")
        print(f"  random: median {r['random_median']} trials  {r['random']}  (cap {r['cap']}; cap+1 = not found)")


if __name__ == "__main__":
    main()
