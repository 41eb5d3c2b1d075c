"""The feasibility map as the report and the dashboard show it: a heatmap panel per combination of the other
knobs, the numbers in the cells, the budget contour, measured cells marked."""

from __future__ import annotations

import itertools
import json

import optuna
from optuna.trial import TrialState

from scent_search import compat
from scent_search.records import FeasibilityMap, MapCell, TrialRecord, store_map
from scent_search.report import refresh_study_artifacts, render_report
from scent_search.report.feasibility import GRAPH_ID, map_figure, map_page

from tests.report.studies import BUDGET, P_DEFAULT, SPACE, _peak_gib, make_study, trial_record

KNOBS = tuple(SPACE)


def _map(budget: float = BUDGET) -> FeasibilityMap:
    cells = tuple(MapCell(dict(zip(KNOBS, values)), _peak_gib(dict(zip(KNOBS, values))))
                  for values in itertools.product(*(SPACE[k].choices for k in KNOBS)))
    return FeasibilityMap(KNOBS, cells, budget)


def test_the_heatmap_has_a_panel_per_combination_numbers_in_cells_and_the_budget_contour():
    fmap = _map()
    fig = map_figure(fmap)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 3 * 2 * 3  # layers x sharing x bandwidth lists; hidden_dim x mult in each
    assert all(len(h.z) == 2 and len(h.z[0]) == 3 for h in heatmaps)  # mult (2) up, hidden_dim (3) across
    peaks = sorted(c.peak_gib for c in fmap.cells)
    texts = sorted(float(t) for h in heatmaps for row in h.text for t in row)
    assert texts == [float(f"{p:.3g}") for p in peaks]  # every config's number, once
    bar = heatmaps[0].colorbar
    assert bar.title.text == "peak GiB" and f"budget {BUDGET:g}" in bar.ticktext
    contours = [t for t in fig.data if t.type == "scatter" and t.name == "budget contour"]
    mixed = [h for h in heatmaps if min(v for r in h.z for v in r) <= BUDGET < max(v for r in h.z for v in r)]
    assert contours and len(contours) == len(mixed)  # a contour wherever a panel has both sides of the budget
    assert fmap.summary() in fig.layout.title.text


def test_measured_cells_are_bold_and_say_so():
    fmap = _map()
    cell = fmap.cells[0]
    measured = fmap.with_measured([TrialRecord(number=7, params=dict(cell.params), peak_gib=0.5,
                                               peak_source="measured")])
    fig = map_figure(measured)
    bold = [t for h in fig.data if h.type == "heatmap" for row in h.text for t in row if t.startswith("<b>")]
    hovers = [t for h in fig.data if h.type == "heatmap" for row in h.hovertext for t in row if "measured" in t]
    assert bold == ["<b>0.5</b>"] and len(hovers) == 1 and "trial #7" in hovers[0]


def test_the_map_page_opens_offline(tmp_path):
    page = map_page(_map(), "a <study>")
    assert "plotly" in page and 'src="http' not in page and "a &lt;study&gt;" in page


def test_report_and_dashboard_show_the_stored_map_with_measured_cells(storage_url):
    study = make_study(storage_url, "m", [trial_record(P_DEFAULT, TrialState.COMPLETE, psnr=27.0, peak_gib=1.25,
                                                       peak_source="measured")])
    assert "has no feasibility map" in render_report(study)
    refresh_study_artifacts(study)
    assert GRAPH_ID not in compat.dashboard_figures_json(study)

    store_map(study, _map(budget=99.0))  # the report judges it at the study's budget, not the stored one
    study = optuna.load_study(study_name="m", storage=storage_url)
    page = render_report(study)
    assert 'id="feasibility-map"' in page and _map().summary() in page
    refresh_study_artifacts(study)
    figure = json.loads(compat.dashboard_figures_json(study)[GRAPH_ID])
    texts = [t for trace in figure["data"] if trace["type"] == "heatmap" for row in trace["text"] for t in row]
    assert "<b>1.25</b>" in texts
