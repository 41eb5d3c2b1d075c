"""Figures of the search service (results in docs/benchmarks.md, section "Search").

    python benchmarks/search.py                      # all three parts
    python benchmarks/search.py --parts overhead --trials 30

1. overhead: storage overhead per trial, i.e. a trial's wall time outside training and profiling (ask,
   attrs, constraint, tell, heartbeat, slot lock, dashboard refresh), for SQLite and PostgreSQL. Training
   and profiling are stand-ins that return at once, so everything measured is the service's own cost.
2. infeasible: the fraction of study time spent on infeasible configs, on the real default study
   (real predictor, real training, a temporary SQLite file).
3. sampler: how many trials TPE (with the memory constraint) needs to reach the best feasible config,
   against random search, median over seeds. A cheap surrogate objective, stated here: the peak is the
   real predictor's (seed-40gb target step: batch 64 x 1024 queries, LR 32, fp32; constraint bytes with
   the default margin), over the five core knobs of studies/seed-40gb.toml (216 configs); the PSNR is the
   fixed function `surrogate_psnr` below (more capacity helps, with diminishing returns). Infeasible
   trials return the bicubic floor 26.66 dB like the real objective.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import types
import uuid
from itertools import product
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
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        optuna.delete_study(study_name=name, storage=url)
    outside = wall - spent["train"] - spent["probe"]
    return {"per_trial_ms": 1e3 * outside / trials, "dashboard_ms": 1e3 * spent["dashboard"] / trials,
            "without_dashboard_ms": 1e3 * (outside - spent["dashboard"]) / trials, "cpu_ms": 1e3 * cpu / trials}


# --------------------------------------------------------------------------------------------------
# 2. Time on infeasible configs (the real default study)


def infeasible_fraction(trials: int) -> dict[str, float]:
    from scent_search.report import TerminalReporter
    from scent_search.search import prepare_run, run_study

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/default.db"
        plan = prepare_run(REPO / "studies" / "default.toml", storage=url, n_trials=trials, device="cpu")
        t0 = time.perf_counter()
        run_study(plan, TerminalReporter(out=sys.stderr, bar=False))
        wall = time.perf_counter() - t0
        study = optuna.load_study(study_name=plan.spec.name, storage=url)
        secs = {t.number: t.duration.total_seconds() for t in study.trials if t.duration}
        infeasible = [t.number for t in study.trials if t.user_attrs.get("feasible") is False]
        profile = sum(t.user_attrs.get("profile_seconds", 0.0) for t in study.trials if t.number in infeasible)
    total = sum(secs.values())
    spent = sum(secs[n] for n in infeasible)
    return {"trials": len(secs), "infeasible": len(infeasible), "study_s": wall, "infeasible_s": spent,
            "infeasible_profile_s": profile, "fraction": spent / wall if wall else math.nan,
            "fraction_of_trial_time": spent / total if total else math.nan}


# --------------------------------------------------------------------------------------------------
# 3. TPE with the constraint vs random search, on a surrogate objective

BICUBIC_DB = 26.66  # DIV2K-val x4 bicubic (DESIGN.md section 3): the value of an untrained config


def surrogate_psnr(hidden_dim: int, mult: int, layers: int, share: bool, scales: int) -> float:
    """A fixed stand-in for x4 PSNR: capacity helps with diminishing returns; sharing costs a little."""
    return (28.0 + 0.8 * math.log2(hidden_dim / 128) + 0.5 * math.log2(mult) + 0.6 * math.log(layers)
            + 0.35 * math.log(scales) - (0.15 if share and scales > 1 else 0.0))


def surrogate_table(cache: Path) -> dict[str, float]:
    """Predicted constraint GiB of every core-knob config of studies/seed-40gb.toml (cached in `cache`)."""
    from scent_search.memory import DEFAULT_MARGIN, profile_step
    from scent_search.records.knobs import sigma_label
    from scent_search.search import load_spec

    spec = load_spec(REPO / "studies" / "seed-40gb.toml")
    table = json.loads(cache.read_text()) if cache.is_file() else {}
    s = spec.space
    for h, m, L, share, sig in product(s["hidden_dim"], s["mult"], s["num_decoder_layers"], s["share_scales"],
                                       s["sigma_ls"]):
        key = f"{h}|{m}|{L}|{share}|{sigma_label(sig)}"
        if key not in table:
            cfg = spec.model.replace(hidden_dim=h, mult=m, num_decoder_layers=L, share_scales=share, sigma_ls=sig)
            table[key] = profile_step(cfg, spec.target, "predict").constraint_bytes(DEFAULT_MARGIN) / 2**30
            cache.write_text(json.dumps(table))
    return table


def trials_to_best(sampler: optuna.samplers.BaseSampler, table: dict[str, float], budget: float,
                   best_key: str, cap: int) -> int:
    from scent_search.records.knobs import sigma_label
    from scent_search.search import load_spec

    space = load_spec(REPO / "studies" / "seed-40gb.toml").space

    found = []

    def objective(trial: optuna.Trial) -> float:
        h = trial.suggest_categorical("hidden_dim", list(space["hidden_dim"]))
        m = trial.suggest_categorical("mult", list(space["mult"]))
        L = trial.suggest_categorical("num_decoder_layers", list(space["num_decoder_layers"]))
        share = trial.suggest_categorical("share_scales", list(space["share_scales"]))
        sig = trial.suggest_categorical("sigma_ls", [sigma_label(c) for c in space["sigma_ls"]])
        key = f"{h}|{m}|{L}|{share}|{sig}"
        trial.set_constraint("peak_memory", table[key] - budget)
        if key == best_key:
            found.append(trial.number + 1)
            trial.study.stop()
        if table[key] > budget:
            return BICUBIC_DB
        return surrogate_psnr(h, m, L, share, len(sig.split(",")))

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=cap)
    return found[0] if found else cap + 1  # not found within the cap: counted as cap + 1


def sampler_comparison(budget: float, seeds: int, cap: int, cache: Path) -> dict[str, object]:
    table = surrogate_table(cache)

    def psnr_of(key: str) -> float:
        h, m, L, share, sig = key.split("|")
        return surrogate_psnr(int(h), int(m), int(L), share == "True", len(sig.split(",")))

    feasible = [k for k, gib in table.items() if gib <= budget]
    best_key = max(feasible, key=psnr_of)
    # studies/seed-40gb.toml's sampler (its constant_liar only matters with several workers at once)
    tpe_opts = {"n_startup_trials": 12, "multivariate": True}
    runs = {"tpe": [], "random": []}
    for seed in range(seeds):
        runs["tpe"].append(trials_to_best(optuna.samplers.TPESampler(seed=seed, **tpe_opts), table, budget,
                                          best_key, cap))
        runs["random"].append(trials_to_best(optuna.samplers.RandomSampler(seed=seed), table, budget, best_key, cap))
    return {"configs": len(table), "feasible": len(feasible), "budget_gib": budget, "best": best_key,
            "best_gib": table[best_key], "best_psnr": psnr_of(best_key),
            "tpe_median": statistics.median(runs["tpe"]), "random_median": statistics.median(runs["random"]),
            "tpe": runs["tpe"], "random": runs["random"], "cap": cap}


# --------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="overhead,infeasible,sampler")
    p.add_argument("--trials", type=int, default=30, help="trials per storage in the overhead part")
    p.add_argument("--default-trials", type=int, default=12, help="trials of the default study (part 2)")
    p.add_argument("--budget", type=float, default=16.0, help="GiB, the sampler part's fixed budget")
    p.add_argument("--seeds", type=int, default=11)
    p.add_argument("--cap", type=int, default=300)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "scent-bench-seed40-peaks.json")
    p.add_argument("--pg", default=PG_URL)
    args = p.parse_args()
    parts = args.parts.split(",")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if "overhead" in parts:
        print(f"== storage overhead per trial ({args.trials} trials; training and profiling excluded)")
        with tempfile.TemporaryDirectory() as tmp:
            for label, url in (("SQLite", f"sqlite:///{tmp}/bench.db"), ("PostgreSQL", args.pg)):
                try:
                    r = overhead(url, args.trials)
                except Exception as e:  # e.g. no PostgreSQL here: say so, measure the rest
                    print(f"  {label:<10s} skipped: {str(e).splitlines()[0]}")
                    continue
                print(f"  {label:<10s} {r['per_trial_ms']:7.1f} ms/trial  (dashboard refresh {r['dashboard_ms']:.1f} ms,"
                      f" the rest {r['without_dashboard_ms']:.1f} ms; this process's CPU {r['cpu_ms']:.1f} ms)")
    if "infeasible" in parts:
        print(f"== time on infeasible configs (studies/default.toml, {args.default_trials} trials, real training)")
        r = infeasible_fraction(args.default_trials)
        print(f"  {r['infeasible']}/{r['trials']} trials infeasible; they took {r['infeasible_s']:.2f} s "
              f"(profiling {r['infeasible_profile_s']:.2f} s) of a {r['study_s']:.1f} s study: "
              f"{100 * r['fraction']:.1f} % of study time")
    if "sampler" in parts:
        print("== trials to reach the best feasible config: TPE (constrained) vs random, surrogate objective")
        r = sampler_comparison(args.budget, args.seeds, args.cap, args.cache)
        print(f"  {r['configs']} configs, {r['feasible']} feasible under {r['budget_gib']:g} GiB; best feasible "
              f"{r['best']} ({r['best_gib']:.1f} GiB, {r['best_psnr']:.2f} dB surrogate)")
        print(f"  TPE:    median {r['tpe_median']} trials  {r['tpe']}")
        print(f"  random: median {r['random_median']} trials  {r['random']}  (cap {r['cap']}; cap+1 = not found)")


if __name__ == "__main__":
    main()
