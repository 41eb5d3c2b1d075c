"""The feasibility map of a study's space, and the sampler that draws only feasible configs not yet tried.

The space is finite and discrete: a *config* is one choice per searched knob of `records.KNOBS`, opt-in
levers (precision, checkpointing, spatial_bias) included when they are searched, since they change the
peak. `lr`, a continuous range, is not part of a config: it changes no peak and cannot be enumerated; the
sampler still draws it, and with `lr` searched each config is trained once, at the lr drawn for it.

- `map_knobs(spec)`, `configs(spec)`: the space, enumerated once for the map, the sampler and exhaustion.
- `predict_map(spec, probe)`: every config's peak (GiB, the constraint's figure) through the probe; the
  profile cache makes a second map, or a resumed study, re-predict nothing.
- `FeasibleSpace(fmap)`: which configs the study's trials hold, which feasible ones are left, and what
  to say when none is.
- `FeasibleSampler(inner, space, distributions, seed)`: wraps the spec's sampler (TPE, random) so that a
  new trial only ever gets a feasible config that no trial holds.
- `map_study(...)`: `scent-search map` as a library call.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from scent_search import compat
from scent_search.errors import ConfigError
from scent_search.records import KNOBS, FeasibilityMap, MapCell, TrialRecord, storage_errors
from scent_search.records.feasibility import MEASURED, PREDICTED
from scent_search.search.probe import Probe
from scent_search.search.space import trial_config
from scent_search.search.spec import StudySpec, default_spec_path, load_spec

# -- the space --------------------------------------------------------------------------------------


def searched(spec: StudySpec) -> dict[str, BaseDistribution]:
    """Every searched knob's Optuna distribution, in KNOBS order (lr included)."""
    return {name: knob.distribution(spec.space[name]) for name, knob in KNOBS.items()
            if spec.space[name] is not None}


def map_knobs(spec: StudySpec) -> tuple[str, ...]:
    """The knobs a config is made of: every searched one but a continuous range (lr)."""
    return tuple(name for name in searched(spec) if not KNOBS[name].log_range)


def configs(spec: StudySpec) -> list[dict[str, Any]]:
    """Every config of the space, as Optuna params (knob -> choice in its stored form), in a fixed order."""
    dists = searched(spec)
    knobs = map_knobs(spec)
    return [dict(zip(knobs, values)) for values in itertools.product(*(dists[k].choices for k in knobs))]


def predict_map(spec: StudySpec, probe: Probe, on_config: Callable[[int, int], None] | None = None
                ) -> FeasibilityMap:
    """The peak of every config at the spec's target step. `on_config(done, total)` after each one."""
    all_configs = configs(spec)
    cells, backends = [], set()
    for i, params in enumerate(all_configs):
        cfg = trial_config(spec, params)
        peak = probe(cfg.model, cfg.shape)
        cells.append(MapCell(params, peak.gib, MEASURED if peak.source == MEASURED else PREDICTED))
        backends.add(peak.backend)
        if on_config is not None:
            on_config(i + 1, len(all_configs))
    backend = backends.pop() if len(backends) == 1 else None
    return FeasibilityMap(map_knobs(spec), tuple(cells), spec.budget_gib, backend)


# -- what the trials hold, and what is left ---------------------------------------------------------


def held_params(t: FrozenTrial) -> dict[str, Any] | None:
    """The params of the config a trial holds: a result (COMPLETE, PRUNED, FAIL with a training fail_reason),
    or running or waiting (a retry, an enqueued trial). A trial failed without a result (Ctrl-C, an error,
    a dead worker's) holds nothing: its config is free again (or its retry holds it)."""
    if t.state in (TrialState.RUNNING, TrialState.WAITING):
        return {**compat.enqueued_params(t), **t.params}
    return dict(t.params) if TrialRecord.from_trial(t).is_result else None


def same_config(spec: StudySpec) -> Callable[[Mapping[str, Any]], Hashable | None]:
    """Params -> what they build: configs that build the same model at the same step are one config.

    `ModelConfig.canonical()` decides (with one scale, sharing changes nothing; with one scale and one decoder
    layer there is no FeedForward, so mult changes nothing): such configs train to the same PSNR, so a study
    tries one of them. None for params that lack one of the map's knobs.
    """
    knobs = map_knobs(spec)

    def identity(params: Mapping[str, Any]) -> Hashable | None:
        if not all(k in params for k in knobs):
            return None
        cfg = trial_config(spec, {k: params[k] for k in knobs})
        return cfg.model.canonical(), cfg.shape

    return identity


class FeasibleSpace:
    """The map's feasible configs, against the trials of a study (all workers': read from the storage).

    `identity(params)` says which configs are the same (default: the map's cells, one per choice of every
    knob; `same_config(spec)` also merges configs that build the same model): a config is taken when a trial
    holds any config with its identity, and only one representative of each is offered.
    """

    def __init__(self, fmap: FeasibilityMap,
                 identity: Callable[[Mapping[str, Any]], Hashable | None] | None = None) -> None:
        self.map = fmap
        self.identity = identity or fmap.key
        self._feasible: dict[Hashable, dict[str, Any]] = {}
        for c in fmap.feasible:  # the first cell of each identity, in the map's order
            self._feasible.setdefault(self.identity(c.params), dict(c.params))
        self._finished: dict[int, Hashable | None] = {}  # trial number -> what it holds, once finished for good

    def _held(self, t: FrozenTrial) -> Hashable | None:
        if t.number in self._finished:
            return self._finished[t.number]
        params = held_params(t)
        key = None if params is None else self.identity(params)
        if t.state.is_finished():  # a finished trial never changes: read its record once
            self._finished[t.number] = key
        return key

    def taken(self, trials: Sequence[FrozenTrial]) -> set[Hashable]:
        return {k for k in map(self._held, trials) if k is not None}

    def untried(self, trials: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
        """Feasible configs no trial holds, in the map's order."""
        taken = self.taken(trials)
        return [p for k, p in self._feasible.items() if k not in taken]

    def ended(self, trials: Sequence[FrozenTrial], finished: int, target: int) -> str:
        """What to say when nothing is left to search."""
        m = self.map
        over = len(m.infeasible)
        budget = f"{m.budget_gib:g} GiB"
        end = f"the study ends at {finished} of {target} trials"
        if not m.feasible:
            smallest = f" (the smallest needs {min(c.peak_gib for c in m.cells):.3g} GiB)" if m.cells else ""
            return (f"None of the {len(m.cells)} configs of the space fits {budget}{smallest}: nothing to search; "
                    f"{end}")
        more = f" ({over} more exceed {budget})" if over else ""
        same = len(m.feasible) - len(self._feasible)
        alike = f", {same} of them the same model as another one" if same else ""
        return (f"All {len(m.feasible)} feasible configs of the space have been tried{alike}{more}: nothing left "
                f"to search; {end}")


# -- the sampler ------------------------------------------------------------------------------------


class FeasibleSampler(optuna.samplers.BaseSampler):
    """Draws a whole config per trial (`sample_relative`), only ever one that is feasible in the map and held
    by no trial of the study.

    The inner sampler proposes: up to ATTEMPTS proposals are drawn and the first allowed one is taken. TPE
    proposes the argmax of its acquisition, so once its favourite is tried it repeats it; drawing stops at
    the first repeat, and the trial gets the allowed config nearest the inner's proposal (fewest knobs
    changed; ties at random), which keeps TPE's guidance where a uniform draw would drop it. `lr` comes from
    the proposal. A trial with stored or enqueued params keeps them (Optuna uses those first; an enqueued
    trial that fixes some knobs gets an allowed config that agrees with them).
    """

    ATTEMPTS = 8

    def __init__(self, inner: optuna.samplers.BaseSampler, space: FeasibleSpace,
                 distributions: Mapping[str, BaseDistribution], seed: int | None = None) -> None:
        self.inner = inner
        self.space = space
        self.distributions = dict(distributions)
        self._rng = random.Random(seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space or trial.params:
            return {}
        fixed = compat.enqueued_params(trial)
        allowed = [c for c in self.space.untried(study.get_trials(deepcopy=False))
                   if all(c.get(k, v) == v for k, v in fixed.items())]
        if not allowed:  # nothing left (the runner checks before it asks): the inner sampler decides
            return {}
        key = self.space.identity
        by_key = {key(c): c for c in allowed}
        first, seen = None, set()
        for _ in range(self.ATTEMPTS):
            proposal = self._propose(study, trial)
            k = key(proposal)
            if k in by_key:
                return {**proposal, **by_key[k]}
            if first is None:
                first = proposal
            if k in seen:
                break
            seen.add(k)
        knobs = self.space.map.knobs
        distance = {key(c): sum(c[n] != first[n] for n in knobs) for c in allowed}
        nearest = min(distance.values())
        pick = self._rng.choice([c for c in allowed if distance[key(c)] == nearest])
        return {**first, **pick}

    def _propose(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """One full set of params from the inner sampler: its relative sample, then independent ones."""
        relative = {k: d for k, d in self.inner.infer_relative_search_space(study, trial).items()
                    if self.distributions.get(k) == d}
        params = dict(self.inner.sample_relative(study, trial, relative)) if relative else {}
        for name, dist in self.distributions.items():
            if name not in params:
                params[name] = self.inner.sample_independent(study, trial, name, dist)
        return params

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self._rng = random.Random()


# -- `scent-search map` -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MapResult:
    """A study spec's map, with measured cells from its stored study where there is a comparable one."""

    map: FeasibilityMap
    spec: StudySpec
    url: str  # password masked
    new_predictions: int  # profiles this call added to the cache (0: all cached)
    seconds: float
    note: str | None = None  # why stored measurements are not shown, if they are not


# Spec keys that decide a peak: a stored study's measurements join the map only where these agree.
_PEAK_KEYS = ("target", "model", "space")


def map_study(spec_path: str | Path | None = None, *, storage: str | None = None,
              memory_budget: float | None = None, spec: StudySpec | None = None, backend: str | None = None,
              on_config: Callable[[int, int], None] | None = None) -> MapResult:
    """Predict the peak of every config of the spec's space (the profile cache in the study's database:
    cached ones cost nothing) and show measured peaks of the stored study, if it exists and has them.
    `backend`: the processor backend to predict (mamba_ssm | torch); None: what the study's trials predict
    here (mamba_ssm where it imports, else torch)."""
    from scent_search.records import SPEC_ATTR, safe_url
    from scent_search.search.probe import PeakProbe
    from scent_search.search.storage import open_storage, resolve_url, schema_lock
    from scent_search.search.study import first_difference

    if spec is None:
        spec = load_spec(spec_path or default_spec_path())
    if memory_budget is not None:
        try:
            spec = spec.replace(budget_gib=memory_budget)
        except ConfigError as e:
            raise ConfigError("--memory-budget", e.message) from e
    url = resolve_url(spec, storage)
    rdb = open_storage(url)
    with schema_lock(url):
        probe = PeakProbe(rdb.engine, "predict", backend=backend)
    t0, before = time.perf_counter(), probe.cache.count()
    fmap = predict_map(spec, probe, on_config)
    new, seconds = probe.cache.count() - before, time.perf_counter() - t0
    note = None
    with storage_errors(url):
        if spec.name in optuna.get_all_study_names(rdb):
            study = optuna.load_study(study_name=spec.name, storage=rdb)
            stored, now = study.user_attrs.get(SPEC_ATTR) or {}, spec.to_dict()
            diff = next((d for k in _PEAK_KEYS if (d := first_difference(stored.get(k), now.get(k), k))), None)
            if diff is None:
                fmap = fmap.with_measured(TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False))
            else:
                note = (f"study {spec.name!r} in {safe_url(url)} was made with another {diff}: its measured peaks "
                        "are not shown")
    return MapResult(fmap, spec, safe_url(url), new, seconds, note)


__all__ = ["FeasibleSampler", "FeasibleSpace", "MapResult", "configs", "held_params", "map_knobs", "map_study",
           "predict_map", "searched"]
