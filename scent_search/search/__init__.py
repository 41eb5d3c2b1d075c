"""The search service (docs/design.md, "The search service"): Optuna studies of decoder designs under a peak-memory budget.

Public surface:
- `load_spec(path) -> StudySpec` and its tables (search/spec.py), with the sampler and pruner registries.
- `prepare_run(spec_path, storage=, study_name=, n_trials=, timeout=, device=, workers=, memory_budget=,
  seed=) -> RunPlan`: every check, before anything is created; `run_study(plan, reporter, after_trial=)
  -> RunOutcome`.
- `map_study(spec_path, storage=, memory_budget=) -> MapResult`: the feasibility map (`scent-search map`);
  `predict_map`, `configs`, `FeasibleSpace`, `FeasibleSampler`: the space enumerated, its map, and the
  sampler that draws only feasible configs not yet tried (search/feasibility.py).
- `Objective`: one trial (suggest, peak, constraint, train or not); `Runner`: the worker loop.
- `open_storage(url, heartbeat)`, `RetryStaleTrial`: storage with heartbeats and clean retries.

Reading results back (`studies`, `best`, the run's summary) is the report's; the trial record, the knobs
and read-only storage opening are the record layer's (`scent_search.records`).
"""

from scent_search.search.feasibility import (FeasibleSampler, FeasibleSpace, MapResult, configs, map_study,
                                             predict_map)
from scent_search.search.objective import Objective
from scent_search.search.probe import Peak, PeakProbe
from scent_search.search.run import RunOutcome, RunPlan, SilentReporter, prepare_run, run_study
from scent_search.search.space import TrialConfig, suggest, trial_config
from scent_search.search.spec import (PRUNERS, SAMPLERS, HeartbeatSpec, PrunerSpec, SamplerSpec, SearchSpace,
                                      StudySpec, default_spec_path, load_spec, packaged_default_spec)
from scent_search.search.storage import RetryStaleTrial, open_storage, resolve_url
from scent_search.search.study import Runner, count_trials

__all__ = ["FeasibleSampler", "FeasibleSpace", "HeartbeatSpec", "MapResult", "Objective", "Peak", "PeakProbe",
           "PRUNERS", "PrunerSpec", "RetryStaleTrial", "RunOutcome", "RunPlan", "Runner", "SAMPLERS", "SamplerSpec",
           "SearchSpace", "SilentReporter", "StudySpec", "TrialConfig", "configs", "count_trials",
           "default_spec_path", "load_spec", "map_study", "open_storage", "packaged_default_spec", "predict_map",
           "prepare_run", "resolve_url", "run_study", "suggest", "trial_config"]
