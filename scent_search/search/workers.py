"""Worker processes: one per CUDA device where there are GPUs, CPU-bound otherwise.

`--workers N` spawns N processes (multiprocessing "spawn": CUDA cannot be forked). Each opens its own
connection to the study's storage and runs `Runner` until the study reaches its target; the storage
(with the slot lock) is the only coordination, so workers on other machines join the same way.
Finished trials come back to the main process as `records.TrialRecord`s (plain, picklable data) for the
terminal. `after_trial(study, frozen_trial)`, if given (e.g. the report's dashboard refresher, which the CLI
passes), runs in the worker after each trial; it must be picklable to reach a spawned worker.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from scent_search.errors import ConfigError
from scent_search.records import FeasibilityMap, TrialRecord, is_sqlite
from scent_search.search.spec import StudySpec

AfterTrial = Callable[[Any, Any], None]  # (optuna.Study, FrozenTrial) -> None

CHILD_STOP_GRACE_S = 5.0  # after Ctrl-C, children get this long to mark their trial failed before a SIGINT
CHILD_KILL_AFTER_S = 60.0  # ... and this long after it before they are terminated


def resolve_device(device: str) -> str:
    """auto -> cuda if available else cpu; cuda / cuda:N must exist."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device", f"{device} requested but no CUDA device is available")
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise ConfigError("--device", f"{device}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def worker_devices(device: str, workers: int, url: str) -> list[str]:
    """The device of each worker. GPUs: one worker per device. SQLite: one worker (see below)."""
    if workers > 1 and is_sqlite(url):
        # SQLite takes one writer at a time; under N processes training and writing, "database is locked"
        # failures are a matter of time. PostgreSQL is Optuna's distributed engine.
        raise ConfigError("--workers", f"{workers} workers need a server database: SQLite allows one writer at a "
                          "time. Use PostgreSQL, e.g. --storage postgresql+psycopg://user@host/db "
                          "(pip install 'scent-search[postgres]')")
    device = resolve_device(device)
    if device == "cpu":
        return ["cpu"] * workers
    import torch

    if device == "cuda":
        n = torch.cuda.device_count()
        if workers > n:
            raise ConfigError("--workers", f"{workers} workers but {n} CUDA device(s): one worker per GPU (a "
                              "shared GPU would distort every measured peak)")
        return [f"cuda:{i}" for i in range(workers)]
    if workers > 1:
        raise ConfigError("--workers", f"--device {device} pins one GPU: use --device cuda for one worker per GPU")
    return [device]


def cpu_threads(workers: int) -> int:
    """Intra-op threads per worker: the cores shared out, at least one (oversubscription slows everyone)."""
    return max(1, (os.cpu_count() or 1) // workers)


def device_kind(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def worker_seed(seed: int | None, n_existing: int, index: int) -> int | None:
    """Distinct sampler streams per worker and per resume (a restarted seeded sampler would re-suggest
    the configs of the first run)."""
    return None if seed is None else seed + 7919 * index + n_existing


@dataclass(frozen=True)
class WorkerJob:
    spec: StudySpec
    url: str
    device: str
    target: int
    deadline: float | None  # time.time() after which no trial starts
    seed: int | None
    threads: int
    index: int
    after_trial: AfterTrial | None = None
    fmap: FeasibilityMap | None = None  # the sampler draws only its feasible configs; None: the spec's sampler alone


def quiet_optuna() -> None:
    """The terminal shows our one line per trial; Optuna's own INFO lines and experimental warnings would
    repeat it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*constraint value is ignored.*")


def run_job(job: WorkerJob, on_trial: Callable[[TrialRecord], None], *, train_fn: Any = None,
            probe: Any = None, data: Any = None, on_message: Callable[[str], None] | None = None) -> list[int]:
    """One worker, in this process: open the study, run trials until the target. Returns trial numbers.
    `data`: the study's data, already loaded (else the worker loads it on first need)."""
    import torch

    quiet_optuna()
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        return _run_job(job, on_trial, train_fn=train_fn, probe=probe, data=data, on_message=on_message)
    finally:
        torch.set_num_threads(threads)  # an in-process worker leaves its caller's setting as it found it


def _run_job(job: WorkerJob, on_trial: Callable[[TrialRecord], None], *, train_fn: Any, probe: Any, data: Any,
             on_message: Callable[[str], None] | None) -> list[int]:
    import torch

    from scent_search.search.feasibility import FeasibleSampler, FeasibleSpace, same_config, searched
    from scent_search.search.objective import Objective
    from scent_search.search.probe import PeakProbe, profiling_device
    from scent_search.search.repeats import RepeatPhase
    from scent_search.search.space import suggest
    from scent_search.search.storage import open_storage, schema_lock
    from scent_search.search.study import Runner, open_study

    if job.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(job.device))
    storage = open_storage(job.url, job.spec.heartbeat)
    study = open_study(job.spec, storage, job.url, seed=job.seed, device_kind=device_kind(job.device), check=False)
    if probe is None:
        with schema_lock(job.url):  # the profile cache creates its tables in the study's database
            probe = PeakProbe(storage.engine, profiling_device(job.device))
    objective = Objective(job.spec, device=job.device, probe=probe, train_fn=train_fn, data=data)
    waiting_said = [False]

    def on_wait(counts: Any) -> None:
        if on_message and not waiting_said[0]:
            on_message(f"[worker {job.index}] waiting: {counts.running} trial(s) still running elsewhere "
                       f"({counts.finished}/{job.target} finished)")
            waiting_said[0] = True

    exhausted = on_ask = None
    if job.fmap is not None:
        space = FeasibleSpace(job.fmap, same_config(job.spec))
        study.sampler = FeasibleSampler(study.sampler, space, searched(job.spec), seed=job.seed)

        def exhausted(trials: list) -> bool:
            return not space.untried(trials)

        def on_ask(trial: Any) -> None:
            suggest(trial, job.spec)  # under the slot lock: no other worker draws the same config meanwhile

    runner = Runner(study, objective, url=job.url, target=job.target, deadline=job.deadline,
                    on_trial=lambda t: on_trial(TrialRecord.from_trial(t)), after_trial=job.after_trial,
                    on_wait=on_wait, poll_s=min(2.0, float(job.spec.heartbeat.interval)), exhausted=exhausted,
                    on_ask=on_ask, after_target=RepeatPhase(job.spec, on_message) if job.spec.repeats.on else None)
    return runner.run()


# --------------------------------------------------------------------------------------------------
# Several processes


def _child_main(job: WorkerJob, events: Any) -> None:
    """Entry point of a spawned worker: events are ("trial", TrialRecord), ("message", str), ("error", str)."""
    from scent_search.search.study import Interrupted

    logging.basicConfig(level=logging.WARNING)

    def leave(code: int) -> None:
        events.close()
        events.join_thread()  # flush the queue's feeder thread: os._exit would drop the last events
        os._exit(code)  # skip interpreter teardown: a second Ctrl-C there would print a traceback

    try:
        run_job(job, lambda e: events.put(("trial", e)), on_message=lambda m: events.put(("message", m)))
    except (KeyboardInterrupt, Interrupted):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        events.put(("message", f"[worker {job.index}] interrupted: its running trial is marked failed"))
        leave(130)
    except Exception as e:  # reported by the parent, which exits non-zero
        events.put(("error", f"worker {job.index} on {job.device}: {type(e).__name__}: {e}".splitlines()[0]))
        traceback.print_exc()
        leave(1)
    leave(0)


class Pool:
    """Spawned workers and the event stream back from them."""

    def __init__(self, jobs: list[WorkerJob]) -> None:
        ctx = mp.get_context("spawn")
        self.events = ctx.Queue()
        self.procs = [ctx.Process(target=_child_main, args=(job, self.events), name=f"scent-worker-{job.index}",
                                  daemon=False) for job in jobs]

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def alive(self) -> bool:
        return any(p.is_alive() for p in self.procs)

    def drain(self, handle: Callable[[str, Any], None], timeout: float = 0.5) -> None:
        """Pass queued events to `handle` until the queue is empty (waiting up to `timeout` for the first)."""
        try:
            handle(*self.events.get(timeout=timeout))
            while True:
                handle(*self.events.get_nowait())
        except queue_mod.Empty:
            pass

    def run(self, handle: Callable[[str, Any], None]) -> list[int]:
        """Until every worker exits; returns their exit codes."""
        while self.alive():
            self.drain(handle)
        self.drain(handle, timeout=0.1)
        for p in self.procs:
            p.join()
        return [p.exitcode for p in self.procs]

    def stop(self, handle: Callable[[str, Any], None]) -> None:
        """After Ctrl-C: the children got it from the terminal too; give them time to record their
        trials as failed, then signal the ones that did not notice (e.g. Ctrl-C sent to this process only)."""
        deadline = time.time() + CHILD_STOP_GRACE_S
        while self.alive() and time.time() < deadline:
            self.drain(handle, timeout=0.2)
        for p in self.procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)
        deadline = time.time() + CHILD_KILL_AFTER_S
        while self.alive() and time.time() < deadline:
            self.drain(handle, timeout=0.2)
        for p in self.procs:
            if p.is_alive():
                p.terminate()  # its trial is left to the heartbeat: failed and retried by the next worker
            p.join()
        self.drain(handle, timeout=0.1)
