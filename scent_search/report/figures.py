"""Plotly figures of a study: Pareto front with the budget, memory breakdown, importances, history.

Each function takes a `StudySummary` (or trials) and returns a `go.Figure`; an empty or degenerate study
gives a figure that says why it is empty instead of raising. Text from the study (knob names and
values) is HTML-escaped before it goes into hover labels, which plotly renders as HTML.
"""

from __future__ import annotations

import contextlib
import html
import math
import statistics
from typing import Callable, Iterator, Mapping, Sequence

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from scent_search.records import BREAKDOWN_KEYS, FAILED, FEASIBLE, INFEASIBLE, PRUNED, TrialRecord
from scent_search.report.pareto import StudySummary, pareto_records

TEMPLATE = "plotly_white"

# One colour per breakdown component (plotly's 10-colour cycle would repeat the first for "other").
COMPONENT_COLOURS = dict(zip(BREAKDOWN_KEYS, ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3",
                                          "#ff6692", "#b6e880", "#ff97ff", "#fecb52", "#8c8c8c")))

# Trace name, marker symbol, colour for each group of the Pareto plot. Every plotted trial is in one group.
_GROUPS = (
    ("Pareto front", "circle", "#d62728"),
    (FEASIBLE, "circle", "#1f77b4"),
    (INFEASIBLE, "x", "#7f7f7f"),
    (PRUNED, "diamond-open", "#ff7f0e"),
    (FAILED, "triangle-down-open", "#9467bd"),
)


def _group(r: TrialRecord) -> str:
    return "Pareto front" if r.pareto else r.status


def _fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}{unit}"


def hover_text(r: TrialRecord, floor: bool = False) -> str:
    """Hover label of a trial: its knobs and measurements. Study text is escaped (plotly renders HTML)."""
    e = html.escape
    lines = [f"<b>trial #{r.number}</b> ({r.status}{', Pareto' if r.pareto else ''})"]
    lines += [f"{e(str(k))} = {e(str(v))}" for k, v in r.params.items()]
    lines.append(f"peak: {_fmt(r.peak_gib, ' GiB', 3)} ({e(r.peak_source or 'unknown source')})")
    if r.psnr is None:
        lines.append("PSNR: – (not trained; drawn at the floor)" if floor else "PSNR: –")
    else:
        lines.append(f"PSNR: {r.psnr:.2f} dB" + (" (last reported)" if r.status == PRUNED else ""))
    if r.bicubic_psnr is not None:
        lines.append(f"bicubic PSNR: {r.bicubic_psnr:.2f} dB")
    if r.fail_reason:
        lines.append(f"fail reason: {e(r.fail_reason)}")
    return "<br>".join(lines)


def _empty(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(text=html.escape(message), showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 15})
    return fig


def _floor(records: Sequence[TrialRecord]) -> float:
    """Where trials without a PSNR are drawn: 1 dB below every known PSNR (model and bicubic)."""
    known = [x for r in records for x in (r.psnr, r.bicubic_psnr) if x is not None]
    return (min(known) if known else 0.0) - 1.0


def bicubic_level(records: Sequence[TrialRecord]) -> float | None:
    """The bicubic PSNR of the study's validation crops (the median over trials; they share the crops)."""
    values = [r.bicubic_psnr for r in records if r.bicubic_psnr is not None]
    return statistics.median(values) if values else None


def pareto_figure(summary: StudySummary) -> go.Figure:
    """PSNR against peak memory: one point per finished trial with a peak, the budget as a vertical line,
    the non-dominated trials connected by the attainment staircase."""
    records = [r for r in summary.records if r.plottable]
    floor = _floor(records)
    fig = go.Figure()
    for name, symbol, colour in _GROUPS:
        group = sorted((r for r in records if _group(r) == name), key=lambda r: (r.peak_gib, r.number))
        if not group:
            continue
        pareto = name == "Pareto front"
        fig.add_trace(go.Scatter(
            name=name,
            x=[r.peak_gib for r in group],
            y=[r.psnr if r.psnr is not None else floor for r in group],
            ids=[f"trial-{r.number}" for r in group],
            customdata=[r.number for r in group],
            hovertext=[hover_text(r, floor=True) for r in group],
            hoverinfo="text",
            mode="lines+markers" if pareto else "markers",
            line={"shape": "hv", "color": colour, "width": 2} if pareto else None,
            marker={"symbol": symbol, "color": colour, "size": 11 if pareto else 9,
                    "line": {"width": 1.5, "color": colour}},
        ))
    if summary.budget_gib is not None:
        fig.add_vline(x=summary.budget_gib, line={"color": "#d62728", "dash": "dash", "width": 2},
                      annotation_text=f"budget {summary.budget_gib:g} GiB", annotation_position="top left")
    bicubic = bicubic_level(records)
    if bicubic is not None:
        fig.add_hline(y=bicubic, line={"color": "#2ca02c", "dash": "dot", "width": 1.5},
                      annotation_text=f"bicubic {bicubic:.2f} dB", annotation_position="bottom right")
    fig.update_layout(template=TEMPLATE, title="PSNR against peak memory",
                      xaxis_title="peak memory of one training step (GiB)", yaxis_title="validation PSNR, x4 (dB)",
                      legend={"orientation": "h", "y": -0.18}, hovermode="closest", height=520,
                      margin={"t": 60, "l": 70, "r": 30})
    if not records:
        _empty(fig, "No finished trial with a peak memory yet.")
    elif not any(r.pareto for r in records):
        _empty(fig, "No feasible trial with a PSNR: no Pareto front.")
    return fig


def breakdown_figure(summary: StudySummary) -> go.Figure:
    """Per-component peak memory (GiB) of the Pareto trials, stacked, in increasing peak."""
    trials = [(r, r.breakdown_gib) for r in pareto_records(summary.records)]
    trials = [(r, b) for r, b in trials if b]
    labels = [f"#{r.number}" for r, _ in trials]
    fig = go.Figure()
    names = list(BREAKDOWN_KEYS) + sorted({k for _, b in trials for k in b} - set(BREAKDOWN_KEYS))
    for name in names:
        if not any(name in b for _, b in trials):
            continue
        fig.add_trace(go.Bar(name=html.escape(name), x=labels, y=[b.get(name, 0.0) for _, b in trials],
                             marker_color=COMPONENT_COLOURS.get(name),
                             hovertemplate="%{x}: %{y:.3f} GiB<extra>" + html.escape(name) + "</extra>"))
    if summary.budget_gib is not None and trials:
        fig.add_hline(y=summary.budget_gib, line={"color": "#d62728", "dash": "dash"},
                      annotation_text=f"budget {summary.budget_gib:g} GiB")
    fig.update_layout(template=TEMPLATE, barmode="stack", title="Peak memory by component (Pareto trials)",
                      xaxis_title="trial", yaxis_title="GiB at the peak", xaxis_type="category", height=480,
                      legend={"traceorder": "normal"})
    if not trials:
        _empty(fig, "No Pareto trial with a memory breakdown.")
    return fig


# ---- parameter importance -----------------------------------------------------------------------------

# Target name -> (sign, value of a record or None when it is no sample). PSNR only from trained trials
# (the final PSNR of feasible ones); peak memory from every trial that has one, trained or not. Optuna's
# default evaluator (PED-ANOVA) explains *low* target values, so a maximised target is negated.
IMPORTANCE_TARGETS: dict[str, tuple[float, Callable[[TrialRecord], float | None]]] = {
    "PSNR (dB)": (-1.0, lambda r: r.psnr if r.status == FEASIBLE else None),
    "peak memory (GiB)": (1.0, lambda r: r.peak_gib),
}


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def param_importances(trials: Sequence[FrozenTrial]) -> dict[str, dict[str, float] | str]:
    """Optuna's importances (its default evaluator) for each of IMPORTANCE_TARGETS, or a sentence saying
    why there is none.

    The samples of each target differ (infeasible trials have a peak but no PSNR), so each target is
    evaluated on an in-memory minimising study holding just its samples, with the (signed) target as
    the trial value. That is what `target=` would select, without PED-ANOVA's warning about `target`.
    """
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    out: dict[str, dict[str, float] | str] = {}
    for name, (sign, value_of) in IMPORTANCE_TARGETS.items():
        what = name.split(" (")[0]
        samples = [(t, v) for t in finished if (v := value_of(TrialRecord.from_trial(t))) is not None]
        if len(samples) < 2:
            out[name] = f"Not enough trials with a {what} value ({len(samples)}; needs 2)."
            continue
        space = optuna.search_space.intersection_search_space([t for t, _ in samples])
        varying = [k for k, d in space.items() if not d.single()
                   and len({repr(t.params[k]) for t, _ in samples}) > 1]
        if not varying:
            out[name] = f"No knob varies across the trials with a {what} value."
            continue
        if len({v for _, v in samples}) < 2:
            out[name] = f"Every trial has the same {what}: nothing to attribute."
            continue
        with _quiet_optuna():  # no "A new study created in memory" line per target in the CLI's output
            study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="minimize")
        study.add_trials([optuna.trial.create_trial(
            params={k: t.params[k] for k in space}, distributions=dict(space), value=sign * v)
            for t, v in samples])
        out[name] = optuna.importance.get_param_importances(study, params=varying)
    return out


def importance_figure(importances: Mapping[str, Mapping[str, float] | str]) -> go.Figure:
    names = list(importances)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[html.escape(n) for n in names])
    for col, name in enumerate(names, start=1):
        value = importances[name]
        if isinstance(value, str):
            fig.add_annotation(text=html.escape(value), showarrow=False, row=1, col=col, x=0.5, y=0.5,
                               xref="x domain" if col == 1 else f"x{col} domain",
                               yref="y domain" if col == 1 else f"y{col} domain")
            continue
        keys = sorted(value, key=value.get)  # largest at the top of a horizontal bar chart
        fig.add_trace(go.Bar(x=[value[k] for k in keys], y=[html.escape(k) for k in keys], orientation="h",
                             name=html.escape(name), showlegend=False,
                             hovertemplate="%{y}: %{x:.3f}<extra></extra>"), row=1, col=col)
    fig.update_layout(template=TEMPLATE, height=380,
                      title="Parameter importance (Optuna's default evaluator, normalised)")
    return fig


def history_figure(summary: StudySummary) -> go.Figure:
    """PSNR per trial number, and the best feasible PSNR so far."""
    records = sorted((r for r in summary.records if r.psnr is not None), key=lambda r: r.number)
    fig = go.Figure()
    for name, symbol, colour in _GROUPS:
        group = [r for r in records if _group(r) == name]
        if group:
            fig.add_trace(go.Scatter(name=name, x=[r.number for r in group], y=[r.psnr for r in group],
                                     mode="markers", marker={"symbol": symbol, "color": colour, "size": 8},
                                     hovertext=[hover_text(r) for r in group], hoverinfo="text"))
    best, xs, ys = -math.inf, [], []
    for r in records:
        if r.status == FEASIBLE:
            best = max(best, r.psnr)
        if best > -math.inf:
            xs.append(r.number)
            ys.append(best)
    if xs:
        fig.add_trace(go.Scatter(name="best feasible so far", x=xs, y=ys, mode="lines",
                                 line={"shape": "hv", "color": "#2ca02c"}, hoverinfo="skip"))
    bicubic = bicubic_level(summary.records)
    if bicubic is not None:
        fig.add_hline(y=bicubic, line={"color": "#2ca02c", "dash": "dot", "width": 1.5},
                      annotation_text=f"bicubic {bicubic:.2f} dB", annotation_position="bottom right")
    fig.update_layout(template=TEMPLATE, title="Optimisation history", xaxis_title="trial number",
                      yaxis_title="validation PSNR, x4 (dB)", height=420)
    if not records:
        _empty(fig, "No trial has reported a PSNR yet.")
    return fig


def dashboard_figures(summary: StudySummary) -> dict[str, go.Figure]:
    """The figures attached to a study for optuna-dashboard, by graph-object id."""
    return {"scent-pareto-budget": pareto_figure(summary), "scent-memory-breakdown": breakdown_figure(summary)}


def record_note(r: TrialRecord, budget_gib: float | None) -> str:
    """Markdown note of a trial for optuna-dashboard: peak, constraint and memory breakdown."""
    lines = [f"### Trial {r.number}: {r.status}{' (Pareto)' if r.pareto else ''}", ""]
    lines.append(f"- peak memory: **{_fmt(r.peak_gib, ' GiB', 3)}** ({r.peak_source or 'unknown source'})"
                 + (f", budget {budget_gib:g} GiB" if budget_gib is not None else ""))
    for key, value in r.constraints.items():
        lines.append(f"- constraint `{key}`: {value:+.3f} ({'feasible' if value <= 0 else 'violated'})")
    lines.append(f"- PSNR: {_fmt(r.psnr, ' dB')}, bicubic: {_fmt(r.bicubic_psnr, ' dB')}")
    if r.fail_reason:
        lines.append(f"- fail reason: `{r.fail_reason}`")
    breakdown = r.breakdown_gib
    if breakdown:
        total = sum(breakdown.values())
        lines += ["", "| component | GiB | share |", "|---|---:|---:|"]
        lines += [f"| {k} | {v:.3f} | {100 * v / total:.1f}% |" if total > 0 else f"| {k} | {v:.3f} | – |"
                  for k, v in breakdown.items()]
        lines.append(f"| **total** | **{total:.3f}** | |")
    else:
        lines += ["", "No memory breakdown recorded."]
    return "\n".join(lines) + "\n"


def as_html_div(fig: go.Figure, div_id: str) -> str:
    """A figure as a <div> + inline <script>; plotly.js itself is embedded once by the page."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})
