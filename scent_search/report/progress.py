"""What `scent-search run` shows: a study progress bar, one line per finished trial, and a summary.

`TerminalReporter` is the reporter the CLI hands to `search.run_study`: workers send each finished trial
as a `records.TrialRecord` (plain data: it crosses process boundaries) and it prints them.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any, TextIO

import optuna

from scent_search.records import INFEASIBLE, TrialRecord, knobs_label
from scent_search.report.pareto import RULE
from scent_search.report.results import study_table


def trial_line(r: TrialRecord) -> str:
    """#3  h=64 m=2 L=2 share=F s=128,32  peak 0.210 GiB (predicted)  feasible  PSNR 24.31 dB  12.3 s"""
    peak = f"peak {r.peak_gib:.3f} GiB ({r.provenance or '?'})" if r.peak_gib is not None else "peak ?"
    if r.status == INFEASIBLE:
        budget = f"{r.budget_gib:g} GiB" if r.budget_gib is not None else "the budget"
        outcome = f"infeasible (> {budget})  not trained"
    elif r.state == "COMPLETE":
        outcome = f"feasible  PSNR {r.psnr:.2f} dB (bicubic {_f(r.bicubic_psnr)})" \
            if r.psnr is not None else "feasible"
    elif r.state == "PRUNED":
        outcome = "feasible  pruned" + (f" at eval point {r.pruned_at}" if r.pruned_at is not None else "") + \
            (f", last PSNR {r.last_reported_psnr:.2f} dB" if r.last_reported_psnr is not None else "")
    else:
        outcome = f"feasible  FAILED: {r.fail_reason or 'error'}"
    secs = f"{r.seconds:.1f} s" if r.seconds is not None else ""
    retry = f"  (retry of #{r.retry_of})" if r.retry_of is not None else ""
    if r.duplicate_of is not None:
        retry += f"  (same config as #{r.duplicate_of}: not retrained)"
    if r.repeat_of is not None:
        retry += f"  (repeat of #{r.repeat_of}, train seed {r.train_seed})"
    return f"#{r.number:<3d} {knobs_label(r.params):<40s} {peak:<28s} {outcome}  {secs}{retry}"


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

    def trial(self, record: TrialRecord) -> None:
        self.echo(trial_line(record))
        if self.bar is not None and record.counts_toward_target:
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


def _psnr(row: dict[str, Any]) -> str:
    """25.31 ± 0.12 dB (3 seeds), or 25.31 dB: a config's mean PSNR over its seeds."""
    std = f" ± {row['psnr_std']:.2f}" if row["psnr_std"] is not None else ""
    seeds = f" ({row['n_seeds']} seeds)" if (row["n_seeds"] or 1) > 1 else ""
    return f"{row['psnr_mean']:.2f}{std} dB{seeds}"


def summary_lines(study: optuna.Study, url: str, elapsed_s: float | None = None) -> list[str]:
    """The end-of-run summary: the best feasible config, the PSNR spread beside the seed noise, the Pareto set
    (configs at their mean PSNR vs peak memory; those within the noise of the best marked), the database,
    and the commands that show it (shell-quoted: a study name or URL may hold any character)."""
    table = study_table(study)
    lines = [""]
    c = table["counts"]
    took = f"; this run took {elapsed_s:.0f} s" if elapsed_s is not None else ""
    repeats = f", {table['repeats']} of them repeats with other seeds" if table["repeats"] else ""
    lines.append(f"Study {study.study_name!r}: {table['finished']} trials ({c['feasible']} feasible, {c['infeasible']} "
                 f"infeasible and not trained, {c['pruned']} pruned, {c['failed']} failed){repeats}{took}")
    best = table["best"]
    if best is None:
        lines.append("Best feasible trial: none yet")
    else:
        lines.append(f"Best feasible trial: #{best['trial']}  PSNR {_psnr(best)} (bicubic "
                     f"{_f(best['bicubic_psnr'])} dB)  peak {_f(best['peak_gib'], 3)} GiB "
                     f"({best['peak_provenance'] or '?'}) of {_f(table['budget_gib'], 'g')}  "
                     f"{knobs_label(best['params'])}")
    lines.append(table["noise_line"])
    if table["pareto"]:
        known = best is not None and best["within_noise_of_best"] is not None
        lines.append("Pareto set (mean PSNR over seeds vs peak memory, trained feasible configs"
                     + (f"; ≈: within the noise of the best, {RULE}" if known else "") + "):")
        lines.append(f"  {'trial':>5s}  {'peak GiB':>8s}  {'PSNR dB':>13s}  {'seeds':>5s}  {'vs best':>8s}  knobs")
        for r in table["pareto"]:
            std = f" ± {r['psnr_std']:.2f}" if r["psnr_std"] is not None else ""
            if r["trial"] == best["trial"]:
                versus = "best"
            else:
                versus = f"{r['psnr_mean'] - best['psnr_mean']:+.2f}" + (" ≈" if r["within_noise_of_best"] else "  ")
            lines.append(f"  {r['trial']:>5d}  {r['peak_gib']:>8.3f}  {r['psnr_mean'] :>6.2f}{std:<7s}  "
                         f"{r['n_seeds']:>5d}  {versus:>8s}  {knobs_label(r['params'])}")
    lines.append(f"Database: {url}  (study {study.study_name!r})")
    name, storage = shlex.quote(study.study_name), shlex.quote(url)
    lines.append(f"  report:    scent-search report {name} --storage {storage} --out report.html")
    lines.append(f"  dashboard: scent-search dashboard --storage {storage}")
    return lines


def _f(x: Any, spec: str | int = 2) -> str:
    """A number with `spec` digits (or a format spec), "?" when there is none."""
    if not isinstance(x, (int, float)):
        return "?"
    return f"{x:.{spec}f}" if isinstance(spec, int) else format(x, spec)


__all__ = ["TerminalReporter", "trial_line", "summary_lines"]
