"""The self-contained HTML report: one file, plotly.js embedded once, no external URL.

Every piece of text that comes from the study (its name, knob names and values, attrs) goes through
`html.escape`; the figures' JSON is escaped by plotly (`<`, `>` and `/` become \\u escapes).
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any, Sequence

import optuna
import plotly.offline

from scent_search.report import feasibility, figures
from scent_search.report.export import table
from scent_search.records import CALIBRATED, FEASIBLE, INFEASIBLE, MEASURED, RUNNING
from scent_search.report.pareto import PRUNED_COLUMNS, StudySummary, noise_line, pareto_noise, summarize

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 2em; color: #222; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1.2em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
.notice { background: #fff4e5; border-left: 4px solid #ff9800; padding: .5em 1em; margin: .5em 0; }
table { border-collapse: collapse; font-size: 90%; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.text { text-align: left; }
tr.pareto td:first-child { font-weight: 600; }
"""

# Table headers of the export columns (units where they have one).
_HEADERS = {"trial": "trial", "status": "status", "pareto": "Pareto", "peak_gib": "peak (GiB)",
            "peak_source": "peak source", "psnr": "final PSNR (dB)", "last_reported_psnr": "pruned: last PSNR (dB)",
            "pruned_at": "pruned at eval point", "bicubic_psnr": "bicubic PSNR (dB)", "steps_per_s": "steps/s",
            "n_params": "parameters", "psnr_mean": "mean PSNR ± std (seeds)", "train_seed": "train seed",
            "repeat_of": "repeat of"}
# psnr_mean, psnr_std and n_seeds are shown as one cell, "25.31 ± 0.12 (3)", under psnr_mean's header.
_FOLDED = ("psnr_std", "n_seeds")
_DIGITS = {"peak_gib": 3, "psnr": 2, "last_reported_psnr": 2, "bicubic_psnr": 2, "steps_per_s": 2}


def _seed_cell(row: dict[str, Any]) -> str:
    if row["psnr_mean"] is None:
        return '<td class="text">–</td>'
    std = f" ± {row['psnr_std']:.2f}" if row["psnr_std"] is not None else ""
    return f"<td>{row['psnr_mean']:.2f}{std} ({row['n_seeds']})</td>"


def _cell(name: str, value: Any) -> str:
    if value is None:
        return '<td class="text">–</td>'
    if isinstance(value, bool):
        return f'<td class="text">{"yes" if value else "no"}</td>'
    if name == "n_params" and isinstance(value, int):
        return f"<td>{value:,}</td>"
    if isinstance(value, float) and name in _DIGITS:
        return f"<td>{value:.{_DIGITS[name]}f}</td>"
    if isinstance(value, (int, float)):
        return f"<td>{value:g}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def _table(names: Sequence[str], rows: Sequence[dict[str, Any]], table_id: str) -> str:
    names = [n for n in names if n not in _FOLDED]
    head = "".join(f"<th>{html.escape(_HEADERS.get(n, n))}</th>" for n in names)
    body = "".join(
        f'<tr class="{"pareto" if row["pareto"] else ""}">'
        + "".join(_seed_cell(row) if n == "psnr_mean" else _cell(n, row[n]) for n in names) + "</tr>"
        for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def notices(summary: StudySummary) -> list[str]:
    """Plain sentences about what the report cannot show, and about results that need a warning."""
    records, counts = summary.records, summary.counts
    out = []
    provenances = summary.provenances
    estimated, placed = sum(n for kind, n in provenances.items() if kind != MEASURED), sum(provenances.values())
    if estimated:
        of = "every trial" if estimated == placed else f"{estimated} of {placed} trials"
        how = ("with a margin calibrated on measured pairs" if CALIBRATED in provenances and len(provenances) == 1
               else "with a stated margin")
        out.append(f"Peak memory is predicted, not measured, for {of}: the allocated bytes of a FakeTensor run of "
                   f"the step, {how} and a fixed allowance for the allocator (the breakdown shows each). "
                   "Run the study on a GPU (--device cuda) to measure them.")
    if not records:
        out.append("The study has no trial yet.")
    elif counts[FEASIBLE] + counts[INFEASIBLE] == 0:
        out.append("No trial has completed yet: there is no Pareto front.")
    elif not any(r.pareto for r in records):
        budget = f" under the {summary.budget_gib:g} GiB budget" if summary.budget_gib is not None else ""
        out.append(f"No completed trial is feasible{budget} with a PSNR: there is no Pareto front.")
    with_psnr = [r for r in records if r.status == FEASIBLE and r.psnr is not None]
    if len(with_psnr) == 1:
        out.append("Only one trial has a PSNR value: the front is a single point, and importances "
                   "for PSNR cannot be computed.")
    weak = [r for r in summary.pareto if r.bicubic_psnr is not None and r.psnr_mean <= r.bicubic_psnr]
    if weak:
        out.append(f"{len(weak)} Pareto trial(s) do not beat bicubic upsampling on the same crops "
                   f"({', '.join(f'#{r.number}' for r in weak)}): they learned nothing useful.")
    if counts[RUNNING]:
        out.append(f"{counts[RUNNING]} trial(s) are still running and not shown.")
    unplaced = [r for r in records if r.status != RUNNING and r.peak_gib is None]
    if unplaced:
        out.append(f"{len(unplaced)} finished trial(s) have no peak memory and are not plotted: "
                   + ", ".join(f"#{r.number}" for r in unplaced) + ".")
    return out


def _meta(summary: StudySummary, now: dt.datetime) -> str:
    e = html.escape
    shape = ", ".join(f"{e(str(k))} {e(str(v))}" for k, v in summary.target_shape.items()) or "–"
    counts = ", ".join(f"{n} {s}" for s, n in summary.counts.items())
    items = [
        ("study", e(summary.name)),
        ("memory budget", f"{summary.budget_gib:g} GiB" if summary.budget_gib is not None else "–"),
        ("target shape", shape),
        ("objectives", e(", ".join(f"{name} ({direction})" for name, direction in summary.objectives.items()))
         + ("; peak memory as a constraint too" if summary.multi_objective else "; peak memory as a constraint")),
        ("device", e(summary.device) if summary.device else "–"),
        ("trials", f"{len(summary.records)} ({counts})"),
        ("date", now.strftime("%Y-%m-%d %H:%M UTC")),
    ]
    return '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def render_report(study: optuna.Study, now: dt.datetime | None = None) -> str:
    """The report page of a study, as one HTML string."""
    now = now or dt.datetime.now(dt.timezone.utc)
    trials = study.get_trials(deepcopy=False)
    summary = summarize(study, trials)
    importances = figures.param_importances(trials)
    names, rows = table(summary)
    pareto_rows = sorted((row for row in rows if row["pareto"]),
                         key=lambda row: (row["peak_gib"], -row["psnr_mean"]))
    noise = "".join(f"<p>{html.escape(line)}</p>" for line in (noise_line(summary), pareto_noise(summary)) if line)
    notes = "".join(f'<p class="notice">{html.escape(n)}</p>' for n in notices(summary))
    pareto_table = (_table([n for n in names if n not in PRUNED_COLUMNS], pareto_rows, "pareto-table") if pareto_rows
                    else '<p class="notice">No Pareto trial.</p>')
    title = html.escape(f"scent-search report: {summary.name}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{_CSS}</style>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
</head>
<body>
<header>
<h1>{title}</h1>
{_meta(summary, now)}
</header>
<section id="notices">{notes}</section>
<section><h2>Pareto front</h2>
<p>Maximise PSNR, minimise peak memory; the front holds trained feasible configs only, each labelled with the
number of its original trial. A config is one point, at its mean PSNR over its training seeds, with ± std
error bars where it was trained with several; its repeats with other seeds are dashes at their own PSNR,
never points of their own. Pruned trials are drawn at the last PSNR they reported (no final PSNR). Trials
that were not trained (infeasible, failed before a PSNR) are drawn at the floor, 1 dB below every PSNR. A
copied config (same config and seed, not retrained) is a ring around the trial whose results it copied.</p>
{figures.as_html_div(figures.pareto_figure(summary), "pareto-front")}
<div id="noise">{noise}</div>
</section>
<section><h2>Pareto trials</h2>{pareto_table}</section>
<section><h2>Memory breakdown</h2>
<p>Each bar is a Pareto trial's peak as the constraint counts it: the components add up to the allocated
bytes; the hatched grey parts are what they do not cover (hover for where each comes from).</p>
{figures.as_html_div(figures.breakdown_figure(summary), "memory-breakdown")}
</section>
{feasibility.report_section(study, summary)}
<section><h2>Parameter importance</h2>
{figures.as_html_div(figures.importance_figure(importances), "param-importance")}
</section>
<section><h2>Optimisation history</h2>{figures.as_html_div(figures.history_figure(summary), "history")}</section>
<section><h2>All trials</h2>
<details><summary>{len(rows)} trials</summary>{_table(names, rows, "all-trials")}</details>
</section>
</body>
</html>
"""


def write_report(study: optuna.Study, path: str | Path, now: dt.datetime | None = None) -> None:
    Path(path).write_text(render_report(study, now=now), encoding="utf-8")
