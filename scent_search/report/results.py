"""Reading results back: the data behind `scent-search studies`, `best` and the end-of-run summary.

Trial status and the Pareto set come from `report.pareto` (one definition for every output); storages are
opened with `records.open_existing`, which never creates a database.
"""

from __future__ import annotations

from typing import Any

import optuna

from scent_search.records import FEASIBLE, RUNNING, TrialRecord, load_study, open_existing, safe_url, storage_errors
from scent_search.report.pareto import summarize


def _row(r: TrialRecord) -> dict[str, Any]:
    return {"trial": r.number, "status": r.status, "params": dict(r.params), "peak_gib": r.peak_gib,
            "peak_source": r.peak_source, "peak_provenance": r.provenance, "psnr": r.psnr,
            "bicubic_psnr": r.bicubic_psnr,
            "steps_per_s": r.steps_per_s, "n_params": r.n_params, "fail_reason": r.fail_reason}


def _best(s: Any) -> TrialRecord | None:
    feasible = [r for r in s.records if r.status == FEASIBLE and r.psnr is not None]
    return max(feasible, key=lambda r: (r.psnr, -(r.peak_gib or 0.0), -r.number), default=None)


def study_table(study: optuna.Study) -> dict[str, Any]:
    """Counts per status, the best feasible trial (highest PSNR among completed feasible ones) and the
    Pareto set (feasible trials, PSNR maximised against peak memory minimised, by increasing peak). Both
    hold trained trials only, in a single- or a multi-objective study alike."""
    s = summarize(study)
    best = _best(s)
    counts = dict(s.counts)
    return {"study": s.name, "budget_gib": s.budget_gib, "target_shape": dict(s.target_shape), "device": s.device,
            "objectives": dict(s.objectives), "counts": counts,
            "finished": sum(v for k, v in counts.items() if k != RUNNING),
            "best": _row(best) if best else None,
            "pareto": [_row(r) for r in s.pareto],  # a copied config (`duplicate_of`) is never on the front
            "model_config": dict(best.model_config) if best and best.model_config else None}


def list_studies(url: str) -> list[dict[str, Any]]:
    storage = open_existing(url)
    rows = []
    with storage_errors(url):
        for name in sorted(optuna.get_all_study_names(storage)):
            t = study_table(optuna.load_study(study_name=name, storage=storage))
            best = t["best"]
            rows.append({"study": name, "trials": t["finished"], **t["counts"], "budget_gib": t["budget_gib"],
                         "best_trial": best["trial"] if best else None, "best_psnr": best["psnr"] if best else None,
                         "best_peak_gib": best["peak_gib"] if best else None})
    return rows


def best_of(url: str, name: str) -> dict[str, Any]:
    """The best feasible trial of study `name` (highest PSNR), with its full model config and the study's target
    shape, and the Pareto set it belongs to (what a multi-objective study optimises)."""
    storage = open_existing(url)
    study = load_study(storage, name, url)
    with storage_errors(url):
        t = study_table(study)
    out = {"study": name, "storage": safe_url(url), "budget_gib": t["budget_gib"],
           "target_shape": t["target_shape"], "objectives": t["objectives"], "best": t["best"], "pareto": t["pareto"]}
    if t["best"] is not None:
        out["model_config"] = t["model_config"]
    return out
