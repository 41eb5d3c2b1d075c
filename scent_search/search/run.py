"""`scent-search run` as a library call: `prepare_run(...)` validates everything, `run_study(...)` runs.

Everything that can be refused is refused in `prepare_run`, before a trial starts: the spec (unknown
keys, types, empty choices, impossible values), the sampler/pruner options, the storage URL and its
reachability, the device, the worker count, and a resumed study's compatibility with the spec.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import optuna

from scent_search.config import StudySpec, load_spec
from scent_search.errors import ConfigError
from scent_search.search.storage import open_storage, resolve_url, safe_url, storage_errors
from scent_search.search.study import Interrupted, count_trials, open_study
from scent_search.search.workers import (Pool, WorkerJob, cpu_threads, device_kind, quiet_optuna, run_job,
                                         worker_devices, worker_seed)

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

    @property
    def target(self) -> int:
        return self.spec.n_trials


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
                spec: StudySpec | None = None) -> RunPlan:
    """Load the spec (default: studies/default.toml, else the packaged copy), apply CLI overrides,
    check the storage, devices and workers, and create or check the study."""
    quiet_optuna()
    if spec is None:
        spec = load_spec(spec_path or default_spec_path())
    overrides: dict[str, Any] = {}
    for key, flag, value in (("name", "--study-name", study_name), ("n_trials", "--n-trials", n_trials),
                             ("device", "--device", device), ("budget_gib", "--memory-budget", memory_budget),
                             ("seed", "--seed", seed)):
        if value is not None:
            overrides[key] = value
    if overrides:
        try:
            spec = dataclasses.replace(spec, **overrides)
        except ConfigError as e:
            flag = {"name": "--study-name", "n_trials": "--n-trials", "device": "--device",
                    "budget_gib": "--memory-budget", "seed": "--seed"}.get(e.key, e.key)
            raise ConfigError(flag, str(e).split(": ", 1)[1]) from e
    if timeout is not None and timeout <= 0:
        raise ConfigError("--timeout", f"must be > 0 seconds, got {timeout}")
    if workers < 1:
        raise ConfigError("--workers", f"must be >= 1, got {workers}")
    url = resolve_url(spec, storage)
    devices = tuple(worker_devices(spec.device, workers, url))
    rdb = open_storage(url, spec.heartbeat)
    study = open_study(spec, rdb, url, seed=spec.seed, device_kind=device_kind(devices[0]))
    with storage_errors(url):
        counts = count_trials(study)
    return RunPlan(spec=spec, url=url, devices=devices, timeout=timeout, finished=counts.finished,
                   n_existing=counts.total)


def _jobs(plan: RunPlan) -> list[WorkerJob]:
    deadline = time.time() + plan.timeout if plan.timeout else None
    n = len(plan.devices)
    return [WorkerJob(spec=plan.spec, url=plan.url, device=d, target=plan.target, deadline=deadline,
                      seed=worker_seed(plan.spec.seed, plan.n_existing, i), threads=cpu_threads(n), index=i)
            for i, d in enumerate(plan.devices)]


def run_study(plan: RunPlan, reporter: Any = None, *, train_fn: Any = None, probe: Any = None) -> RunOutcome:
    """Run the plan's workers until the study has `n_trials` finished trials, the timeout, or Ctrl-C.

    One worker runs in this process (`train_fn` / `probe` may be injected, for tests); more are spawned.
    `reporter` gets start(...), trial(event), message(line) and finish(study, url, elapsed_s).
    """
    from scent_search.search.progress import TerminalReporter

    reporter = reporter or TerminalReporter()
    shown = safe_url(plan.url)
    outcome = RunOutcome(study_name=plan.spec.name, url=shown, finished=plan.finished, target=plan.target)
    reporter.start(name=plan.spec.name, url=shown, target=plan.target, finished=plan.finished,
                   device=", ".join(sorted(set(plan.devices))), workers=len(plan.devices),
                   budget_gib=plan.spec.budget_gib)
    t0 = time.time()
    jobs = _jobs(plan)

    def handle(kind: str, payload: Any) -> None:
        if kind == "trial":
            outcome.ran.append(payload["number"])
            reporter.trial(payload)
        elif kind == "error":
            outcome.errors.append(payload)
            reporter.message(f"Error: {payload}")
        else:
            reporter.message(payload)

    try:
        if len(jobs) == 1:
            run_job(jobs[0], lambda e: handle("trial", e), train_fn=train_fn, probe=probe,
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
                             "trials were marked failed (fail_reason interrupted) and are redone on resume")
        reporter.finish(study, shown, outcome.elapsed_s)
    return outcome
