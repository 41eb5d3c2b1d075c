"""Units and names every layer above shares: one definition each (docs/internals.md, "Trial records")."""

from __future__ import annotations

from scent_search.units import BREAKDOWN_KEYS, COMPONENTS, GIB, STATE, gib  # noqa: F401 (re-exported)

# The constraint: Optuna 5 stores `trial.set_constraint(key, v)` as system attr "constraints:<key>";
# optuna-dashboard 0.21 reads only the legacy list attr "constraints". Feasible iff every value <= 0.
CONSTRAINT_NAME = "peak_memory"  # peak_gib - budget_gib
LEGACY_CONSTRAINTS_KEY = "constraints"
CONSTRAINT_PREFIX = LEGACY_CONSTRAINTS_KEY + ":"

# A study's objectives (the spec's `objectives`): name -> (Optuna direction, the metric name Optuna stores and
# optuna-dashboard shows). A study optimises ["psnr"] or ["psnr", "peak_memory"], in that order.
OBJECTIVES = {"psnr": ("maximize", "PSNR ×4 (dB)"), "peak_memory": ("minimize", "peak memory (GiB)")}

# Study user attrs: the spec the study was made from (StudySpec.to_dict(), password masked) and the device
# kind of the run that made it.
SPEC_ATTR, DEVICE_ATTR = "spec", "device"
# Study system attr: the feasibility map of the study's space (records/feasibility.py).
MAP_ATTR = "feasibility_map"

# A trial's status in every view. Every finished trial has exactly one; running ones are not plotted.
FEASIBLE, INFEASIBLE, PRUNED, FAILED, RUNNING = "feasible", "infeasible", "pruned", "failed", "running"
STATUSES = (FEASIBLE, INFEASIBLE, PRUNED, FAILED, RUNNING)

# fail_reason values that are no result about the config: the trial does not count toward the target and
# is retried (dead worker) or replaced (Ctrl-C, an unexpected error).
INTERRUPTED, ERROR = "interrupted", "error"
NOT_A_RESULT = (INTERRUPTED, ERROR)
