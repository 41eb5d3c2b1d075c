"""The repeat phase: a study measures its own seed noise (docs/search.md, "Repeats").

With `[repeats] top_k = K, seeds = S`, once the exploration has its `n_trials` finished trials, the K
trained feasible configs with the highest PSNR are trained again with S further training seeds each:
`[train] seed + 1`, ..., `+ S` (the model's initialisation and the training data stream follow it; the
validation crops stay fixed). Each repeat is a trial of its own, enqueued with its config's params and the
identity attrs `repeat_of` (the original trial) and `train_seed`:

- it does not count toward `n_trials` (`TrialRecord.counts_toward_target`): n_trials stays the number of
  configs explored, and the study ends when its repeats are finished too;
- the objective trains it with its `train_seed`, never copies a twin trained with another seed, reports no
  intermediate PSNR and is never pruned (it ran to completion once already);
- `RepeatPhase` runs in the worker loop under the study's slot lock and enqueues only the repeats that are
  neither waiting, running nor a result yet: idempotent on resume, and several workers on PostgreSQL
  enqueue each once. A resumed finished study with a larger top_k or seeds adds only what is missing.

Configs are ranked by their original trial's PSNR (at the spec's seed), not by a mean that the repeats
themselves would move: the set to repeat depends on the exploration only. The means, the pooled noise and
what is below it are the record layer's (`records.noise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import optuna
from optuna.trial import TrialState

from scent_search.errors import ConfigError
from scent_search.records import FEASIBLE, SPEC_ATTR, TrialRecord, config_key
from scent_search.search.spec import RepeatsSpec, StudySpec

_PENDING = (TrialState.WAITING.name, TrialState.RUNNING.name)


@dataclass(frozen=True)
class Repeat:
    """One further training of a config: its params, the original trial, the training seed."""

    params: Mapping[str, Any]
    original: int
    seed: int


@dataclass(frozen=True)
class Pending:
    """The repeat phase's trials still to finish."""

    waiting: int
    running: int

    def __bool__(self) -> bool:
        return self.waiting + self.running > 0


def top_configs(spec: StudySpec, records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The originals of the `top_k` trained feasible configs with the highest PSNR (ties: smaller peak, then
    the earlier trial): explored trials trained to the end at the spec's seed, one per config."""
    seen: dict[tuple, TrialRecord] = {}
    for r in sorted(records, key=lambda r: r.number):
        if r.status == FEASIBLE and r.psnr is not None and r.repeat_of is None and r.duplicate_of is None \
                and r.train_seed in (None, spec.train.seed):
            seen.setdefault(config_key(r.params), r)
    ranked = sorted(seen.values(), key=lambda r: (-r.psnr, r.peak_gib or 0.0, r.number))
    return ranked[:spec.repeats.top_k]


def missing_repeats(spec: StudySpec, records: Sequence[TrialRecord]) -> list[Repeat]:
    """The repeats the spec asks for that are neither waiting, running nor a result (a repeat that failed
    for no reason of its own, e.g. Ctrl-C, is asked again)."""
    if not spec.repeats.on:
        return []
    there = {(r.repeat_of, r.train_seed) for r in records
             if r.repeat_of is not None and (r.state in _PENDING or r.is_result)}
    return [Repeat(params=dict(o.params), original=o.number, seed=spec.train.seed + j)
            for o in top_configs(spec, records) for j in range(1, spec.repeats.seeds + 1)
            if (o.number, spec.train.seed + j) not in there]


def pending(records: Sequence[TrialRecord]) -> Pending:
    repeats = [r for r in records if r.repeat_of is not None]
    return Pending(waiting=sum(r.state == TrialState.WAITING.name for r in repeats),
                   running=sum(r.state == TrialState.RUNNING.name for r in repeats))


class RepeatPhase:
    """The Runner's after-target hook: called under the slot lock once the exploration has its target,
    it enqueues the missing repeats and returns what of the phase is left (falsy: nothing; the study is done).
    `on_message` hears what was enqueued."""

    def __init__(self, spec: StudySpec, on_message: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.on_message = on_message

    def __call__(self, study: optuna.Study) -> Pending:
        records = [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]
        missing = missing_repeats(self.spec, records)
        for rep in missing:
            study.enqueue_trial(dict(rep.params), user_attrs=TrialRecord(repeat_of=rep.original,
                                                                         train_seed=rep.seed).to_attrs(),
                                skip_if_exists=False)
        if missing and self.on_message is not None:
            self.on_message(self.announce(missing))
        left = pending(records)
        return Pending(waiting=left.waiting + len(missing), running=left.running)

    def announce(self, missing: Sequence[Repeat]) -> str:
        originals = sorted({r.original for r in missing})
        seeds = sorted({r.seed for r in missing})
        k, n = self.spec.repeats.top_k, len(missing)
        return (f"Repeats: {n} more training{'s' if n != 1 else ''} of the top {k} config(s) by PSNR "
                f"({', '.join(f'#{o}' for o in originals)}) with train seed(s) {', '.join(map(str, seeds))}, "
                "to measure the seed noise; they do not count toward n_trials")


def check_resumable(study: optuna.Study, spec: StudySpec) -> None:
    """A resumed study may raise `[repeats]` top_k or seeds (only the missing repeats are added; the stored
    spec is updated), never lower them: its repeats stay, and a spec that says fewer would misdescribe it."""
    stored = study.user_attrs.get(SPEC_ATTR)
    if not isinstance(stored, dict):
        return
    old = stored.get("repeats") if isinstance(stored.get("repeats"), dict) else {}
    try:
        was = RepeatsSpec(**{k: old[k] for k in ("top_k", "seeds") if isinstance(old.get(k), int)})
    except (ConfigError, TypeError):
        was = RepeatsSpec()
    now = spec.repeats
    if was.on:
        for key in ("top_k", "seeds"):
            if getattr(now, key) < getattr(was, key):
                raise ConfigError(f"repeats.{key}", f"{getattr(now, key)} is below the stored study "
                                  f"{spec.name!r}'s {getattr(was, key)}: a study keeps its repeats, so [repeats] "
                                  "may grow on resume but not shrink; use the spec it was made from",
                                  spec.source)
    if now.to_dict() != old and (now.on or was.on):
        study.set_user_attr(SPEC_ATTR, {**stored, "repeats": now.to_dict()})
