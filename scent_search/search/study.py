"""Study setup and the worker loop.

- `open_study(spec, url)`: create or resume the study (the spec's objectives as directions and metric
  names, its sampler/pruner); a resumed study must have been made from the same objectives, budget,
  target, training, model and space.
- `Runner.run()`: the worker loop. Each turn, under the study's slot lock: fail stale trials (their
  retries are enqueued), count, and ask for a trial only while finished + running < target. So
  `--n-trials` is the study's total, shared by every worker on every machine, and never overshot.

A trial counts toward the target when it is COMPLETE (feasible or not), PRUNED, or FAIL with a
training `fail_reason` (oom, nan: a result about that config). Trials failed by a dead worker's
heartbeat, by Ctrl-C (`interrupted`) or by an unexpected error (`error`) do not count: they are
retried or replaced. A repeat (another training seed of a config already explored, search/repeats.py)
never counts: once the target is reached, the Runner's `after_target` hook (the repeat phase) enqueues them
and the worker runs them before it stops.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from scent_search import compat
from scent_search.errors import ConfigError, TrainingFailed
from scent_search.records import DEVICE_ATTR, ERROR, INTERRUPTED, SPEC_ATTR, TrialRecord, safe_url, storage_errors
from scent_search.search import repeats
from scent_search.search.spec import StudySpec
from scent_search.search.storage import slot_lock

# Spec keys a resumed study must share with the stored one: otherwise its trials are not comparable.
COMPARABLE_KEYS = ("budget_gib", "target", "train", "model", "space", "data")


@dataclass(frozen=True)
class Counts:
    finished: int  # counting toward the target
    running: int
    waiting: int
    total: int


def count_trials(study: optuna.Study) -> Counts:
    return counts_of(study.get_trials(deepcopy=False))


def counts_of(trials: list[FrozenTrial]) -> Counts:
    return Counts(finished=sum(TrialRecord.from_trial(t).counts_toward_target for t in trials),
                  running=sum(t.state == TrialState.RUNNING for t in trials),
                  waiting=sum(t.state == TrialState.WAITING for t in trials), total=len(trials))


def first_difference(stored: Any, new: Any, key: str) -> str | None:
    if isinstance(stored, dict) and isinstance(new, dict):
        for k in sorted(set(stored) | set(new)):
            diff = first_difference(stored.get(k), new.get(k), f"{key}.{k}")
            if diff:
                return diff
        return None
    norm = (lambda v: [norm(x) for x in v] if isinstance(v, (list, tuple)) else v)
    return None if norm(stored) == norm(new) else key


def check_resumable(study: optuna.Study, spec: StudySpec) -> None:
    """Refuse to add trials to a study made from a different budget, shape, training, model or space."""
    stored = study.user_attrs.get(SPEC_ATTR)
    if not isinstance(stored, dict):
        return
    new = spec.to_dict()
    for key in COMPARABLE_KEYS:
        diff = first_difference(stored.get(key), new.get(key), key)
        if diff:
            raise ConfigError(diff, f"differs from the stored study {spec.name!r} (stored: "
                              f"{_lookup(stored, diff)!r}, now: {_lookup(new, diff)!r}); its trials would not be "
                              "comparable: use another --study-name, or the spec it was made from", spec.source)


def _lookup(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def open_study(spec: StudySpec, storage: RDBStorage, url: str, *, seed: int | None, device_kind: str,
               check: bool = True) -> optuna.Study:
    """Create the study, or load it (resume). `seed` seeds this worker's sampler."""
    sampler = spec.sampler.build(seed)
    pruner = spec.pruner.build()
    with storage_errors(url), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner,
                                    directions=spec.directions, load_if_exists=True)
        directions = [d.name.lower() for d in study.directions]
        if directions != spec.directions:
            raise ConfigError("objectives", f"study {spec.name!r} in {safe_url(url)} optimises {directions}, the spec "
                              f"{spec.directions} ({list(spec.objectives)}): a study cannot switch modes; use "
                              "another --study-name", spec.source)
        if study.metric_names != spec.metric_names:  # new, or made before studies named their metrics
            study.set_metric_names(spec.metric_names)
        if check:
            check_resumable(study, spec)
            repeats.check_resumable(study, spec)  # [repeats] may grow on resume, not shrink
        if SPEC_ATTR not in study.user_attrs:
            stored = spec.to_dict()
            stored["storage"] = safe_url(url)  # the dashboard shows study attrs: never a password
            study.set_user_attr(SPEC_ATTR, stored)
            study.set_user_attr(DEVICE_ATTR, device_kind)
    return study


# --------------------------------------------------------------------------------------------------
# The worker loop


TrialSink = Callable[[FrozenTrial], None]


class Interrupted(Exception):
    """Ctrl-C stopped the worker; the trial it was running is marked FAIL (`interrupted`)."""


class Runner:
    """Runs trials of `study` with `objective` until the exploration is over (the study has `target` finished
    trials, or nothing is left to search: `exhausted`), then the trials `after_target(study)` adds (called under
    the slot lock from then on; e.g. the repeats), until `deadline` (time.time()) passes, or Ctrl-C. `on_trial`
    gets each trial this worker finished.

    `exhausted(trials)` says whether the space has nothing left for a new trial; while other workers' trials
    run the worker waits instead (one of them may die and be retried). `on_ask(trial)` runs on each new
    trial under the slot lock (e.g. suggest its config there, so that two workers cannot draw the same one).
    """

    def __init__(self, study: optuna.Study, objective: Callable[[optuna.Trial], float], *, url: str, target: int,
                 deadline: float | None = None, on_trial: TrialSink | None = None, poll_s: float = 2.0,
                 after_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
                 on_wait: Callable[[Counts], None] | None = None,
                 after_target: Callable[[optuna.Study], Any] | None = None,
                 exhausted: Callable[[list[FrozenTrial]], bool] | None = None,
                 on_ask: Callable[[optuna.Trial], Any] | None = None) -> None:
        self.study, self.objective, self.url = study, objective, url
        self.target, self.deadline, self.poll_s = target, deadline, poll_s
        self.on_trial = on_trial or (lambda t: None)
        self.after_trial = after_trial
        self.on_wait = on_wait
        self.after_target = after_target  # e.g. repeats.RepeatPhase: trials the study runs once it has its target
        self.exhausted = exhausted
        self.on_ask = on_ask
        self.ran: list[int] = []  # trial numbers this worker finished

    def _rdb(self) -> RDBStorage:
        return compat.rdb_storage(compat.study_storage(self.study))

    def _next_trial(self) -> optuna.Trial | None | bool:
        """Under the slot lock: a new trial, None (wait for others' running trials), False (done)."""
        with storage_errors(self.url), slot_lock(self._rdb(), self.study.study_name):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)  # dead workers' trials -> FAIL, retries enqueued
            trials = self.study.get_trials(deepcopy=False)
            counts = counts_of(trials)
            if self.deadline is not None and time.time() >= self.deadline:
                return False
            left = counts.waiting > 0 or self.exhausted is None or not self.exhausted(trials)
            if counts.finished >= self.target or (not left and not counts.running):
                # The exploration is over (its target reached, or nothing left to search and no running trial
                # that could be retried): only the after-target trials are left (enqueued, waiting, running).
                extra = self.after_target(self.study) if self.after_target is not None else None
                if not extra:
                    return False
                if not extra.waiting:  # running elsewhere: wait (a dead worker's trial is retried here)
                    return None
            elif counts.finished + counts.running >= self.target or not left:
                if self.on_wait:
                    self.on_wait(counts)
                return None
            with warnings.catch_warnings():
                # "Heartbeat ... supposed to be used with Study.optimize": _run_trial runs the same heartbeat.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = self.study.ask()  # pops a waiting retry first, if there is one
            if self.on_ask is not None:
                try:
                    self.on_ask(trial)
                except Exception as e:  # not left RUNNING: without a heartbeat yet, nothing would ever fail it
                    self._tell(trial, None, TrialState.FAIL, reason=ERROR, error=e)
                    raise
            return trial

    def run(self) -> list[int]:
        while True:
            guard = _SigintGuard()
            with guard:  # a Ctrl-C between ask() and the heartbeat would leave the new trial RUNNING forever
                trial = self._next_trial()
            if guard.fired:
                if isinstance(trial, optuna.Trial):
                    self._tell(trial, None, TrialState.FAIL, reason=INTERRUPTED)
                raise Interrupted("interrupted between trials")
            if trial is False:
                return self.ran
            if trial is None:
                time.sleep(self.poll_s)
                continue
            frozen = self._run_trial(trial)
            self.ran.append(frozen.number)
            if self.after_trial is not None:
                with storage_errors(self.url), slot_lock(self._rdb(), self.study.study_name):
                    self.after_trial(self.study, frozen)
            self.on_trial(frozen)

    def _run_trial(self, trial: optuna.Trial) -> FrozenTrial:
        """Run the objective with the heartbeat on, then tell the outcome. Ctrl-C marks the trial FAIL
        (`interrupted`) and raises Interrupted; an unexpected error marks it FAIL (`error`) and propagates."""
        value, state, error, reason = None, TrialState.FAIL, None, None
        try:
            with compat.heartbeat(self.study, trial):
                try:
                    value = self.objective(trial)
                    state = TrialState.COMPLETE
                except optuna.TrialPruned:
                    state = TrialState.PRUNED
                except TrainingFailed:
                    state = TrialState.FAIL  # the objective recorded fail_reason; the study goes on
                except KeyboardInterrupt:
                    reason = INTERRUPTED
                except Exception as e:  # a bug or a storage failure: record it, then stop this worker
                    error, reason = e, ERROR
        except KeyboardInterrupt:  # a second Ctrl-C while the heartbeat thread stopped
            reason = INTERRUPTED
        guard = _SigintGuard()
        with guard:
            self._tell(trial, value, state, reason=reason, error=error)
        if reason == INTERRUPTED or guard.fired:
            raise Interrupted(f"interrupted during trial {trial.number}")
        if error is not None:
            raise error
        return compat.stored_trial(self.study, trial)

    def _tell(self, trial: optuna.Trial, value: float | None, state: TrialState, *, reason: str | None = None,
              error: BaseException | None = None) -> None:
        with storage_errors(self.url):
            if reason is not None:
                state = TrialState.FAIL
            message = f"{type(error).__name__}: {error}"[:500] if error is not None else None
            TrialRecord(fail_reason=reason, fail_message=message).write(trial)
            self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)


class _SigintGuard:
    """Defers Ctrl-C (main thread only) while a short storage step runs; `fired` says one came."""

    def __init__(self) -> None:
        self.fired = False
        self.old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.fired = True

    def __enter__(self) -> "_SigintGuard":
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
