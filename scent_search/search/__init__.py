"""The search service (DESIGN.md section 5): Optuna studies of decoder designs under a peak-memory budget.

Public surface:
- `prepare_run(spec_path, storage=, study_name=, n_trials=, timeout=, device=, workers=, memory_budget=,
  seed=) -> RunPlan`: every check, before anything runs; `run_study(plan, reporter) -> RunOutcome`.
- `Objective`: one trial (suggest, peak, constraint, train or not); `Runner`: the worker loop.
- `open_storage(url, heartbeat)`, `RetryStaleTrial`: storage with heartbeats and clean retries.
- `list_studies(url)`, `best_of(url, name)`, `study_table(study)`: results for the CLI.
"""

from scent_search.search.objective import CONSTRAINT_NAME, Objective
from scent_search.search.probe import Peak, PeakProbe
from scent_search.search.results import best_of, list_studies, study_table
from scent_search.search.run import (RunOutcome, RunPlan, default_spec_path, packaged_default_spec, prepare_run,
                                     run_study)
from scent_search.search.space import PRUNERS, SAMPLERS, TrialConfig, suggest
from scent_search.search.storage import RetryStaleTrial, open_storage, resolve_url, safe_url
from scent_search.search.study import Runner, count_trials, counts_toward_target

__all__ = ["CONSTRAINT_NAME", "Objective", "Peak", "PeakProbe", "PRUNERS", "RetryStaleTrial", "RunOutcome",
           "RunPlan", "Runner", "SAMPLERS", "TrialConfig", "best_of", "count_trials", "counts_toward_target",
           "default_spec_path", "list_studies", "open_storage", "packaged_default_spec", "prepare_run",
           "resolve_url", "run_study", "safe_url", "study_table", "suggest"]
