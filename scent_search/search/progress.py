"""What `scent-search run` shows: a study progress bar, one line per finished trial, and a summary.

Workers send `trial_event(frozen_trial)` dicts (plain data: they cross process boundaries); the
reporter in the main process prints them.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial

from scent_search.search.space import knobs_label
from scent_search.search.study import counts_toward_target


def trial_event(t: FrozenTrial) -> dict[str, Any]:
    ua = t.user_attrs
    seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
        if t.datetime_complete and t.datetime_start else None
    last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
    return {"number": t.number, "state": t.state.name, "params": dict(t.params), "peak_gib": ua.get("peak_gib"),
            "budget_gib": ua.get("budget_gib"), "feasible": ua.get("feasible"), "psnr": ua.get("psnr"),
            "last_psnr": last, "bicubic_psnr": ua.get("bicubic_psnr"), "fail_reason": ua.get("fail_reason"),
            "seconds": seconds, "worker": ua.get("worker"), "counted": counts_toward_target(t),
            "retry_of": t.system_attrs.get("failed_trial"), "duplicate_of": ua.get("duplicate_of")}


def trial_line(e: dict[str, Any]) -> str:
    """#3  h=64 m=2 L=2 share=F s=128,32  peak 0.210 GiB  feasible  PSNR 24.31 dB  12.3 s"""
    peak = f"peak {e['peak_gib']:.3f} GiB" if e.get("peak_gib") is not None else "peak ?"
    state = e["state"]
    if state == "COMPLETE" and e.get("feasible") is False:
        outcome = f"infeasible (> {e['budget_gib']:g} GiB)  not trained"
    elif state == "COMPLETE":
        outcome = f"feasible  PSNR {e['psnr']:.2f} dB (bicubic {e['bicubic_psnr']:.2f})" \
            if e.get("psnr") is not None else "feasible"
    elif state == "PRUNED":
        outcome = "feasible  pruned" + (f" at PSNR {e['last_psnr']:.2f} dB" if e.get("last_psnr") is not None else "")
    else:
        outcome = f"feasible  FAILED: {e.get('fail_reason') or 'error'}"
    secs = f"{e['seconds']:.1f} s" if e.get("seconds") is not None else ""
    retry = f"  (retry of #{e['retry_of']})" if e.get("retry_of") is not None else ""
    if e.get("duplicate_of") is not None:
        retry += f"  (same config as #{e['duplicate_of']}: not retrained)"
    return f"#{e['number']:<3d} {knobs_label(e['params']):<40s} {peak:<16s} {outcome}  {secs}{retry}"


class TerminalReporter:
    """Prints to `out` (default stdout); the bar goes to stderr and only on a terminal."""

    def __init__(self, out: TextIO | None = None, bar: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.bar_enabled = bar
        self.bar = None

    def echo(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)

    def start(self, *, name: str, url: str, target: int, finished: int, device: str, workers: int,
              budget_gib: float) -> None:
        from tqdm.auto import tqdm

        self.echo(f"Study {name!r} in {url}: {finished}/{target} trials finished; budget {budget_gib:g} GiB; "
                  f"{workers} worker{'s' if workers > 1 else ''} on {device}")
        disable = None if self.bar_enabled is None else not self.bar_enabled  # None: only on a terminal
        self.bar = tqdm(total=target, initial=min(finished, target), desc=name, unit="trial", file=sys.stderr,
                        disable=disable, leave=False, dynamic_ncols=True)

    def trial(self, event: dict[str, Any]) -> None:
        self.echo(trial_line(event))
        if self.bar is not None and event.get("counted"):
            self.bar.update(1)

    def message(self, line: str) -> None:
        self.echo(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def finish(self, study: optuna.Study, url: str, elapsed_s: float) -> None:
        self.close()
        for line in summary_lines(study, url, elapsed_s):
            print(line, file=self.out, flush=True)


def summary_lines(study: optuna.Study, url: str, elapsed_s: float | None = None) -> list[str]:
    """The end-of-run summary: best feasible trial, the Pareto set (PSNR vs peak memory), the database."""
    from scent_search.search.results import study_table

    table = study_table(study)
    lines = [""]
    c = table["counts"]
    took = f"; this run took {elapsed_s:.0f} s" if elapsed_s is not None else ""
    lines.append(f"Study {study.study_name!r}: {table['finished']} trials ({c['feasible']} feasible, {c['infeasible']} "
                 f"infeasible and not trained, {c['pruned']} pruned, {c['failed']} failed){took}")
    best = table["best"]
    if best is None:
        lines.append("Best feasible trial: none yet")
    else:
        lines.append(f"Best feasible trial: #{best['trial']}  PSNR {best['psnr']:.2f} dB (bicubic "
                     f"{_f(best['bicubic_psnr'])} dB)  peak {best['peak_gib']:.3f} GiB of {table['budget_gib']:g}  "
                     f"{knobs_label(best['params'])}")
    if table["pareto"]:
        lines.append("Pareto set (PSNR vs peak memory):")
        lines.append(f"  {'trial':>5s}  {'peak GiB':>8s}  {'PSNR dB':>7s}  knobs")
        for r in table["pareto"]:
            lines.append(f"  {r['trial']:>5d}  {r['peak_gib']:>8.3f}  {r['psnr']:>7.2f}  {knobs_label(r['params'])}")
    lines.append(f"Database: {url}  (study {study.study_name!r})")
    lines.append(f"  report:    scent-search report {study.study_name} --storage {url} --out report.html")
    lines.append(f"  dashboard: scent-search dashboard --storage {url}")
    return lines


def _f(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "?"


__all__ = ["TerminalReporter", "trial_event", "trial_line", "summary_lines"]
