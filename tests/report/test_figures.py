"""What the figures and notes say: breakdowns that add up to the constraint's figure, trial numbers on the
front, pruned trials apart from final PSNRs, repeated configs distinct, and where the peaks come from."""

from __future__ import annotations

import re

import optuna
import pytest
from optuna.trial import TrialState

from scent_search.records import GIB
from scent_search.report import render_report, summarize
from scent_search.report.figures import (DASHBOARD_HEIGHT, breakdown_figure, dashboard_figures, history_figure,
                                         pareto_figure, record_note)
from tests.report.studies import BUDGET, P_DEFAULT, make_study, trial_record


def _bar_totals(fig) -> dict[str, float]:
    """x label -> the height of its stacked bar (GiB)."""
    totals: dict[str, float] = {}
    for trace in fig.data:
        if trace.type == "bar":
            for x, y in zip(trace.x, trace.y):
                totals[x] = totals.get(x, 0.0) + y
    return totals


def test_report_breakdown_bars_sum_to_each_trials_constraint_figure(rich_study: optuna.Study) -> None:
    summary = summarize(rich_study)
    fig = breakdown_figure(summary)
    totals = _bar_totals(fig)
    assert set(totals) == {f"#{r.number}" for r in summary.pareto} and len(totals) >= 3
    for r in summary.pareto:
        assert totals[f"#{r.number}"] == pytest.approx(r.peak_gib, abs=1e-9)
    names = [t.name for t in fig.data]
    assert names[-2:] == ["calibration margin", "reserved allowance"]  # what the components do not cover
    assert {t.marker.pattern.shape for t in fig.data if t.name in names[-2:]} == {"/"}


def test_every_trials_rows_and_dashboard_note_add_up_to_its_peak(rich_study: optuna.Study) -> None:
    summary = summarize(rich_study)
    assert all(r.peak_gib is not None for r in summary.records)
    for r in summary.records:
        assert sum(row.bytes for row in r.peak_rows) == r.constraint_bytes == round(r.peak_gib * GIB)
        note = record_note(r, summary.budget_gib, summary.eval_points)
        total = re.search(r"\| \*\*peak \(the constraint's figure\)\*\* \| \*\*([0-9.]+)\*\* \|", note)
        assert total and float(total.group(1)) == pytest.approx(r.peak_gib, abs=5e-4)
        parts = [float(m) for m in re.findall(r"^\| [^|*]+ \| ([0-9.]+) \|", note, flags=re.M)]
        assert sum(parts) == pytest.approx(r.peak_gib, abs=5e-4 * len(parts))
        assert "| reserved allowance | 0.250 |" in note and "default margin" in note


def _mixed_study(storage_url: str) -> optuna.Study:
    """Trials of every kind the figures tell apart: trained (one measured on a GPU), a repeat, pruned,
    infeasible (not trained) and failed."""
    p = [dict(P_DEFAULT, hidden_dim=h) for h in (128, 256, 512)]
    measured = {"peak_source": "measured", "peak_reserved_bytes": int(1.2 * GIB), "calibration_margin": None,
                "reserved_allowance_bytes": None, "calibration_pairs": None}
    trials = [
        trial_record(p[0], TrialState.COMPLETE, psnr=26.0, peak_gib=1.0),
        trial_record(p[1], TrialState.COMPLETE, psnr=27.0, peak_gib=1.2, **measured),
        trial_record(p[0], TrialState.COMPLETE, psnr=26.0, peak_gib=1.0, duplicate_of=0),
        trial_record(p[1], TrialState.PRUNED, psnr=25.5, peak_gib=1.5),
        trial_record(p[2], TrialState.PRUNED, peak_gib=BUDGET + 1),  # infeasible
        trial_record(p[2], TrialState.FAIL, peak_gib=2.0, fail_reason="oom"),
    ]
    return make_study(storage_url, "mixed", trials)


def test_pareto_points_carry_trial_numbers_and_each_kind_its_own_trace(storage_url: str) -> None:
    summary = summarize(_mixed_study(storage_url))
    fig = pareto_figure(summary)
    traces = {t.name: t for t in fig.data}
    front = traces["Pareto front (#trial)"]
    assert list(front.text) == ["#0", "#1"] and "text" in front.mode
    repeat = traces["same config, results copied (not retrained)"]
    assert list(repeat.customdata) == [2] and repeat.marker.symbol != front.marker.symbol
    assert "same config as #0" in repeat.hovertext[0]
    pruned = traces["pruned (last reported PSNR)"]
    assert list(pruned.y) == [25.5]
    assert "pruned at eval point 2 of 3, last reported PSNR 25.50 dB" in pruned.hovertext[0]
    floor = traces["infeasible, not trained (at the floor)"].y[0]
    assert floor < min(25.5, 24.0) and traces["failed (at the floor)"].y[0] == floor
    # the history plots measured PSNRs only: nothing for the infeasible or the failed trial
    plotted = [x for t in history_figure(summary).data if t.mode == "markers" for x in t.x]
    assert sorted(plotted) == [0, 1, 2, 3]


def test_the_peaks_provenance_is_in_the_title_and_the_legend(storage_url: str, rich_study: optuna.Study) -> None:
    mixed = pareto_figure(summarize(_mixed_study(storage_url)))
    assert "1 measured, 5 predicted" in mixed.layout.title.text and "1 measured, 5 predicted" in \
        mixed.layout.legend.title.text
    predicted = pareto_figure(summarize(rich_study))
    assert "peaks predicted, not measured" in predicted.layout.title.text
    assert "predicted, not measured" in predicted.layout.legend.title.text
    page = render_report(rich_study)
    assert "Peak memory is predicted, not measured, for every trial" in page


def test_dashboard_figures_fit_its_boxes_with_the_legend_inside() -> None:
    """optuna-dashboard 0.21 draws a custom figure in a 450 px box and clips what is taller."""
    empty = summarize(optuna.create_study(direction="maximize"))
    for fig in dashboard_figures(empty).values():
        assert fig.layout.height <= DASHBOARD_HEIGHT == 450


def test_a_measured_trials_bar_adds_the_allocator_reserve(storage_url: str) -> None:
    summary = summarize(_mixed_study(storage_url))
    fig = breakdown_figure(summary)
    reserve = next(t for t in fig.data if t.name == "allocator reserve")
    assert dict(zip(reserve.x, reserve.y))["#1"] > 0 and dict(zip(reserve.x, reserve.y))["#0"] == 0
    totals = _bar_totals(fig)
    assert totals == pytest.approx({"#0": 1.0, "#1": 1.2}, abs=1e-6)
