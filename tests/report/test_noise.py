"""Repeats in every view: the front and `best` rank configs by their mean over seeds, the figures draw error
bars and repeats apart, and the terminal, the report and the dashboard say what is below the seed noise."""

from __future__ import annotations

import csv
import json

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from scent_search.cli import cli
from scent_search.report import render_report, summarize, write_csv, write_json
from scent_search.report.figures import history_figure, pareto_figure, record_note
from scent_search.report.progress import summary_lines
from tests.report.studies import P_DEFAULT, make_study, trial_record

A, B, C = (dict(P_DEFAULT, hidden_dim=h) for h in (128, 256, 512))


def _seeded(storage_url: str, repeats: bool = True) -> optuna.Study:
    """Three configs: A (1.0 GiB) 26.0, 26.2, 25.8 over seeds 0-2; B (1.5 GiB) 27.0, 26.0, 26.5; C (2.0 GiB) 26.8,
    one seed. On single trials B's 27.0 would be the best and dominate C; on means (26.0, 26.5, 26.8) it is C."""
    trials = [trial_record(A, TrialState.COMPLETE, psnr=26.0, peak_gib=1.0, train_seed=0),
              trial_record(B, TrialState.COMPLETE, psnr=27.0, peak_gib=1.5, train_seed=0),
              trial_record(C, TrialState.COMPLETE, psnr=26.8, peak_gib=2.0, train_seed=0)]
    if repeats:
        trials += [trial_record(A, TrialState.COMPLETE, psnr=26.2, peak_gib=1.0, train_seed=1, repeat_of=0),
                   trial_record(B, TrialState.COMPLETE, psnr=26.0, peak_gib=1.5, train_seed=1, repeat_of=1),
                   trial_record(A, TrialState.COMPLETE, psnr=25.8, peak_gib=1.0, train_seed=2, repeat_of=0),
                   trial_record(B, TrialState.COMPLETE, psnr=26.5, peak_gib=1.5, train_seed=2, repeat_of=1)]
    study = make_study(storage_url, "seeded", trials)
    study.set_user_attr("spec", {**study.user_attrs["spec"],
                                 "repeats": {"top_k": 2 if repeats else 0, "seeds": 2}})
    return study


SIGMA = ((0.2**2 + 0.2**2) + (0.5**2 + 0.5**2)) ** 0.5 / 2  # pooled: sum of squares 0.58 over 4 degrees of freedom


def test_the_front_and_best_use_the_means(storage_url: str) -> None:
    summary = summarize(_seeded(storage_url))
    assert [r.number for r in summary.pareto] == [0, 1, 2]  # C is on the front: B's mean 26.5 < 26.8
    assert not any(r.pareto for r in summary.records if r.repeat_of is not None)
    assert [(r.psnr_mean, r.n_seeds) for r in summary.pareto] == [(pytest.approx(26.0), 3), (pytest.approx(26.5), 3),
                                                                  (26.8, 1)]
    result = CliRunner().invoke(cli, ["best", "seeded", "--storage", storage_url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["best"]["trial"] == 2 and data["best"]["psnr_mean"] == 26.8 and data["best"]["n_seeds"] == 1
    assert data["best"]["psnr_std"] is None and data["best"]["within_noise_of_best"] is True
    assert data["noise"]["std"] == pytest.approx(SIGMA) and data["noise"]["dof"] == 4
    b = next(r for r in data["pareto"] if r["trial"] == 1)
    assert b["psnr"] == 27.0 and b["psnr_mean"] == pytest.approx(26.5) and b["psnr_std"] == pytest.approx(0.5)
    text = CliRunner().invoke(cli, ["best", "seeded", "--storage", storage_url]).output
    assert "trial 2  PSNR 26.80 dB over 1 seed(s)" in text and "noise (seed-to-seed std" in text


def test_the_summary_puts_the_spread_beside_the_noise(storage_url: str) -> None:
    lines = summary_lines(_seeded(storage_url), storage_url)
    assert (f"PSNR spread: best − worst = 0.80 dB over 3 trained configs; noise (seed-to-seed std, 2 configs × 3 "
            f"seeds) = {SIGMA:.2f} dB: the spread is {0.8 / SIGMA:.1f}× the noise (best and worst are within the "
            "noise of each other)") in lines
    assert any(line.startswith("Best feasible trial: #2  PSNR 26.80 dB (bicubic") for line in lines)
    rows = {int(line.split()[0]): line for line in lines if line.startswith("      ")}
    # within the noise of the best (C, 26.8 dB, one seed): B (-0.30) and A (-0.80 < 2 sigma sqrt(1/3 + 1))
    assert "best" in rows[2] and "-0.30 ≈" in rows[1] and "-0.80 ≈" in rows[0]
    assert "26.50 ± 0.50" in rows[1] and "7 trials" in lines[1] and "4 of them repeats" in lines[1]


def test_without_repeats_the_noise_is_unknown(storage_url: str) -> None:
    lines = summary_lines(_seeded(storage_url, repeats=False), storage_url)
    assert "PSNR spread: best − worst = 1.00 dB over 3 trained configs; noise unknown: [repeats] is off" in lines
    assert not any("≈" in line for line in lines)
    page = render_report(_seeded_again(storage_url))
    assert "no difference between these configs can be told from seed noise" in page


def _seeded_again(storage_url: str) -> optuna.Study:
    return optuna.load_study(study_name="seeded", storage=storage_url)


def test_figures_draw_error_bars_and_repeats_apart(storage_url: str) -> None:
    summary = summarize(_seeded(storage_url))
    traces = {t.name: t for t in pareto_figure(summary).data}
    front = traces["Pareto front (#trial)"]
    assert list(front.customdata) == [0, 1, 2] and list(front.y) == pytest.approx([26.0, 26.5, 26.8])
    assert front.error_y.visible and list(front.error_y.array) == pytest.approx([0.2, 0.5, 0.0])
    repeats = traces["repeat with another seed (its own PSNR)"]
    assert sorted(repeats.customdata) == [3, 4, 5, 6] and sorted(repeats.y) == [25.8, 26.0, 26.2, 26.5]
    assert "repeat of #0 with another seed" in repeats.hovertext[list(repeats.customdata).index(3)]
    history = {t.name: t for t in history_figure(summary).data}
    means = history["config: mean ± std over seeds"]
    assert list(means.x) == [0, 1] and list(means.error_y.array) == pytest.approx([0.2, 0.5])
    assert list(history["Pareto front (#trial)"].y) == [26.0, 27.0, 26.8]  # each trial at its own PSNR


def test_report_and_exports_say_what_is_below_the_noise(storage_url: str, tmp_path) -> None:
    study = _seeded(storage_url)
    page = render_report(study)
    assert f"Seed-to-seed noise σ = {SIGMA:.2f} dB (2 configs × 3 seeds)" in page
    assert "Below the noise: #0 → #1 (+0.50 dB, limit" in page and "#1 → #2 (+0.30 dB" in page
    assert "26.50 ± 0.50 (3)" in page  # the tables' mean ± std (n) column
    summary = summarize(study)
    write_csv(summary, tmp_path / "t.csv")
    write_json(summary, tmp_path / "t.json")
    with open(tmp_path / "t.csv", newline="") as f:
        rows = {int(r["trial"]): r for r in csv.DictReader(f)}
    assert (rows[0]["psnr_mean"], rows[0]["n_seeds"], rows[0]["train_seed"], rows[0]["repeat_of"]) == \
        ("26.0", "3", "0", "")
    assert (rows[3]["repeat_of"], rows[3]["train_seed"], rows[3]["psnr_mean"]) == ("0", "1", "")
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["noise"]["std"] == pytest.approx(SIGMA)
    assert [(c["trial"], c["trials"], c["train_seeds"]) for c in data["configs"]] == \
        [(0, [0, 3, 5], [0, 1, 2]), (1, [1, 4, 6], [0, 1, 2]), (2, [2], [0])]


def test_dashboard_notes_give_the_mean_and_what_a_repeat_repeats(storage_url: str) -> None:
    summary = summarize(_seeded(storage_url))
    notes = {r.number: record_note(r, summary.budget_gib, summary.eval_points) for r in summary.records}
    assert "- over 3 training seeds: **26.50 ± 0.50 dB**" in notes[1] and "- PSNR: 27.00 dB (train seed 0)" in notes[1]
    assert "- repeat of trial 1 with train seed 1:" in notes[4]
    assert "training seeds" not in notes[2]  # one seed: no mean to give
