"""Reading results back: the data behind `scent-search studies`, `best` and the end-of-run summary.

Trial status and the Pareto set come from `report.pareto` (one definition for every output); storages are
opened with `records.open_existing`, which never creates a database.
"""

from __future__ import annotations

from typing import Any

import optuna

from scent_search.records import RUNNING, TrialRecord, load_study, open_existing, safe_url, storage_errors
from scent_search.report.pareto import StudySummary, near_best, noise_line, summarize


def _row(r: TrialRecord, near: set[int] = frozenset()) -> dict[str, Any]:
    """A trial standing for its config: `psnr` its own (seed `train_seed`), `psnr_mean` / `psnr_std` / `n_seeds`
    over the config's seeds, `within_noise_of_best` (None: the noise is unknown)."""
    return {"trial": r.number, "status": r.status, "params": dict(r.params), "peak_gib": r.peak_gib,
            "peak_source": r.peak_source, "peak_provenance": r.provenance, "psnr": r.psnr,
            "psnr_mean": r.psnr_mean, "psnr_std": r.psnr_std, "n_seeds": r.n_seeds,
            "within_noise_of_best": (r.number in near) if near else None, "train_seed": r.train_seed,
            "bicubic_psnr": r.bicubic_psnr,
            "steps_per_s": r.steps_per_s, "n_params": r.n_params, "fail_reason": r.fail_reason}


def _best(s: StudySummary) -> TrialRecord | None:
    best = s.best
    return None if best is None else next(r for r in s.records if r.number == best.number)


def study_table(study: optuna.Study) -> dict[str, Any]:
    """Counts per status, the best feasible config (highest mean PSNR over its seeds, among trained feasible
    ones), the Pareto set (configs at their mean PSNR against peak memory, by increasing peak), and the
    seed noise. Each config is shown by the trial that stands for it; every one was trained, in a single-
    or a multi-objective study alike."""
    s = summarize(study)
    best = _best(s)
    counts = dict(s.counts)
    near = near_best(s)
    return {"study": s.name, "budget_gib": s.budget_gib, "target_shape": dict(s.target_shape), "device": s.device,
            "objectives": dict(s.objectives), "counts": counts,
            "finished": sum(v for k, v in counts.items() if k != RUNNING), "repeats": s.n_repeats,
            "best": _row(best, near) if best else None,
            "pareto": [_row(r, near) for r in s.pareto],  # a copy or a repeat is never on the front
            "noise": s.noise.to_dict(), "noise_line": noise_line(s),
            "model_config": dict(best.model_config) if best and best.model_config else None}


def list_studies(url: str) -> list[dict[str, Any]]:
    storage = open_existing(url)
    rows = []
    with storage_errors(url):
        for name in sorted(optuna.get_all_study_names(storage)):
            t = study_table(optuna.load_study(study_name=name, storage=storage))
            best = t["best"]
            rows.append({"study": name, "trials": t["finished"], **t["counts"], "budget_gib": t["budget_gib"],
                         "best_trial": best["trial"] if best else None,
                         "best_psnr": best["psnr_mean"] if best else None,  # the mean over its seeds
                         "best_peak_gib": best["peak_gib"] if best else None})
    return rows


def best_of(url: str, name: str) -> dict[str, Any]:
    """The best feasible config of study `name` (highest mean PSNR over its seeds), by the trial standing for it,
    with its full model config and the study's target shape, the Pareto set it belongs to (what a
    multi-objective study optimises) and the study's seed noise."""
    storage = open_existing(url)
    study = load_study(storage, name, url)
    with storage_errors(url):
        t = study_table(study)
    out = {"study": name, "storage": safe_url(url), "budget_gib": t["budget_gib"],
           "target_shape": t["target_shape"], "objectives": t["objectives"], "best": t["best"], "pareto": t["pareto"],
           "noise": t["noise"], "noise_line": t["noise_line"]}
    if t["best"] is not None:
        out["model_config"] = t["model_config"]
    return out
