"""`scent-search run` as a library call: `prepare_run(...)` validates everything, `run_study(...)` runs.

Everything that can be refused is refused in `prepare_run`, before a trial starts and before anything is
created: the spec (unknown keys, types, empty choices, impossible values), the sampler/pruner options, the
device, the worker count and the data come first; then the storage (its reachability, a resumed study's
compatibility with the spec).

`run_study` is given what shows and refreshes the run: a reporter (what the terminal prints) and an
`after_trial` callback (e.g. the report's dashboard refresher). The search service imports neither.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import optuna

from scent_search.data import load_data
from scent_search.errors import ConfigError
from scent_search.records import TrialRecord, safe_url, storage_errors
from scent_search.search.spec import SearchSpace, StudySpec, load_spec
from scent_search.search.storage import open_storage, resolve_url
from scent_search.search.study import Interrupted, count_trials, open_study
from scent_search.search.workers import (AfterTrial, Pool, WorkerJob, cpu_threads, device_kind, quiet_optuna,
                                         run_job, worker_devices, worker_seed)

DEFAULT_SPEC = Path("studies/default.toml")  # relative to the working directory


def packaged_default_spec() -> Path:
    """The copy of studies/default.toml shipped inside the package (used when ./studies/ has none)."""
    return Path(str(resources.files("scent_search") / "studies" / "default.toml"))


def default_spec_path() -> Path:
    return DEFAULT_SPEC if DEFAULT_SPEC.is_file() else packaged_default_spec()


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


def _jobs(plan: RunPlan, after_trial: AfterTrial | None) -> list[WorkerJob]:
    deadline = time.time() + plan.timeout if plan.timeout else None
    n = len(plan.devices)
    return [WorkerJob(spec=plan.spec, url=plan.url, device=d, target=plan.target, deadline=deadline,
                      seed=worker_seed(plan.spec.seed, plan.n_existing, i), threads=cpu_threads(n), index=i,
                      after_trial=after_trial)
            for i, d in enumerate(plan.devices)]


def run_study(plan: RunPlan, reporter: Reporter | None = None, *, after_trial: AfterTrial | None = None,
              train_fn: Any = None, probe: Any = None) -> RunOutcome:
    """Run the plan's workers until the study has `n_trials` finished trials, the timeout, or Ctrl-C.

    One worker runs in this process (`train_fn` / `probe` may be injected, for tests); more are spawned.
    `reporter` (default: silent) gets start(...), trial(record), message(line) and finish(study, url,
    elapsed_s). `after_trial(study, frozen_trial)` runs in each worker after each of its trials.
    """
    reporter = reporter or SilentReporter()
    shown = safe_url(plan.url)
    outcome = RunOutcome(study_name=plan.spec.name, url=shown, finished=plan.finished, target=plan.target)
    reporter.start(name=plan.spec.name, url=shown, target=plan.target, finished=plan.finished,
                   device=", ".join(sorted(set(plan.devices))), workers=len(plan.devices),
                   budget_gib=plan.spec.budget_gib)
    t0 = time.time()
    jobs = _jobs(plan, after_trial)

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
        outcome.finished = count_trials(study).finished
        if outcome.interrupted:
            reporter.message(f"Interrupted: {outcome.finished}/{plan.target} finished trials are kept; running "
                             "trials were marked failed (fail_reason interrupted): they do not count toward the "
                             "target, and are retried or replaced when the study resumes")
        reporter.finish(study, shown, outcome.elapsed_s)
    return outcome
