"""`scent-search run` as a library call: `prepare_run(...)` validates everything, `run_study(...)` runs.

Everything that can be refused is refused in `prepare_run`, before a trial starts and before anything is
created: the spec (unknown keys, types, empty choices, impossible values), the sampler/pruner options, the
device, the worker count and the data come first; then the storage (its reachability, a resumed study's
compatibility with the spec).

`run_study` first predicts the feasibility map of the space (search/feasibility.py) and stores it in the
study; the workers' sampler then draws only feasible configs that no trial holds, and the run ends early,
with a message, when none is left. On a CPU-only run it says what a trial costs here when that is high
(search/cost.py). It is given what shows and refreshes the run: a reporter (what the terminal prints) and
an `after_trial` callback (e.g. the report's dashboard refresher). The search service imports neither.
"""

from __future__ import annotations

import dataclasses
import shlex
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna

from scent_search.data import load_data
from scent_search.errors import ConfigError
from scent_search.records import FeasibilityMap, TrialRecord, safe_url, store_map, storage_errors
from scent_search.search.cost import WARN_ABOVE_S, StepTimer, time_step, trial_cost
from scent_search.search.feasibility import FeasibleSpace, configs, predict_map, same_config
from scent_search.search.probe import PeakProbe, Probe
from scent_search.search.spec import SearchSpace, StudySpec, default_spec_path, load_spec
from scent_search.search.storage import open_storage, resolve_url, schema_lock
from scent_search.search.study import Interrupted, count_trials, counts_of, open_study
from scent_search.search.workers import (AfterTrial, Pool, WorkerJob, cpu_threads, device_kind, quiet_optuna,
                                         run_job, worker_devices, worker_seed)

@dataclass(frozen=True)
class RunPlan:
    """A validated run: the spec with CLI overrides applied, where it is stored, and who runs it."""

    spec: StudySpec
    url: str
    devices: tuple[str, ...]  # one per worker
    timeout: float | None
    finished: int  # trials already counting toward the target (resume)
    n_existing: int
    data: Any = field(default=None, compare=False, repr=False)  # the loaded data (reused by an in-process worker)

    @property
    def target(self) -> int:
        return self.spec.n_trials


class Reporter(Protocol):
    """What `run_study` tells as the run goes (the CLI passes the report's TerminalReporter)."""

    def start(self, *, name: str, url: str, target: int, finished: int, device: str, workers: int,
              budget_gib: float) -> None: ...

    def trial(self, record: TrialRecord) -> None: ...

    def message(self, line: str) -> None: ...

    def finish(self, study: optuna.Study, url: str, elapsed_s: float) -> None: ...


class SilentReporter:
    """Tells nothing: the default of `run_study` for library callers."""

    def start(self, **facts: Any) -> None:
        pass

    def trial(self, record: TrialRecord) -> None:
        pass

    def message(self, line: str) -> None:
        pass

    def finish(self, study: optuna.Study, url: str, elapsed_s: float) -> None:
        pass


_FLAGS = {"name": "--study-name", "n_trials": "--n-trials", "device": "--device", "budget_gib": "--memory-budget",
          "seed": "--seed"}


@dataclass
class RunOutcome:
    study_name: str
    url: str  # password masked
    finished: int
    target: int
    ran: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False
    exhausted: bool = False  # ended before the target: every feasible config of the space has been tried
    errors: list[str] = field(default_factory=list)


def prepare_run(spec_path: str | Path | None = None, *, storage: str | None = None, study_name: str | None = None,
                n_trials: int | None = None, timeout: float | None = None, device: str | None = None,
                workers: int = 1, memory_budget: float | None = None, seed: int | None = None,
                space: dict[str, Any] | None = None, spec: StudySpec | None = None) -> RunPlan:
    """Load the spec (default: studies/default.toml, else the packaged copy), apply CLI overrides (`space`:
    knob -> choices, replacing the spec's), check the sampler, pruner, devices, workers and data, then open
    the storage and create or check the study."""
    quiet_optuna()
    if spec is None:
        spec = load_spec(spec_path or default_spec_path())
    overrides = {key: value for key, value in (("name", study_name), ("n_trials", n_trials), ("device", device),
                                               ("budget_gib", memory_budget), ("seed", seed)) if value is not None}
    try:
        if space:
            overrides["space"] = SearchSpace.from_dict({**spec.space.to_dict(), **space}, prefix="")
        spec = dataclasses.replace(spec, **overrides)
    except ConfigError as e:
        knob = e.key.removeprefix("space.")
        if space and knob in space:
            raise ConfigError("--space", f"{knob}: {e.message}") from e
        raise ConfigError(_FLAGS.get(e.key, e.key), e.message) from e
    if timeout is not None and timeout <= 0:
        raise ConfigError("--timeout", f"must be > 0 seconds, got {timeout}")
    if workers < 1:
        raise ConfigError("--workers", f"must be >= 1, got {workers}")
    try:
        spec.sampler.build(spec.seed)
        spec.pruner.build()
    except ConfigError as e:
        raise e.at(source=spec.source) from e
    url = resolve_url(spec, storage)
    devices = tuple(worker_devices(spec.device, workers, url))
    data = load_data(None if spec.data == "default" else spec.data, spec.train)  # a bad folder: before any study
    rdb = open_storage(url, spec.heartbeat)
    study = open_study(spec, rdb, url, seed=spec.seed, device_kind=device_kind(devices[0]))
    with storage_errors(url):
        counts = count_trials(study)
    return RunPlan(spec=spec, url=url, devices=devices, timeout=timeout, finished=counts.finished,
                   n_existing=counts.total, data=data)


def _jobs(plan: RunPlan, after_trial: AfterTrial | None, fmap: FeasibilityMap) -> list[WorkerJob]:
    deadline = time.time() + plan.timeout if plan.timeout else None
    n = len(plan.devices)
    return [WorkerJob(spec=plan.spec, url=plan.url, device=d, target=plan.target, deadline=deadline,
                      seed=worker_seed(plan.spec.seed, plan.n_existing, i), threads=cpu_threads(n), index=i,
                      after_trial=after_trial, fmap=fmap)
            for i, d in enumerate(plan.devices)]


def _map_hint(plan: RunPlan) -> str:
    """The `scent-search map` command of this study (its storage when the spec alone would not find it)."""
    storage = "" if plan.url == resolve_url(plan.spec) else f" --storage {shlex.quote(safe_url(plan.url))}"
    return f"scent-search map {shlex.quote(plan.spec.source) if plan.spec.source else 'STUDY.toml'}{storage}"


def _prediction_probe(plan: RunPlan) -> PeakProbe:
    """The profile cache of the study's database, predicting (the map is predicted, on CUDA too)."""
    storage = open_storage(plan.url, None)
    with schema_lock(plan.url):
        return PeakProbe(storage.engine, "predict")


def feasibility_map(plan: RunPlan, probe: Probe, reporter: Reporter) -> FeasibilityMap:
    """The study's feasibility map (the profile cache answers configs it has seen), stored in the study for the
    report and the dashboard."""
    cache = getattr(probe, "cache", None)
    before = cache.count() if cache is not None else None
    reporter.message(f"Feasibility map: the peak of each of the {len(configs(plan.spec))} configs of the space at "
                     "the target step (predicted once; the study's database keeps them)")
    t0 = time.time()
    fmap = predict_map(plan.spec, probe)
    new = cache.count() - before if cache is not None else 0
    took = f"; {new} predicted now in {time.time() - t0:.0f} s" if new else ""
    reporter.message(f"Feasibility map: {fmap.summary()}{took}; only those are tried, infeasible configs cost no "
                     f"trial. Table and heatmap: {_map_hint(plan)}")
    with storage_errors(plan.url):
        store_map(optuna.load_study(study_name=plan.spec.name, storage=open_storage(plan.url, None)), fmap)
    return fmap


def announce_cost(plan: RunPlan, probe: Probe, reporter: Reporter, timer: StepTimer | None) -> None:
    """On a CPU-only run, say what a trial will cost here when that is more than a couple of minutes."""
    if set(plan.devices) != {"cpu"}:
        return
    cost = trial_cost(plan.spec, probe, timer or time_step)
    if cost is not None and cost.seconds > WARN_ABOVE_S:
        reporter.message(cost.message(max(0, plan.target - plan.finished), plan.spec.source))


def run_study(plan: RunPlan, reporter: Reporter | None = None, *, after_trial: AfterTrial | None = None,
              train_fn: Any = None, probe: Any = None, map_probe: Any = None,
              step_timer: StepTimer | None = None) -> RunOutcome:
    """Run the plan's workers until the study has `n_trials` finished trials, nothing feasible is left to
    try, the timeout, or Ctrl-C.

    First, on a CPU-only run, the cost of a trial here if it is high; then the feasibility map (every
    config's peak, predicted; stored in the study). One worker runs in this process; more are spawned. For tests,
    `train_fn` and `probe` (the trials' peak) may be injected for the in-process worker, `map_probe` for the
    map (default: `probe` when one is given, else the profile cache's prediction), and `step_timer` for the
    cost. `reporter` (default: silent) gets start(...), trial(record), message(line) and finish(study, url,
    elapsed_s). `after_trial(study, frozen_trial)` runs in each worker after each of its trials.
    """
    reporter = reporter or SilentReporter()
    shown = safe_url(plan.url)
    outcome = RunOutcome(study_name=plan.spec.name, url=shown, finished=plan.finished, target=plan.target)
    reporter.start(name=plan.spec.name, url=shown, target=plan.target, finished=plan.finished,
                   device=", ".join(sorted(set(plan.devices))), workers=len(plan.devices),
                   budget_gib=plan.spec.budget_gib)
    t0 = time.time()
    fmap = None

    def handle(kind: str, payload: Any) -> None:
        if kind == "trial":
            outcome.ran.append(payload.number)
            reporter.trial(payload)
        elif kind == "error":
            outcome.errors.append(payload)
            reporter.message(f"Error: {payload}")
        else:
            reporter.message(payload)

    try:
        map_probe = map_probe or probe or _prediction_probe(plan)
        announce_cost(plan, map_probe, reporter, step_timer)
        fmap = feasibility_map(plan, map_probe, reporter)
        jobs = _jobs(plan, after_trial, fmap)
        if len(jobs) == 1:
            run_job(jobs[0], lambda e: handle("trial", e), train_fn=train_fn, probe=probe, data=plan.data,
                    on_message=lambda m: handle("message", m))
        else:
            pool = Pool(jobs)
            pool.start()
            try:
                codes = pool.run(handle)
            except KeyboardInterrupt:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # children are stopping; no second interrupt here
                reporter.message("Interrupted: stopping the workers (their running trials are marked failed)")
                pool.stop(handle)
                raise Interrupted("interrupted") from None
            if any(c not in (0, None) for c in codes) and not outcome.errors:
                outcome.errors.append(f"worker exit codes {codes}")
    except (KeyboardInterrupt, Interrupted):
        outcome.interrupted = True
    outcome.elapsed_s = time.time() - t0
    storage = open_storage(plan.url, None)
    with storage_errors(plan.url):
        study = optuna.load_study(study_name=plan.spec.name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        outcome.finished = counts_of(trials).finished
        space = FeasibleSpace(fmap, same_config(plan.spec)) if fmap is not None else None
        if space is not None and not outcome.interrupted and not outcome.errors \
                and outcome.finished < plan.target and not space.untried(trials):
            outcome.exhausted = True
            reporter.message(space.ended(trials, outcome.finished, plan.target))
        if outcome.interrupted:
            reporter.message(f"Interrupted: {outcome.finished}/{plan.target} finished trials are kept; running "
                             "trials were marked failed (fail_reason interrupted): they do not count toward the "
                             "target, and are retried or replaced when the study resumes")
        reporter.finish(study, shown, outcome.elapsed_s)
    return outcome
