"""The feasibility map as a figure: the memory landscape of the whole space, against the budget.

One heatmap panel per combination of the knobs other than hidden_dim and mult (layers, scales, sharing,
and the searched levers), hidden_dim across and mult up, each cell coloured by its peak GiB with the
number written in it. Configs that fit are green (darker nearer the budget), those over it red; a black
line, the budget contour, runs between the cells that fit and those that do not. Measured cells (a GPU
trial replaced the prediction) have their number in bold.

- `map_figure(fmap)`: the plotly figure; `map_page(fmap, title)`: an offline HTML page (plotly.js embedded);
- `compact_map_figure(fmap)`: one heatmap, rows of knob combinations, for the dashboard's small box;
- `study_map(study, summary)`: the stored map of a study, at its budget, measured cells applied;
- `report_section(study, summary)`, `dashboard_figures(study, summary)`: what the report and the dashboard add.
"""

from __future__ import annotations

import html
import itertools
from typing import Any, Sequence

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from scent_search.records import FeasibilityMap, MapCell, knobs_label, stored_map
from scent_search.records.feasibility import MEASURED
from scent_search.report.figures import as_html_div
from scent_search.report.pareto import StudySummary

X_KNOB, Y_KNOB = "hidden_dim", "mult"
COLUMN_KNOBS = ("sigma_ls", "share_scales")  # panels across; the other knobs make the rows
GRAPH_ID = "scent-feasibility-map"
_FITS = ("#e5f5e0", "#238b45")  # light -> dark green up to the budget
_OVER = ("#fcbba1", "#a50f15")  # light -> dark red above it


def _axis_values(fmap: FeasibilityMap, knob: str) -> list[Any]:
    if knob not in fmap.knobs:
        return [None]
    seen = dict.fromkeys(c.params[knob] for c in fmap.cells)
    return sorted(seen, key=lambda v: (isinstance(v, str), v))


def _panel_keys(fmap: FeasibilityMap, knobs: Sequence[str]) -> list[tuple]:
    return list(dict.fromkeys(tuple(c.params[k] for k in knobs) for c in fmap.cells))


def _colorscale(fmap: FeasibilityMap, zmax: float) -> list[list]:
    frac = min(1.0, fmap.budget_gib / zmax)
    if frac >= 1.0:
        return [[0.0, _FITS[0]], [1.0, _FITS[1]]]
    return [[0.0, _FITS[0]], [frac, _FITS[1]], [frac, _OVER[0]], [1.0, _OVER[1]]]


def _contour(grid: list[list[MapCell | None]], fits: Any) -> tuple[list, list]:
    """Segments on the edges between a cell that fits and a neighbour that does not (None-separated)."""
    xs: list = []
    ys: list = []
    for j, row in enumerate(grid):
        for i, cell in enumerate(row):
            if cell is None:
                continue
            right = row[i + 1] if i + 1 < len(row) else None
            up = grid[j + 1][i] if j + 1 < len(grid) else None
            if right is not None and fits(cell) != fits(right):
                xs += [i + 0.5, i + 0.5, None]
                ys += [j - 0.5, j + 0.5, None]
            if up is not None and fits(cell) != fits(up):
                xs += [i - 0.5, i + 0.5, None]
                ys += [j + 0.5, j + 0.5, None]
    return xs, ys


def _label(value: Any) -> str:
    return "–" if value is None else str(value)


def map_figure(fmap: FeasibilityMap, title: str | None = None) -> go.Figure:
    """The heatmap of `fmap` (see the module docstring)."""
    if not fmap.cells:
        fig = go.Figure()
        fig.add_annotation(text="The space has no config.", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        return fig
    xs, ys = _axis_values(fmap, X_KNOB), _axis_values(fmap, Y_KNOB)
    col_knobs = [k for k in COLUMN_KNOBS if k in fmap.knobs]
    row_knobs = [k for k in fmap.knobs if k not in (X_KNOB, Y_KNOB, *col_knobs)]
    cols, rows = _panel_keys(fmap, col_knobs), _panel_keys(fmap, row_knobs)
    by_key = {fmap.key(c.params): c for c in fmap.cells}
    zmax = max(max(c.peak_gib for c in fmap.cells), fmap.budget_gib) * 1.0001
    scale = _colorscale(fmap, zmax)

    def title_of(r: tuple, c: tuple) -> str:
        lines = [knobs_label(dict(zip(col_knobs, c))), knobs_label(dict(zip(row_knobs, r)))]
        return "<br>".join(html.escape(line) for line in lines if line) or "all configs"

    height = 140 + 200 * len(rows)  # px: a panel row, its tick labels and the next row's two-line title
    fig = make_subplots(rows=len(rows), cols=len(cols), subplot_titles=[title_of(r, c) for r in rows for c in cols],
                        horizontal_spacing=0.04, vertical_spacing=min(80 / height, 0.9 / max(1, len(rows) - 1)))
    for (ri, r), (ci, c) in itertools.product(enumerate(rows), enumerate(cols)):
        fixed = {**dict(zip(row_knobs, r)), **dict(zip(col_knobs, c))}
        grid: list[list[MapCell | None]] = []
        for y in ys:
            line = []
            for x in xs:
                params = {**fixed, **({X_KNOB: x} if X_KNOB in fmap.knobs else {}),
                          **({Y_KNOB: y} if Y_KNOB in fmap.knobs else {})}
                line.append(by_key.get(fmap.key(params)))
            grid.append(line)
        z = [[None if cell is None else cell.peak_gib for cell in line] for line in grid]
        text = [["" if cell is None else (f"<b>{cell.peak_gib:.3g}</b>" if cell.source == MEASURED
                                          else f"{cell.peak_gib:.3g}") for cell in line] for line in grid]
        hover = [["" if cell is None else html.escape(knobs_label(cell.params)) + f"<br>peak {cell.peak_gib:.3f} GiB"
                  f" ({cell.source}{f', trial #{cell.trial}' if cell.trial is not None else ''})<br>"
                  + ("fits" if fmap.fits(cell) else "exceeds") + f" {fmap.budget_gib:g} GiB" for cell in line]
                 for line in grid]
        first = ri == 0 and ci == 0
        fig.add_trace(go.Heatmap(
            z=z, x=list(range(len(xs))), y=list(range(len(ys))), text=text, texttemplate="%{text}",
            hovertext=hover, hoverinfo="text", zmin=0, zmax=zmax, colorscale=scale, showscale=first,
            xgap=1, ygap=1, name="peak GiB",
            colorbar=dict(title="peak GiB", tickvals=[0, fmap.budget_gib, zmax],
                          ticktext=["0", f"budget {fmap.budget_gib:g}", f"{zmax:.3g}"]) if first else None),
            row=ri + 1, col=ci + 1)
        cx, cy = _contour(grid, fmap.fits)
        if cx:
            fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", line=dict(color="black", width=3), hoverinfo="skip",
                                     name="budget contour", showlegend=False), row=ri + 1, col=ci + 1)
        fig.update_xaxes(tickvals=list(range(len(xs))), ticktext=[_label(x) for x in xs], row=ri + 1, col=ci + 1,
                         title_text=X_KNOB if ri == len(rows) - 1 else None)
        fig.update_yaxes(tickvals=list(range(len(ys))), ticktext=[_label(y) for y in ys], row=ri + 1, col=ci + 1,
                         title_text=Y_KNOB if ci == 0 else None)
    fig.update_annotations(font_size=11)  # the panel titles (two short lines: columns' knobs, rows' knobs)
    fig.update_layout(
        title=title or f"Feasibility map: {fmap.summary()} (black line: the budget contour; bold: measured)",
        template="plotly_white", height=height, width=max(520, 80 + 230 * len(cols)),
        margin=dict(t=120))
    return fig


def compact_map_figure(fmap: FeasibilityMap) -> go.Figure:
    """The map as one heatmap for optuna-dashboard's small fixed-size box: hidden_dim × mult across, one row
    per combination of the other knobs, the same colours, the budget contour and the numbers (small)."""
    if not fmap.cells:
        return map_figure(fmap)
    across = [k for k in (X_KNOB, Y_KNOB) if k in fmap.knobs]
    down = [k for k in fmap.knobs if k not in across]
    cols, rows = _panel_keys(fmap, across), _panel_keys(fmap, down)
    cols.sort(key=lambda c: tuple((isinstance(v, str), v) for v in c))
    by_key = {fmap.key(c.params): c for c in fmap.cells}
    grid = [[by_key.get(fmap.key({**dict(zip(down, r)), **dict(zip(across, c))})) for c in cols] for r in rows]
    zmax = max(max(c.peak_gib for c in fmap.cells), fmap.budget_gib) * 1.0001
    hover = [["" if cell is None else html.escape(knobs_label(cell.params)) + f"<br>peak {cell.peak_gib:.3f} GiB"
              f" ({cell.source})<br>" + ("fits" if fmap.fits(cell) else "exceeds") + f" {fmap.budget_gib:g} GiB"
              for cell in line] for line in grid]
    fig = go.Figure(go.Heatmap(
        z=[[None if cell is None else cell.peak_gib for cell in line] for line in grid],
        x=list(range(len(cols))), y=list(range(len(rows))), zmin=0, zmax=zmax, colorscale=_colorscale(fmap, zmax),
        text=[["" if cell is None else (f"<b>{cell.peak_gib:.3g}</b>" if cell.source == MEASURED
                                        else f"{cell.peak_gib:.3g}") for cell in line] for line in grid],
        texttemplate="%{text}", textfont=dict(size=8), hovertext=hover, hoverinfo="text", xgap=1, ygap=1,
        colorbar=dict(title="GiB", thickness=10, tickvals=[0, fmap.budget_gib], ticktext=["0", "budget"])))
    cx, cy = _contour(grid, fmap.fits)
    if cx:
        fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", line=dict(color="black", width=2), hoverinfo="skip",
                                 showlegend=False))
    fig.update_xaxes(tickvals=list(range(len(cols))), tickangle=-90, tickfont=dict(size=9),
                     ticktext=[html.escape(knobs_label(dict(zip(across, c)))) for c in cols])
    fig.update_yaxes(tickvals=list(range(len(rows))), tickfont=dict(size=8), automargin=True,
                     ticktext=[html.escape(knobs_label(dict(zip(down, r)))) for r in rows])
    fig.update_layout(template="plotly_white", height=450, margin=dict(t=50, l=10, r=10, b=10),
                      title=dict(text=f"Feasibility map: {fmap.summary()}<br><sup>black line: the budget contour; "
                                      "bold: measured; hover a cell for its config</sup>",
                                 font=dict(size=12)))
    return fig


def map_page(fmap: FeasibilityMap, title: str) -> str:
    """A self-contained HTML page of the map (plotly.js embedded: it opens offline)."""
    fig = map_figure(fmap, title=f"{html.escape(title)}: {fmap.summary()}<br><sup>black line: the budget contour; "
                                 "bold: measured on the GPU, others predicted</sup>")
    return fig.to_html(full_html=True, include_plotlyjs=True, config={"displaylogo": False})


def study_map(study: optuna.Study, summary: StudySummary) -> FeasibilityMap | None:
    """The map the study's run stored, judged at the study's budget, with the peaks its trials measured."""
    fmap = stored_map(study)
    if fmap is None:
        return None
    if summary.budget_gib is not None:
        fmap = fmap.with_budget(summary.budget_gib)
    return fmap.with_measured(summary.records)


def report_section(study: optuna.Study, summary: StudySummary) -> str:
    """The report's section: the heatmap, or a line saying why there is none."""
    fmap = study_map(study, summary)
    if fmap is None:
        body = ('<p class="notice">This study has no feasibility map (it was run before maps, or by another '
                "tool): <code>scent-search map STUDY.toml</code> draws one.</p>")
    else:
        body = f"<p>{html.escape(fmap.summary())}.</p>" + as_html_div(map_figure(fmap), "feasibility-map")
    return f"<section><h2>Feasibility map</h2>{body}</section>"


def dashboard_figures(study: optuna.Study, summary: StudySummary) -> dict[str, go.Figure]:
    """The map as an optuna-dashboard custom figure ({} without a stored map)."""
    fmap = study_map(study, summary)
    return {} if fmap is None else {GRAPH_ID: compact_map_figure(fmap)}


__all__ = ["GRAPH_ID", "compact_map_figure", "dashboard_figures", "map_figure", "map_page", "report_section", "study_map"]
