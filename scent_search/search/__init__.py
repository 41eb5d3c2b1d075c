"""The search service (DESIGN.md section 5): Optuna studies of decoder designs under a peak-memory budget.

Public surface:
- `load_spec(path) -> StudySpec` and its tables (search/spec.py), with the sampler and pruner registries.
- `prepare_run(spec_path, storage=, study_name=, n_trials=, timeout=, device=, workers=, memory_budget=,
  seed=) -> RunPlan`: every check, before anything is created; `run_study(plan, reporter, after_trial=)
  -> RunOutcome`.
- `Objective`: one trial (suggest, peak, constraint, train or not); `Runner`: the worker loop.
- `open_storage(url, heartbeat)`, `RetryStaleTrial`: storage with heartbeats and clean retries.

Reading results back (`studies`, `best`, the run's summary) is the report's; the trial record, the knobs
and read-only storage opening are the record layer's (`scent_search.records`).
"""

from scent_search.search.objective import Objective
from scent_search.search.probe import Peak, PeakProbe
from scent_search.search.run import (RunOutcome, RunPlan, SilentReporter, default_spec_path, packaged_default_spec,
                                     prepare_run, run_study)
from scent_search.search.space import TrialConfig, suggest
from scent_search.search.spec import (PRUNERS, SAMPLERS, HeartbeatSpec, PrunerSpec, SamplerSpec, SearchSpace,
                                      StudySpec, load_spec)
from scent_search.search.storage import RetryStaleTrial, open_storage, resolve_url
from scent_search.search.study import Runner, count_trials

__all__ = ["HeartbeatSpec", "Objective", "Peak", "PeakProbe", "PRUNERS", "PrunerSpec", "RetryStaleTrial",
           "RunOutcome", "RunPlan", "Runner", "SAMPLERS", "SamplerSpec", "SearchSpace", "SilentReporter",
           "StudySpec", "TrialConfig", "count_trials", "default_spec_path", "load_spec", "open_storage",
           "packaged_default_spec", "prepare_run", "resolve_url", "run_study", "suggest"]
