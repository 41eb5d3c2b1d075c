"""The record layer, below the search service and the report, torch-free (docs/design.md, "Layout").

What a trial stores in Optuna and how every view reads it back, in one place:
- `TrialRecord` (`to_attrs`, `write`, `from_trial`, `status`, `is_result`, `peak_rows`), `set_constraint`,
  `mirror_legacy_constraints`: the trial record and its constraint, in both stored forms;
- `peak_rows`, `PeakRow`, `provenance`: the peak the constraint uses, itemised so that it adds up;
- `KNOBS`, `Knob`, `knobs_label`: the searched knobs;
- `FeasibilityMap`, `MapCell`, `store_map`, `stored_map`: the peak of every config of a space;
- units and names: `GIB`, `gib`, `COMPONENTS`, `BREAKDOWN_KEYS`, `CONSTRAINT_NAME`, `OBJECTIVES`, the statuses;
- `configs_of`, `ConfigResult`, `noise_of`, `Noise`, `with_seed_stats`, `best_config`: configs over their
  seeds, the study's seed-to-seed noise and what is below it;
- `DEFAULT_STORAGE`, `open_existing`, `load_study`, `safe_url`, `storage_errors`: reading a storage.
"""

from scent_search.records.feasibility import FeasibilityMap, MapCell, store_map, stored_map
from scent_search.records.knobs import KNOBS, MODEL_KNOBS, Knob, knobs_label, param_order
from scent_search.records.names import (BREAKDOWN_KEYS, COMPONENTS, CONSTRAINT_NAME, CONSTRAINT_PREFIX, DEVICE_ATTR,
                                        ERROR, FAILED, FEASIBLE, GIB, INFEASIBLE, INTERRUPTED, LEGACY_CONSTRAINTS_KEY,
                                        MAP_ATTR, NOT_A_RESULT, OBJECTIVES, PRUNED, RUNNING, SPEC_ATTR, STATE, STATUSES,
                                        gib)
from scent_search.records.noise import (NOISE_MULTIPLE, ConfigResult, Noise, best_config, config_key, configs_of,
                                        noise_of, with_seed_stats)
from scent_search.records.peak import (CALIBRATED, MEASURED, OVERHEAD_ROWS, PREDICTED, PeakRow, peak_rows,
                                       provenance)
from scent_search.records.storage import (DEFAULT_STORAGE, is_sqlite, load_study, open_existing, parse_url,
                                          safe_url, sqlite_file, storage_errors)
from scent_search.records.trial import (ATTRS, TrialRecord, constraint_values, finite, is_feasible,
                                        legacy_constraints, mirror_legacy_constraints, set_constraint)

__all__ = ["ATTRS", "BREAKDOWN_KEYS", "CALIBRATED", "COMPONENTS", "CONSTRAINT_NAME", "CONSTRAINT_PREFIX",
           "ConfigResult", "FeasibilityMap", "MAP_ATTR", "MapCell", "store_map", "stored_map", "NOISE_MULTIPLE",
           "Noise", "best_config", "config_key", "configs_of", "noise_of", "with_seed_stats",
           "DEFAULT_STORAGE", "DEVICE_ATTR", "ERROR", "SPEC_ATTR", "FAILED", "FEASIBLE", "GIB", "INFEASIBLE",
           "INTERRUPTED", "KNOBS", "Knob", "LEGACY_CONSTRAINTS_KEY", "MEASURED", "MODEL_KNOBS", "NOT_A_RESULT",
           "OBJECTIVES", "OVERHEAD_ROWS", "PREDICTED", "PRUNED", "PeakRow", "RUNNING", "STATE", "STATUSES",
           "TrialRecord", "constraint_values", "finite", "gib", "is_feasible", "is_sqlite", "knobs_label",
           "legacy_constraints", "load_study", "mirror_legacy_constraints", "open_existing", "param_order",
           "parse_url", "peak_rows", "provenance", "safe_url", "set_constraint", "sqlite_file", "storage_errors"]
