"""The record layer, below the search service and the report, torch-free (DESIGN.md section 8).

What a trial stores in Optuna and how every view reads it back, in one place:
- `TrialRecord` (`to_attrs`, `write`, `from_trial`, `status`, `is_result`), `set_constraint`,
  `mirror_legacy_constraints`: the trial record and its constraint, in both stored forms;
- `KNOBS`, `Knob`, `knobs_label`: the searched knobs;
- `FeasibilityMap`, `MapCell`, `store_map`, `stored_map`: the peak of every config of a space;
- units and names: `GIB`, `gib`, `COMPONENTS`, `BREAKDOWN_KEYS`, `CONSTRAINT_NAME`, the statuses;
- `DEFAULT_STORAGE`, `open_existing`, `load_study`, `safe_url`, `storage_errors`: reading a storage.
"""

from scent_search.records.feasibility import FeasibilityMap, MapCell, store_map, stored_map
from scent_search.records.knobs import KNOBS, MODEL_KNOBS, Knob, knobs_label, param_order
from scent_search.records.names import (BREAKDOWN_KEYS, COMPONENTS, CONSTRAINT_NAME, CONSTRAINT_PREFIX, DEVICE_ATTR,
                                        ERROR, FAILED, FEASIBLE, GIB, INFEASIBLE, INTERRUPTED, LEGACY_CONSTRAINTS_KEY,
                                        MAP_ATTR, NOT_A_RESULT, PRUNED, RUNNING, SPEC_ATTR, STATE, STATUSES, gib)
from scent_search.records.storage import (DEFAULT_STORAGE, is_sqlite, load_study, open_existing, parse_url,
                                          safe_url, sqlite_file, storage_errors)
from scent_search.records.trial import (ATTRS, TrialRecord, constraint_values, finite, is_feasible,
                                        legacy_constraints, mirror_legacy_constraints, set_constraint)

__all__ = ["ATTRS", "BREAKDOWN_KEYS", "COMPONENTS", "CONSTRAINT_NAME", "CONSTRAINT_PREFIX", "DEFAULT_STORAGE",
           "DEVICE_ATTR", "ERROR", "SPEC_ATTR", "FAILED", "FEASIBLE", "FeasibilityMap", "GIB", "INFEASIBLE",
           "INTERRUPTED", "KNOBS", "Knob", "LEGACY_CONSTRAINTS_KEY", "MAP_ATTR", "MODEL_KNOBS", "MapCell",
           "NOT_A_RESULT", "PRUNED", "RUNNING", "STATE", "STATUSES",
           "TrialRecord", "constraint_values", "finite", "gib", "is_feasible", "is_sqlite", "knobs_label",
           "legacy_constraints", "load_study", "mirror_legacy_constraints", "open_existing", "param_order",
           "parse_url", "safe_url", "set_constraint", "sqlite_file", "storage_errors", "store_map", "stored_map"]
