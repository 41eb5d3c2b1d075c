"""The `scent-search` command line: a thin click layer over the library.

Domain errors (`ScentError`) become one-line messages with exit code 2 here, and only here.
Each command's docstring carries an example; `--help` shows it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from scent_search.errors import ConfigError, ScentError
from scent_search.records import DEFAULT_STORAGE, GIB, gib


class _Group(click.Group):
    """Converts domain errors raised by any command into `click.UsageError`-style exits (code 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ScentError as e:
            click.echo(f"Error: {e}".splitlines()[0], err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scent-search")
def cli() -> None:
    """Search MambaSCENTHybrid decoder designs under a measured peak-GPU-memory budget.

    \b
    Example:
      scent-search run                       # the embedded default study
      scent-search report default --out report.html
    """


def json_option(f: Callable) -> Callable:
    """Shared `--json` flag: print the same data as the table, as JSON on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")(f)


def storage_option(f: Callable) -> Callable:
    """Shared `--storage URL` option (any SQLAlchemy URL; default: the default study's SQLite file)."""
    return click.option("--storage", metavar="URL", default=None,
                        help=f"SQLAlchemy URL of the study storage (default: {DEFAULT_STORAGE}).")(f)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# ---- memory commands: profile, seed-check --------------------------------------------------------


def _parse_set(items: tuple[str, ...], flag: str = "--set") -> dict[str, Any]:
    """`KEY=VALUE` pairs; VALUE is a TOML/JSON literal (`512`, `true`, `[128, 32]`), else a plain string."""
    from scent_search.mapping import parse_literal

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(flag, f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_literal(raw)
    return out


def _profile_rows(prof: Any, margin: float, calibration_pairs: int) -> list[Any]:
    """The profile's peak itemised as the search records it (`records.peak_rows`): sums to the constraint."""
    from scent_search.memory import RESERVED_ALLOWANCE_BYTES
    from scent_search.records import PREDICTED, peak_rows

    predicted = prof.source == PREDICTED
    return peak_rows(prof.breakdown, source=prof.source, allocated_bytes=prof.peak_allocated_bytes,
                     constraint_bytes=prof.constraint_bytes(margin), margin=margin if predicted else None,
                     allowance_bytes=RESERVED_ALLOWANCE_BYTES if predicted else None,
                     calibration_pairs=calibration_pairs, oom=prof.oom)


def _profile_table(prof: Any, rows: list[Any], calibration_pairs: int, extra: dict[str, Any]) -> str:
    from scent_search.records import provenance

    lines = [f"{'part of the peak':<22}{'GiB':>10}   from"]
    subtotal = False
    for row in rows:
        if row.overhead and not subtotal:  # the components end: their sum is the allocated peak
            lines.append(f"{'= peak allocated':<22}{gib(prof.peak_allocated_bytes):>10.3f}   the parts above")
            subtotal = True
        lines.append(f"{row.name:<22}{row.gib:>10.3f}   {row.note}".rstrip())
        lines += [f"  {k:<20}{gib(v):>10.3f}   of which" for k, v in prof.scale_breakdown.items()
                  if k.split("[", 1)[0] == row.name]  # bandwidth_lins[0], ...: one per scale
    total = sum(row.bytes for row in rows)
    lines.append(f"{'= constraint':<22}{gib(total):>10.3f}   what the search compares with its budget "
                 f"({provenance(prof.source, calibration_pairs)})")
    if prof.peak_reserved_bytes is not None:
        lines.append(f"{'peak reserved':<22}{gib(prof.peak_reserved_bytes):>10.3f}   measured")
    if prof.capacity_bytes is not None:
        lines.append(f"{'capacity':<22}{gib(prof.capacity_bytes):>10.3f}   fits: {prof.fits}")
    lines.append(f"source: {prof.source} on {prof.device_kind}, backend {prof.backend}, "
                 f"{prof.n_params:,} parameters{', OOM' if prof.oom else ''}")
    for k, v in extra.items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines)


@cli.command()
@click.option("--preset", default="baseline", show_default=True, help="Named preset (scent_search/model/presets.py; the researcher's option-a ... solution-5 are aliases).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a model argument, e.g. --set hidden_dim=256 --set 'sigma_ls=[64]'.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--queries", type=click.IntRange(1), default=1024, show_default=True, help="Query points per image.")
@click.option("--lr-size", type=click.IntRange(1), default=32, show_default=True, help="LR input side, pixels.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
@click.option("--checkpointing", is_flag=True, help="Activation checkpointing of the decoder stacks.")
@click.option("--device", default="predict", show_default=True, metavar="predict|cuda|cuda:N",
              help="predict (no GPU needed) or measure on a CUDA device.")
@click.option("--backend", type=click.Choice(["torch", "mamba_ssm"]), default=None,
              help="Processor backend the prediction models (default: mamba_ssm if it imports here).")
@click.option("--max-batch", is_flag=True, help="Find the largest batch size whose prediction fits --budget.")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="GIB",
              help="Memory budget in GiB (for --max-batch; also reported as fits/does not fit).")
@click.option("--calibrate", is_flag=True, help="With --device cuda: store the (predicted, measured) pair.")
@storage_option
@json_option
def profile(preset: str, sets: tuple[str, ...], batch_size: int, queries: int, lr_size: int, precision: str,
            checkpointing: bool, device: str, backend: str | None, max_batch: bool, budget: float | None,
            calibrate: bool, storage: str | None, as_json: bool) -> None:
    """Peak memory of one training step, per component, predicted or measured.

    \b
    Example:
      scent-search profile --preset option-a --batch-size 64 --queries 1024
      scent-search profile --set hidden_dim=256 --set mult=2 --precision bf16 --json
      scent-search profile --preset baseline --max-batch --budget 40
      scent-search profile --device cuda --calibrate --storage sqlite:///studies/default.db
    """
    from scent_search import memory
    from scent_search.config import ModelConfig, TargetShape, from_mapping
    from scent_search.model import preset_config

    base = preset_config(preset).to_dict()
    cfg = from_mapping(ModelConfig, {**base, **_parse_set(sets)}, source="--set")
    shape = TargetShape(batch_size=batch_size, queries=queries, lr_size=lr_size, precision=precision,
                        checkpointing=checkpointing)
    if max_batch and budget is None:
        raise ConfigError("--budget", "--max-batch needs --budget GIB")
    if calibrate and device == "predict":
        raise ConfigError("--calibrate", "needs --device cuda (it stores predicted/measured pairs)")
    cache = memory.ProfileCache(storage) if (storage or calibrate) else None
    margin = cache.calibration_margin() if cache else memory.DEFAULT_MARGIN
    extra: dict[str, Any] = {}
    if max_batch:
        best, prof = memory.max_batch_size(cfg, shape, int(budget * GIB), margin, backend=backend)
        extra = {"max_batch_size": best, "budget_gib": budget}
        if prof is None:
            raise ConfigError("--budget", f"not even batch size 1 fits {budget} GiB")
    elif cache is not None:
        prof = cache.get_or_profile(cfg, shape, device=device, backend=backend)
    else:
        prof = memory.profile_step(cfg, shape, device=device, backend=backend)
    if calibrate:
        if prof.oom:
            raise ConfigError("--calibrate", "the measured step ran out of memory: no pair to store")
        pred = cache.get_or_profile(cfg, shape, device="predict", backend=prof.backend)
        cache.record_calibration(pred, prof)
        margin = cache.calibration_margin()
        extra.update(predicted_gib=round(gib(pred.peak_allocated_bytes), 3),
                     ratio_measured_over_predicted=round(prof.peak_allocated_bytes / pred.peak_allocated_bytes, 4),
                     calibration_margin=round(margin, 4))
    if budget is not None and not max_batch:
        extra["fits_budget"] = prof.constraint_bytes(margin) <= budget * GIB
    pairs = len(cache.calibration_pairs()) if cache else 0
    rows = _profile_rows(prof, margin, pairs)
    if as_json:
        echo_json({"profile": prof.to_dict(), "margin": margin, "calibration_pairs": pairs,
                   "constraint_bytes": prof.constraint_bytes(margin), "rows": [r.to_dict() for r in rows], **extra})
    else:
        click.echo(_profile_table(prof, rows, pairs, extra))


@cli.command("seed-check")
@click.option("--backend", type=click.Choice(["mamba_ssm", "torch"]), default="mamba_ssm", show_default=True,
              help="Processor backend predicted: mamba-ssm's fused kernels (the researcher's) or the PyTorch scan.")
@json_option
def seed_check(backend: str, as_json: bool) -> None:
    """Check each of the researcher's memory claims against the tool's prediction (batch 64, 1024 queries, LR 32, fp32).

    \b
    Example:
      scent-search seed-check
      scent-search seed-check --backend torch --json
    """
    from scent_search import memory

    res = memory.seed_check(backend)
    if as_json:
        echo_json(res)
        return
    click.echo(f"seed shape {res['shape']}, backend {res['backend']}; a claim holds within "
               f"{res['tolerance']:.0%}; GB = {res['gb']}")
    click.echo(f"{'claim':<50}{'metric':<16}{'claimed':>9}{'tool':>10}  {'unit':<7}holds")
    for c in res["claims"]:
        click.echo(f"{c['claim']:<50}{c['metric']:<16}{c['claimed']:>9g}{c['tool']:>10g}  {c['unit']:<7}"
                   f"{'yes' if c['holds'] else 'NO'}")
    held = sum(c["holds"] for c in res["claims"])
    click.echo(f"{held} of {len(res['claims'])} claims hold")


# ---- search commands: run, studies, best ---------------------------------------------------------


@cli.command()
@click.argument("spec_file", metavar="[STUDY.toml]", required=False,
                type=click.Path(exists=True, dir_okay=False, readable=True))
@storage_option
@click.option("--study-name", default=None, help="Study name (default: the spec's `name`).")
@click.option("--n-trials", type=click.IntRange(min=1), default=None,
              help="The study's total number of finished trials (not 'N more'); default: the spec's n_trials.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SEC",
              help="Start no new trial after SEC seconds of this run.")
@click.option("--device", default=None, metavar="auto|cpu|cuda|cuda:N",
              help="Where trials train (and, on CUDA, where peaks are measured). Default: the spec's (auto).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine (one per GPU). Several need PostgreSQL storage.")
@click.option("--memory-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="GIB",
              help="Peak-memory budget in GiB (default: the spec's budget_gib).")
@click.option("--seed", type=int, default=None, help="Sampler seed (default: the spec's seed).")
@click.option("--space", "space", multiple=True, metavar="KNOB=CHOICES",
              help="Search these choices of a knob instead of the spec's [space] ones, e.g. "
                   "--space 'hidden_dim=[64, 128]' --space 'precision=[\"fp32\", \"bf16\"]'.")
def run(spec_file: str | None, storage: str | None, study_name: str | None, n_trials: int | None,
        timeout: float | None, device: str | None, workers: int, memory_budget: float | None,
        seed: int | None, space: tuple[str, ...]) -> None:
    """Run (or resume) the study of STUDY.toml until it has --n-trials finished trials.

    First the peak of every config of the space is predicted (the feasibility map, cached in the study's
    database; `scent-search map` shows it), and only configs that fit and were not tried yet become trials;
    the study ends early, with a message, once all of them are tried. Each trial gets its peak first
    (measured on CUDA, predicted otherwise): over the budget, it is recorded infeasible and never trained.
    On a CPU-only run of an expensive study, the cost of a trial here is said first. Without STUDY.toml,
    studies/default.toml is used (or the copy inside the package) and stored in studies/default.db.
    Re-running the same command resumes; Ctrl-C keeps finished trials and marks the running one failed.
    Several machines join a study by running the same command against one PostgreSQL URL.

    \b
    Example:
      scent-search run                                   # the default study, a few minutes on a CPU
      scent-search run --space 'hidden_dim=[16, 32]' --study-name narrow
      scent-search run studies/seed-40gb.toml --storage postgresql+psycopg://me@db/scent --workers 4
    """
    from scent_search.records import load_study, open_existing
    from scent_search.report import DashboardArtifactsCallback, TerminalReporter
    from scent_search.search import prepare_run, run_study

    plan = prepare_run(spec_file, storage=storage, study_name=study_name, n_trials=n_trials, timeout=timeout,
                       device=device, workers=workers, memory_budget=memory_budget, seed=seed,
                       space=_parse_set(space, "--space"))
    refresh = DashboardArtifactsCallback()  # after trials, at most every 30 s
    outcome = run_study(plan, TerminalReporter(), after_trial=refresh)
    refresh.final(load_study(open_existing(plan.url), plan.spec.name, plan.url))
    if outcome.errors:
        raise click.ClickException("; ".join(outcome.errors))
    if outcome.interrupted:
        sys.exit(130)


@cli.command("map")
@click.argument("spec_file", metavar="[STUDY.toml]", required=False,
                type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--storage", metavar="URL", default=None,
              help="SQLAlchemy URL whose profile tables cache the predictions (default: the spec's storage).")
@click.option("--memory-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="GIB",
              help="Judge the configs against this budget in GiB (default: the spec's budget_gib).")
@click.option("--backend", type=click.Choice(["mamba_ssm", "torch"]), default=None,
              help="Processor backend to predict: mamba-ssm's fused kernels (what a CUDA machine with mamba-ssm "
                   "runs) or the PyTorch scan. Default: what the study's trials predict here (mamba_ssm if it "
                   "imports, else torch).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Where to write the heatmap, an HTML page that opens offline (default: NAME-map.html here).")
@json_option
def map_(spec_file: str | None, storage: str | None, memory_budget: float | None, backend: str | None,
         out: str | None, as_json: bool) -> None:
    """Predict the peak memory of every config of STUDY.toml's space and list those that fit the budget.

    No GPU and no training: the peak of one training step at the spec's [target] shape is predicted for
    each config (one choice per searched knob; lr changes no peak), and cached in the study's database, so
    a second map, or `run`, predicts nothing again. Where the study has measured peaks on a GPU, they
    replace the predictions. `run` draws only from the configs that fit. The processor's memory depends on
    its backend: without mamba-ssm here, the PyTorch scan is predicted unless --backend says otherwise.

    \b
    Example:
      scent-search map studies/default.toml
      scent-search map studies/seed-40gb.toml --backend mamba_ssm --out seed-map.html
      scent-search map studies/seed-40gb.toml --memory-budget 24 --json
    """
    from tqdm.auto import tqdm

    from scent_search.report.feasibility import map_page
    from scent_search.search import map_study

    _check_output("--out", out)
    with tqdm(desc="predicting peaks", unit="config", file=sys.stderr, disable=None, leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = map_study(spec_file, storage=storage, memory_budget=memory_budget, backend=backend,
                           on_config=progress)
    fmap, spec = result.map, result.spec
    out = out or f"{spec.name}-map.html"
    Path(out).write_text(map_page(fmap, f"{spec.name}: peak memory at the target step"), encoding="utf-8")
    shape = (f"batch {spec.target.batch_size} x {spec.target.queries} queries, LR {spec.target.lr_size}, "
             f"{spec.target.precision}{', checkpointing' if spec.target.checkpointing else ''}")
    cached = (f"{result.new_predictions} predicted now in {result.seconds:.0f} s, "
              f"{len(fmap.cells) - result.new_predictions} from the profile cache in {result.url}")
    if as_json:
        echo_json({"study": spec.name, "storage": result.url, "budget_gib": fmap.budget_gib,
                   "backend": fmap.backend, "target": spec.target.to_dict(), "configs": len(fmap.cells),
                   "fit": len(fmap.feasible), "new_predictions": result.new_predictions, "note": result.note,
                   "out": out,
                   "cells": fmap.rows()})
        return
    click.echo(f"{spec.name}: peak GPU memory of one training step at {shape}, processor backend {fmap.backend} "
               "(predicted, with the calibration margin; measured where a trial measured it)")
    rows = fmap.rows()
    columns = [*fmap.knobs, "peak GiB", "fits", "source"]
    cells = [[str(r[k]) for k in fmap.knobs] + [f"{r['peak_gib']:.3f}", "yes" if r["fits"] else "no",
                                                r["source"] + (f" #{r['trial']}" if r["trial"] is not None else "")]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    click.echo(fmap.summary())
    click.echo(f"({cached})")
    if result.note:
        click.echo(f"Note: {result.note}")
    if backend is None and fmap.backend == "torch":
        click.echo("Note: mamba-ssm does not import here, so the PyTorch scan's memory is predicted (and this "
                   "machine's trials use it); a CUDA machine with mamba-ssm runs its fused kernels: --backend "
                   "mamba_ssm")
    click.echo(f"heatmap: {out}")


@cli.command()
@storage_option
@json_option
def studies(storage: str | None, as_json: bool) -> None:
    """List the studies in the storage: trials per status and the best feasible PSNR.

    \b
    Example:
      scent-search studies --storage sqlite:///studies/default.db --json
    """
    from scent_search.report import list_studies

    rows = list_studies(storage or DEFAULT_STORAGE)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no studies")
        return
    click.echo(f"{'study':<24s} {'trials':>6s} {'feas':>5s} {'infeas':>6s} {'pruned':>6s} {'failed':>6s} "
               f"{'run':>4s} {'budget GiB':>10s} {'best PSNR':>9s} {'at GiB':>7s}")
    for r in rows:
        best = f"{r['best_psnr']:.2f}" if r["best_psnr"] is not None else "-"
        peak = f"{r['best_peak_gib']:.3f}" if r["best_peak_gib"] is not None else "-"
        budget = f"{r['budget_gib']:g}" if r["budget_gib"] is not None else "-"
        click.echo(f"{r['study']:<24s} {r['trials']:>6d} {r['feasible']:>5d} {r['infeasible']:>6d} "
                   f"{r['pruned']:>6d} {r['failed']:>6d} {r['running']:>4d} {budget:>10s} {best:>9s} {peak:>7s}")


@cli.command()
@click.argument("study")
@storage_option
@json_option
def best(study: str, storage: str | None, as_json: bool) -> None:
    """Show the best feasible config of STUDY: its knobs, mean PSNR over seeds, peak memory, full model config,
    and the study's seed noise.

    \b
    Example:
      scent-search best default --storage sqlite:///studies/default.db --json
    """
    from scent_search.report import best_of

    data = best_of(storage or DEFAULT_STORAGE, study)
    if as_json:
        echo_json(data)
        return
    b = data["best"]
    budget = f"{data['budget_gib']:g} GiB" if data["budget_gib"] is not None else "an unknown budget"
    if b is None:
        click.echo(f"{study}: no feasible completed trial yet (budget: {budget})")
        return
    bicubic = f"{b['bicubic_psnr']:.2f} dB" if b["bicubic_psnr"] is not None else "?"
    peak = f"{b['peak_gib']:.3f} GiB" if b["peak_gib"] is not None else "? GiB"
    std = f" ± {b['psnr_std']:.2f}" if b["psnr_std"] is not None else ""
    click.echo(f"{study}: trial {b['trial']}  PSNR {b['psnr_mean']:.2f}{std} dB over {b['n_seeds']} seed(s) "
               f"(bicubic {bicubic})  peak {peak} ({b['peak_provenance']}) of {budget}")
    for k, v in b["params"].items():
        click.echo(f"  {k:<20s} {v}")
    if data.get("model_config"):
        click.echo("  model config: " + json.dumps(data["model_config"]))
    click.echo(data["noise_line"])
    if len(data["objectives"]) > 1:  # a multi-objective study optimises the whole front
        click.echo("Pareto set (PSNR vs peak memory, trained feasible trials):")
        for r in data["pareto"]:
            click.echo(f"  trial {r['trial']:>4d}  peak {r['peak_gib']:.3f} GiB  PSNR {r['psnr_mean']:.2f} dB "
                       f"(mean of {r['n_seeds']})")

# ---- report commands: report, dashboard ----------------------------------------------------------


def _check_output(flag: str, path: str | None) -> None:
    """Refuse an output file whose folder does not exist or is a file (before anything is written)."""
    if path is None:
        return
    folder = Path(path).parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise ConfigError(flag, f"cannot write {path!r}: its folder {str(folder)!r} {what}")


@cli.command()
@click.argument("study")
@storage_option
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Write the self-contained HTML report here (works offline).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write every trial as CSV (same columns as the table; `pareto` marks the front).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the Pareto set and every trial as JSON.")
def report(study: str, storage: str | None, out: str, csv_path: str | None, json_path: str | None) -> None:
    """Export the Pareto front of PSNR against peak memory of STUDY as HTML (and CSV / JSON).

    \b
    Example:
      scent-search report default --out report.html --csv trials.csv --json trials.json
    """
    from scent_search import report as rep
    from scent_search.records import load_study, open_existing

    for flag, path in (("--out", out), ("--csv", csv_path), ("--json", json_path)):
        _check_output(flag, path)
    url = storage or DEFAULT_STORAGE
    loaded = load_study(open_existing(url), study, url)
    rep.write_report(loaded, out)
    summary = rep.summarize(loaded)
    if csv_path:
        rep.write_csv(summary, csv_path)
    if json_path:
        rep.write_json(summary, json_path)
    click.echo(f"{out}: {len(summary.records)} trials, {len(summary.pareto)} on the Pareto front")


@cli.command()
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (local only by default).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
def dashboard(storage: str | None, host: str, port: int) -> None:
    """Start optuna-dashboard on the storage, with the Pareto/budget and memory figures attached.

    Every study gets the Pareto-with-budget and breakdown figures, every trial a memory note, and the
    legacy constraint values optuna-dashboard displays. Stop it with Ctrl-C.

    \b
    Example:
      scent-search dashboard --storage sqlite:///studies/default.db --port 8080
    """
    from scent_search import report as rep
    from scent_search.records import open_existing

    opened = open_existing(storage)
    names = rep.attach_all(opened)
    click.echo(f"optuna-dashboard on http://{host}:{port}/dashboard ({len(names)} studies: {', '.join(names)})")
    rep.serve(opened, host=host, port=port)


def main() -> None:
    cli(prog_name="scent-search")


if __name__ == "__main__":
    main()
