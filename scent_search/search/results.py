"""Reading results back: the data behind `scent-search studies`, `best` and the end-of-run summary.

Trial status and the Pareto set come from `scent_search.report` (one definition for every output).
"""

from __future__ import annotations

from typing import Any

import optuna

from scent_search.errors import ConfigError, StorageError
from scent_search.search.storage import open_storage, parse_url, safe_url, storage_errors


def _summary(study: optuna.Study):
    from scent_search.report import summarize

    return summarize(study)


def _row(r: Any) -> dict[str, Any]:
    return {"trial": r.number, "status": r.status, "params": dict(r.params), "peak_gib": r.peak_gib,
            "peak_source": r.peak_source, "psnr": r.psnr, "bicubic_psnr": r.bicubic_psnr,
            "steps_per_s": r.steps_per_s, "n_params": r.n_params, "fail_reason": r.fail_reason}


def study_table(study: optuna.Study) -> dict[str, Any]:
    """Counts per status, the best feasible trial (highest PSNR among completed feasible ones) and the
    Pareto set (feasible trials, PSNR maximised against peak memory minimised, by increasing peak)."""
    s = _summary(study)
    feasible = [r for r in s.records if r.status == "feasible" and r.psnr is not None]
    best = max(feasible, key=lambda r: (r.psnr, -(r.peak_gib or 0.0), -r.number), default=None)
    counts = dict(s.counts)
    # A re-suggested config that was not retrained (`duplicate_of`) repeats its twin's point: listed once.
    copies = {t.number for t in study.get_trials(deepcopy=False) if "duplicate_of" in t.user_attrs}
    return {"study": s.name, "budget_gib": s.budget_gib, "target_shape": dict(s.target_shape), "device": s.device,
            "counts": counts, "finished": sum(v for k, v in counts.items() if k != "running"),
            "best": _row(best) if best else None,
            "pareto": [_row(r) for r in s.pareto if r.number not in copies]}


def open_existing(url: str) -> optuna.storages.RDBStorage:
    """The storage at `url` for reading: a SQLite file that does not exist is an error, not a new file."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        from pathlib import Path

        if not Path(parsed.database).is_file():
            raise StorageError(f"storage {safe_url(url)}: no such SQLite file {parsed.database!r}")
    return open_storage(url, create_dirs=False)


def list_studies(url: str) -> list[dict[str, Any]]:
    storage = open_existing(url)
    rows = []
    with storage_errors(url):
        for name in sorted(optuna.get_all_study_names(storage)):
            study = optuna.load_study(study_name=name, storage=storage)
            t = study_table(study)
            best = t["best"]
            rows.append({"study": name, "trials": t["finished"], **t["counts"], "budget_gib": t["budget_gib"],
                         "best_trial": best["trial"] if best else None, "best_psnr": best["psnr"] if best else None,
                         "best_peak_gib": best["peak_gib"] if best else None})
    return rows


def best_of(url: str, name: str) -> dict[str, Any]:
    """The best feasible trial of study `name`, with its full model config and the study's target shape."""
    storage = open_existing(url)
    with storage_errors(url):
        names = optuna.get_all_study_names(storage)
        if name not in names:
            known = ", ".join(repr(n) for n in sorted(names)) or "none"
            raise ConfigError("STUDY", f"no study named {name!r} in {safe_url(url)} (known: {known})")
        study = optuna.load_study(study_name=name, storage=storage)
        t = study_table(study)
        out = {"study": name, "storage": safe_url(url), "budget_gib": t["budget_gib"],
               "target_shape": t["target_shape"], "best": t["best"]}
        if t["best"] is not None:
            trial = study.trials[t["best"]["trial"]]
            out["model_config"] = trial.user_attrs.get("model_config")
    return out
