"""CSV and JSON export of a study's trials, with the same columns as the report's table.

Both hold every trial, one row each, with `pareto` marking the trials standing for the non-dominated
configs (at their mean PSNR over seeds: `psnr_mean`, `psnr_std`, `n_seeds` on those rows; a repeat's row
has `repeat_of` and its `train_seed`). The JSON also lists the Pareto rows on their own, every trained
feasible config with its trials and seeds, and the study's seed noise. Missing values are empty cells (CSV)
or null (JSON).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from scent_search.report.pareto import StudySummary, columns, param_names, row


def table(summary: StudySummary) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of all trials, by trial number."""
    knobs = param_names(summary.records)
    return columns(summary.records), [row(r, knobs) for r in sorted(summary.records, key=lambda r: r.number)]


def to_json_data(summary: StudySummary) -> dict[str, Any]:
    names, rows = table(summary)
    pareto = sorted((row for row in rows if row["pareto"]), key=lambda row: (row["peak_gib"], -row["psnr_mean"]))
    return {
        "study": summary.name,
        "budget_gib": summary.budget_gib,
        "target_shape": dict(summary.target_shape),
        "device": summary.device,
        "counts": dict(summary.counts),
        "columns": names,
        "pareto": pareto,
        "trials": rows,
        "noise": summary.noise.to_dict(),
        "configs": [{"trial": c.number, "params": dict(c.params), "trials": list(c.trials),
                     "train_seeds": list(c.seeds), "psnrs": list(c.psnrs), "psnr_mean": c.mean, "psnr_std": c.std,
                     "n_seeds": c.n, "peak_gib": c.peak_gib} for c in summary.configs],
    }


def write_json(summary: StudySummary, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json_data(summary), indent=2, default=str) + "\n", encoding="utf-8")


def write_csv(summary: StudySummary, path: str | Path) -> None:
    names, rows = table(summary)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
