"""CSV/JSON export: the Pareto set is Optuna's own non-dominated set, with the table's columns."""

from __future__ import annotations

import csv
import json

import optuna
from optuna.trial import TrialState

from scent_search.report import summarize, write_csv, write_json
from scent_search.report.pareto import columns


def optuna_pareto_numbers(study: optuna.Study) -> set[int]:
    """Optuna's best_trials of a 2-objective study (max PSNR, min peak) over the completed feasible trials."""
    mo = optuna.create_study(directions=["maximize", "minimize"])
    for t in study.get_trials(states=[TrialState.COMPLETE]):
        if all(v <= 0 for v in t.constraints.values()) and "psnr" in t.user_attrs:
            mo.add_trial(optuna.trial.create_trial(values=[t.user_attrs["psnr"], t.user_attrs["peak_gib"]],
                                                   user_attrs={"number": t.number}))
    return {t.user_attrs["number"] for t in mo.best_trials}


def test_csv_and_json_pareto_sets_equal_optunas(rich_study: optuna.Study, tmp_path) -> None:
    summary = summarize(rich_study)
    write_csv(summary, tmp_path / "t.csv")
    write_json(summary, tmp_path / "t.json")
    expected = optuna_pareto_numbers(rich_study)
    assert len(expected) >= 3  # the fixture has a real front

    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(rich_study.trials)
    assert {int(r["trial"]) for r in rows if r["pareto"] == "True"} == expected

    data = json.loads((tmp_path / "t.json").read_text())
    assert {r["trial"] for r in data["pareto"]} == expected
    assert {r["trial"] for r in data["trials"] if r["pareto"]} == expected
    assert len(data["trials"]) == len(rich_study.trials)


def test_exports_have_the_tables_columns(rich_study: optuna.Study, tmp_path) -> None:
    summary = summarize(rich_study)
    write_csv(summary, tmp_path / "t.csv")
    write_json(summary, tmp_path / "t.json")
    expected = ["trial", "status", "pareto", "hidden_dim", "mult", "num_decoder_layers", "share_scales", "sigma_ls",
                "peak_gib", "peak_source", "psnr", "psnr_mean", "psnr_std", "n_seeds", "last_reported_psnr",
                "pruned_at", "bicubic_psnr", "steps_per_s", "n_params", "train_seed", "repeat_of"]
    assert columns(summary.records) == expected
    with open(tmp_path / "t.csv", newline="") as f:
        assert next(csv.reader(f)) == expected
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["columns"] == expected
    assert all(list(r) == expected for r in data["trials"] + data["pareto"])
    # Missing values are null, never NaN (JSON has no NaN).
    assert "NaN" not in (tmp_path / "t.json").read_text()
    infeasible = [r for r in data["trials"] if r["status"] == "infeasible"]
    assert infeasible and all(r["psnr"] is None and r["peak_gib"] > data["budget_gib"] for r in infeasible)
    # A pruned trial's last report is in its own columns, never in the final PSNR's.
    pruned = [r for r in data["trials"] if r["status"] == "pruned"]
    assert pruned and all(r["psnr"] is None and r["last_reported_psnr"] is not None and r["pruned_at"] == 2
                          for r in pruned)
