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

from scent_search.records import (BREAKDOWN_KEYS, CALIBRATED, FAILED, FEASIBLE, GIB, INFEASIBLE, MEASURED,
                                  OVERHEAD_ROWS, PREDICTED, PRUNED, TrialRecord)
from scent_search.records.peak import ALLOWANCE_ROW, MARGIN_ROW, RESERVE_ROW, RESIDUAL_ROW
from scent_search.report.pareto import StudySummary, pareto_records

TEMPLATE = "plotly_white"
DASHBOARD_HEIGHT = 450  # px: optuna-dashboard 0.21 draws a custom figure in a box this tall, clipping the rest

# One colour per breakdown component (plotly's 10-colour cycle would repeat the first for "other"); greys,
# hatched, for what the components do not cover.
COMPONENT_COLOURS = dict(zip(BREAKDOWN_KEYS, ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3",
                                          "#ff6692", "#b6e880", "#ff97ff", "#fecb52", "#8c8c8c")))
OVERHEAD_COLOURS = {MARGIN_ROW: "#c9c9c9", ALLOWANCE_ROW: "#e6e6e6", RESERVE_ROW: "#d6d6d6", RESIDUAL_ROW: "#f2f2f2"}

# The groups of the Pareto plot: id, legend name, marker symbol, colour. Every plotted trial is in one group.
# A config is one point, at its mean PSNR over seeds (± std bars where it has several); its repeats with other
# seeds are dashes at their own PSNR, and a copy of a trained twin a ring around it.
PARETO, COPY, REPEAT = "pareto", "copy", "repeat"
_GROUPS = (
    (PARETO, "Pareto front (#trial)", "circle", "#d62728"),
    (FEASIBLE, "feasible, trained", "circle", "#1f77b4"),
    (REPEAT, "repeat with another seed (its own PSNR)", "line-ew-open", "#8c564b"),
    (COPY, "same config, results copied (not retrained)", "circle-open", "#17becf"),
    (PRUNED, "pruned (last reported PSNR)", "diamond-open", "#ff7f0e"),
    (INFEASIBLE, "infeasible, not trained (at the floor)", "x", "#7f7f7f"),
    (FAILED, "failed (at the floor)", "triangle-down-open", "#9467bd"),
)

# How a figure names where its peaks come from (records.provenance).
PROVENANCE_WORDS = {MEASURED: "measured", CALIBRATED: "predicted with a calibrated margin, not measured",
                    PREDICTED: "predicted, not measured"}


def _group(r: TrialRecord) -> str:
    if r.pareto:
        return PARETO
    if r.status == FEASIBLE and r.duplicate_of is not None:
        return COPY
    if r.status == FEASIBLE and r.repeat_of is not None:
        return REPEAT
    return r.status


def _fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}{unit}"


def provenance_label(counts: Mapping[str, int]) -> str:
    """"predicted, not measured" when every peak comes from one place, else "4 measured, 8 predicted"."""
    if not counts:
        return "none yet"
    if len(counts) == 1:
        return PROVENANCE_WORDS.get(next(iter(counts)), next(iter(counts)))
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def pruned_text(r: TrialRecord, eval_points: int | None = None) -> str:
    """"pruned at eval point 2 of 3, last reported PSNR 24.10 dB" (a pruned trial's report is no final PSNR)."""
    of = f" of {eval_points}" if eval_points else ""
    where = f"pruned at eval point {r.pruned_at}{of}" if r.pruned_at is not None else "pruned before any eval point"
    return where + (f", last reported PSNR {r.last_reported_psnr:.2f} dB" if r.last_reported_psnr is not None else "")


def hover_text(r: TrialRecord, eval_points: int | None = None) -> str:
    """Hover label of a trial: its knobs and measurements. Study text is escaped (plotly renders HTML)."""
    e = html.escape
    lines = [f"<b>trial #{r.number}</b> ({r.status}{', Pareto' if r.pareto else ''})"]
    lines += [f"{e(str(k))} = {e(str(v))}" for k, v in r.params.items()]
    lines.append(f"peak: {_fmt(r.peak_gib, ' GiB', 3)} "
                 f"({e(PROVENANCE_WORDS.get(r.provenance or '', r.peak_source or 'unknown source'))})")
    if r.status == PRUNED:
        lines.append(e(pruned_text(r, eval_points)))
    elif r.psnr is not None:
        lines.append(f"PSNR: {r.psnr:.2f} dB" + (f" (train seed {r.train_seed})" if r.train_seed is not None else ""))
    else:
        lines.append("PSNR: – (not trained; drawn at the floor)")
    if (r.n_seeds or 0) > 1:
        lines.append(f"<b>over {r.n_seeds} seeds: {r.psnr_mean:.2f} ± {r.psnr_std:.2f} dB</b> (mean ± std; the point)")
    if r.bicubic_psnr is not None:
        lines.append(f"bicubic PSNR: {r.bicubic_psnr:.2f} dB")
    if r.duplicate_of is not None:
        lines.append(f"same config as #{r.duplicate_of}: results copied, not retrained")
    if r.repeat_of is not None:
        lines.append(f"repeat of #{r.repeat_of} with another seed: part of its mean, not a point of its own")
    if r.fail_reason:
        lines.append(f"fail reason: {e(r.fail_reason)}")
    return "<br>".join(lines)


def _empty(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(text=html.escape(message), showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 15})
    return fig


def _own_psnr(r: TrialRecord) -> float | None:
    """The trial's own PSNR: the final one, else a pruned trial's last report."""
    return r.psnr if r.psnr is not None else r.last_reported_psnr


def _shown_psnr(r: TrialRecord) -> float | None:
    """Where the Pareto plot draws a trial: a config's standing trial at its mean over seeds, else its own."""
    return r.psnr_mean if r.psnr_mean is not None else _own_psnr(r)


def _error_bars(group: Sequence[TrialRecord]) -> dict | None:
    """± std over seeds of the configs that have several; None when none of the group has."""
    if not any(r.psnr_std is not None for r in group):
        return None
    return {"type": "data", "array": [r.psnr_std or 0.0 for r in group], "visible": True, "thickness": 1.5,
            "width": 5}


def _floor(records: Sequence[TrialRecord]) -> float:
    """Where trials without a PSNR are drawn: 1 dB below every known PSNR (model and bicubic)."""
    known = [x for r in records for x in (_shown_psnr(r), r.bicubic_psnr) if x is not None]
    return (min(known) if known else 0.0) - 1.0


def bicubic_level(records: Sequence[TrialRecord]) -> float | None:
    """The bicubic PSNR of the study's validation crops (the median over trials; they share the crops)."""
    values = [r.bicubic_psnr for r in records if r.bicubic_psnr is not None]
    return statistics.median(values) if values else None


def _legend_below(title: str) -> dict:
    """A horizontal legend under the x axis (plotly grows the bottom margin to fit it)."""
    return {"orientation": "h", "yanchor": "top", "y": -0.16, "x": 0, "xanchor": "left",
            "title": {"text": html.escape(title), "side": "top"}, "font": {"size": 11}}


def pareto_figure(summary: StudySummary, height: int = 560) -> go.Figure:
    """PSNR against peak memory: one point per finished trial with a peak, the budget as a vertical line,
    the non-dominated trials connected by the attainment staircase and labelled with their numbers. The
    title and the legend say where the peaks come from (measured, predicted, calibrated)."""
    records = [r for r in summary.records if r.plottable]
    floor = _floor(records)
    seeds = " (mean ± std over seeds)" if any(r.psnr_std is not None for r in records) else ""
    provenance = provenance_label(summary.provenances)
    fig = go.Figure()
    for group_id, name, symbol, colour in _GROUPS:
        group = sorted((r for r in records if _group(r) == group_id), key=lambda r: (r.peak_gib, r.number))
        if not group:
            continue
        pareto = group_id == PARETO
        ys = [_shown_psnr(r) for r in group]
        fig.add_trace(go.Scatter(
            name=name,
            x=[r.peak_gib for r in group],
            y=[floor if y is None else y for y in ys],
            ids=[f"trial-{r.number}" for r in group],
            customdata=[r.number for r in group],
            hovertext=[hover_text(r, summary.eval_points) for r in group],
            hoverinfo="text",
            mode="lines+markers+text" if pareto else "markers",
            text=[f"#{r.number}" for r in group] if pareto else None,
            # alternate sides, so that the labels of neighbouring front points do not overlap
            textposition=["top left" if i % 2 == 0 else "top right" for i in range(len(group))],
            textfont={"color": colour, "size": 11},
            line={"shape": "hv", "color": colour, "width": 2} if pareto else None,
            marker={"symbol": symbol, "color": colour,
                    "size": 15 if group_id in (COPY, REPEAT) else 11 if pareto else 9,
                    "line": {"width": 1.5, "color": colour}},
            error_y=_error_bars(group),
        ))
    if summary.budget_gib is not None:
        fig.add_vline(x=summary.budget_gib, line={"color": "#d62728", "dash": "dash", "width": 2},
                      annotation_text=f"budget {summary.budget_gib:g} GiB", annotation_position="top left")
    bicubic = bicubic_level(records)
    if bicubic is not None:
        fig.add_hline(y=bicubic, line={"color": "#2ca02c", "dash": "dot", "width": 1.5},
                      annotation_text=f"bicubic {bicubic:.2f} dB", annotation_position="bottom right")
    fig.update_layout(template=TEMPLATE,
                      title={"text": f"PSNR against peak memory<br><sup>peaks {html.escape(provenance)}</sup>"},
                      xaxis_title="peak memory of one training step (GiB, the constraint's figure)",
                      yaxis_title=f"validation PSNR, x4 (dB){seeds}", legend=_legend_below(f"peaks {provenance}:"),
                      hovermode="closest", height=height, margin={"t": 70, "l": 60, "r": 20, "b": 40})
    if not records:
        _empty(fig, "No finished trial with a peak memory yet.")
    elif not any(r.pareto for r in records):
        _empty(fig, "No feasible trial with a PSNR: no Pareto front.")
    return fig


def breakdown_figure(summary: StudySummary, height: int = 500) -> go.Figure:
    """The peak of each Pareto trial (increasing), stacked by `records.peak_rows`: the components, then the
    margin, allowance or reserve they do not cover. Each bar sums to the trial's constraint figure."""
    trials = [(r, {row.name: row for row in r.peak_rows}) for r in pareto_records(summary.records)]
    trials = [(r, rows) for r, rows in trials if rows]
    labels = [f"#{r.number}" for r, _ in trials]
    present = {name for _, rows in trials for name in rows}
    names = [c for c in BREAKDOWN_KEYS if c in present] + \
        sorted(present - set(BREAKDOWN_KEYS) - set(OVERHEAD_ROWS)) + [o for o in OVERHEAD_ROWS if o in present]
    fig = go.Figure()
    for name in names:
        overhead = name in OVERHEAD_ROWS
        cells = [rows.get(name) for _, rows in trials]
        fig.add_trace(go.Bar(
            name=html.escape(name), x=labels, y=[c.gib if c else 0.0 for c in cells],
            customdata=[html.escape(c.note) if c and c.note else "" for c in cells],
            marker={"color": OVERHEAD_COLOURS.get(name) if overhead else COMPONENT_COLOURS.get(name),
                    "pattern": {"shape": "/" if overhead else ""}},
            hovertemplate="%{x} " + html.escape(name) + ": %{y:.3f} GiB<br>%{customdata}<extra></extra>"))
    for (r, _), label in zip(trials, labels):
        fig.add_annotation(x=label, y=r.peak_gib, text=f"{r.peak_gib:.3f} GiB", showarrow=False, yshift=9,
                           font={"size": 11}, bgcolor="rgba(255,255,255,0.8)")
    if summary.budget_gib is not None and trials:
        fig.add_hline(y=summary.budget_gib, line={"color": "#d62728", "dash": "dash"},
                      annotation_text=f"budget {summary.budget_gib:g} GiB")
    provenance = provenance_label({r.provenance: 1 for r, _ in trials if r.provenance})
    fig.update_layout(template=TEMPLATE, barmode="stack", height=height,
                      title={"text": f"Peak memory by part (Pareto trials)<br><sup>each bar is the constraint's "
                                     f"figure, {html.escape(provenance)}</sup>"},
                      xaxis_title="trial", yaxis_title="GiB at the peak", xaxis_type="category",
                      legend={"traceorder": "normal", "font": {"size": 10}}, margin={"t": 70, "r": 20})
    if not trials:
        _empty(fig, "No Pareto trial with a memory breakdown.")
    return fig


# ---- parameter importance -----------------------------------------------------------------------------

# Target name -> (sign, value of a record or None when it is no sample). PSNR only from trained trials
# (the final PSNR of feasible ones; a repeat with another seed is no new config); peak memory from every
# trial that has one, trained or not. Optuna's default evaluator (PED-ANOVA) explains *low* target values,
# so a maximised target is negated.
IMPORTANCE_TARGETS: dict[str, tuple[float, Callable[[TrialRecord], float | None]]] = {
    "PSNR ×4 (dB)": (-1.0, lambda r: r.psnr if r.status == FEASIBLE and r.repeat_of is None else None),
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
    """PSNR per trial number, each trial at its own PSNR (a pruned trial at its last report, as its own trace),
    a config's mean ± std over seeds beside its original where it has several, and the best feasible PSNR
    so far of the exploration (repeats come after it). Trials that were not trained have no point."""
    records = sorted((r for r in summary.records if _own_psnr(r) is not None), key=lambda r: r.number)
    fig = go.Figure()
    for group_id, name, symbol, colour in _GROUPS:
        group = [r for r in records if _group(r) == group_id]
        if group:
            fig.add_trace(go.Scatter(name=name, x=[r.number for r in group], y=[_own_psnr(r) for r in group],
                                     mode="markers", marker={"symbol": symbol, "color": colour, "size": 8},
                                     hovertext=[hover_text(r, summary.eval_points) for r in group],
                                     hoverinfo="text"))
    seeded = [r for r in records if r.psnr_std is not None]
    if seeded:
        fig.add_trace(go.Scatter(name="config: mean ± std over seeds", x=[r.number for r in seeded],
                                 y=[r.psnr_mean for r in seeded], mode="markers", error_y=_error_bars(seeded),
                                 marker={"symbol": "line-ew-open", "color": "#000000", "size": 14},
                                 hovertext=[hover_text(r, summary.eval_points) for r in seeded], hoverinfo="text"))
    best, xs, ys = -math.inf, [], []
    for r in records:
        if r.status == FEASIBLE and r.psnr is not None and r.repeat_of is None:
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
    """The figures attached to a study for optuna-dashboard, by graph-object id, sized to its boxes."""
    return {"scent-pareto-budget": pareto_figure(summary, height=DASHBOARD_HEIGHT),
            "scent-memory-breakdown": breakdown_figure(summary, height=DASHBOARD_HEIGHT)}


def record_note(r: TrialRecord, budget_gib: float | None, eval_points: int | None = None) -> str:
    """Markdown note of a trial for optuna-dashboard: outcome, peak and constraint, and the peak itemised
    (`records.peak_rows`), its rows summing to the constraint's figure."""
    lines = [f"### Trial {r.number}: {r.status}{' (Pareto)' if r.pareto else ''}", ""]
    where = PROVENANCE_WORDS.get(r.provenance or "", r.peak_source or "unknown source")
    lines.append(f"- peak memory: **{_fmt(r.peak_gib, ' GiB', 3)}** ({where})"
                 + (f", budget {budget_gib:g} GiB" if budget_gib is not None else ""))
    for key, value in r.constraints.items():
        lines.append(f"- constraint `{key}`: {value:+.3f} ({'feasible' if value <= 0 else 'violated'})")
    if r.status == INFEASIBLE:
        lines.append("- not trained: over the budget (no PSNR; the dashboard shows it as pruned, with no value)")
    elif r.status == PRUNED:
        lines.append(f"- {pruned_text(r, eval_points)} (not a final PSNR)")
    else:
        seed = f" (train seed {r.train_seed})" if r.train_seed is not None and r.psnr is not None else ""
        lines.append(f"- PSNR: {_fmt(r.psnr, ' dB')}{seed}")
    if (r.n_seeds or 0) > 1:
        lines.append(f"- over {r.n_seeds} training seeds: **{r.psnr_mean:.2f} ± {r.psnr_std:.2f} dB** (mean ± std; "
                     "what the Pareto front and `best` rank)")
    if r.bicubic_psnr is not None:
        lines.append(f"- bicubic PSNR: {r.bicubic_psnr:.2f} dB")
    if r.duplicate_of is not None:
        lines.append(f"- same config as trial {r.duplicate_of}: results copied, not retrained")
    if r.repeat_of is not None:
        lines.append(f"- repeat of trial {r.repeat_of} with train seed {r.train_seed}: its config trained again to "
                     "measure the seed noise; part of that trial's mean, not counted in n_trials")
    if r.fail_reason:
        lines.append(f"- fail reason: `{r.fail_reason}`")
    rows = r.peak_rows
    if rows:
        total = sum(row.bytes for row in rows)
        lines += ["", "| part of the peak | GiB | share | from |", "|---|---:|---:|---|"]
        for row in rows:
            share = f"{100 * row.bytes / total:.1f}%" if total > 0 else "–"
            lines.append(f"| {row.name} | {row.gib:.3f} | {share} | {row.note} |")
        lines.append(f"| **peak (the constraint's figure)** | **{total / GIB:.3f}** | 100% | {where} |")
    else:
        lines += ["", "No peak recorded."]
    return "\n".join(lines) + "\n"


def as_html_div(fig: go.Figure, div_id: str) -> str:
    """A figure as a <div> + inline <script>; plotly.js itself is embedded once by the page."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})
