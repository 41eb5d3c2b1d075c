"""Units and names every layer above shares: one definition each (docs/internals.md, "Trial records")."""

from __future__ import annotations

GIB = 2**30  # bytes per GiB: the unit of budget_gib and peak_gib


def gib(nbytes: int | float) -> float:
    return nbytes / GIB


# The memory breakdown (DESIGN.md section 4): the model's parts that hold activations, named as the model
# names its modules, then the training state. A breakdown holds every name and sums to the peak.
COMPONENTS = ("encoder", "processor", "modulation_ca", "bandwidth_lins", "modulation_lins", "hv_lins", "skips")
STATE = ("parameters", "gradients", "optimizer_state", "other")
BREAKDOWN_KEYS = COMPONENTS + STATE

# The constraint: Optuna 5 stores `trial.set_constraint(key, v)` as system attr "constraints:<key>";
# optuna-dashboard 0.21 reads only the legacy list attr "constraints". Feasible iff every value <= 0.
CONSTRAINT_NAME = "peak_memory"  # peak_gib - budget_gib
LEGACY_CONSTRAINTS_KEY = "constraints"
CONSTRAINT_PREFIX = LEGACY_CONSTRAINTS_KEY + ":"

# Study user attrs: the spec the study was made from (StudySpec.to_dict(), password masked) and the device
# kind of the run that made it.
SPEC_ATTR, DEVICE_ATTR = "spec", "device"

# A trial's status in every view. Every finished trial has exactly one; running ones are not plotted.
FEASIBLE, INFEASIBLE, PRUNED, FAILED, RUNNING = "feasible", "infeasible", "pruned", "failed", "running"
STATUSES = (FEASIBLE, INFEASIBLE, PRUNED, FAILED, RUNNING)

# fail_reason values that are no result about the config: the trial does not count toward the target and
# is retried (dead worker) or replaced (Ctrl-C, an unexpected error).
INTERRUPTED, ERROR = "interrupted", "error"
NOT_A_RESULT = (INTERRUPTED, ERROR)
