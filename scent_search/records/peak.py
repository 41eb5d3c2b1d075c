"""The peak the constraint uses, itemised: the one definition of the rows every memory breakdown shows.

The components (encoder ... other) add up to the *allocated* peak. The constraint compares something larger
with the budget (`MemoryProfile.constraint_bytes`), so a breakdown that stops at the components understates
the peak. `peak_rows` adds what the components do not cover, each row saying where it comes from:

- predicted: components (= predicted allocated), the calibration margin (allocated x margin) and the
  reserved allowance (a fixed amount for the allocator's segments);
- measured: components (the prediction's shares scaled to the measured allocated peak) and the allocator
  reserve (measured reserved - allocated);
- whatever an older or unusual record leaves unexplained: one "not itemised" row.

The rows' bytes always sum to exactly `constraint_bytes`. `scent-search profile`, the report's stacked bars,
the CSV/JSON breakdown and the dashboard notes all show these rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from scent_search.units import BREAKDOWN_KEYS, GIB

MEASURED, PREDICTED, CALIBRATED = "measured", "predicted", "calibrated"

# Row names beyond the components (BREAKDOWN_KEYS), in the order they stack.
MARGIN_ROW, ALLOWANCE_ROW, RESERVE_ROW, RESIDUAL_ROW = ("calibration margin", "reserved allowance",
                                                        "allocator reserve", "not itemised")
OVERHEAD_ROWS = (MARGIN_ROW, ALLOWANCE_ROW, RESERVE_ROW, RESIDUAL_ROW)


@dataclass(frozen=True)
class PeakRow:
    name: str  # a component of BREAKDOWN_KEYS, or one of OVERHEAD_ROWS
    bytes: int
    note: str  # where the figure comes from ("" for a component)

    @property
    def gib(self) -> float:
        return self.bytes / GIB

    @property
    def overhead(self) -> bool:
        """Not a part of the allocated peak: margin, allowance, reserve or the unexplained rest."""
        return self.name in OVERHEAD_ROWS

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "gib": self.gib, "note": self.note}


def provenance(source: str | None, calibration_pairs: int | None = None) -> str | None:
    """measured; calibrated (predicted, with a margin from stored calibration pairs); predicted; None."""
    if source == MEASURED:
        return MEASURED
    if source == PREDICTED:
        return CALIBRATED if calibration_pairs else PREDICTED
    return None


def margin_note(margin: float, calibration_pairs: int | None) -> str:
    if calibration_pairs:
        return (f"{margin:.1%} of allocated, from {calibration_pairs} calibration pair(s): "
                "the worst measured reserved / predicted")
    return f"{margin:.0%} of allocated, the default margin (no calibration pair yet)"


def _numbers(breakdown: Mapping[str, Any] | None) -> dict[str, int]:
    """component -> bytes, in BREAKDOWN_KEYS order (unknown names last); non-numbers left out."""
    raw = {str(k): int(v) for k, v in (breakdown or {}).items()
           if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    names = [c for c in BREAKDOWN_KEYS if c in raw] + sorted(k for k in raw if k not in BREAKDOWN_KEYS)
    return {n: raw[n] for n in names}


def _components(breakdown: Mapping[str, Any] | None, allocated: int) -> list[PeakRow]:
    """The breakdown's components, scaled to sum to `allocated` exactly."""
    raw = _numbers(breakdown)
    names, values = list(raw), list(raw.values())
    total = sum(values)
    if total <= 0:
        return [PeakRow("allocated", allocated, "no breakdown recorded")] if allocated else []
    if total != allocated:  # an older record, or a breakdown rounded apart from the peak: keep the shares
        values = [v * allocated // total for v in values]
        values[-1] += allocated - sum(values)
    return [PeakRow(n, v, "") for n, v in zip(names, values)]


def peak_rows(breakdown: Mapping[str, Any] | None, *, source: str | None, allocated_bytes: int | None,
              constraint_bytes: int, margin: float | None = None, allowance_bytes: int | None = None,
              calibration_pairs: int | None = None, oom: bool = False) -> list[PeakRow]:
    """The rows of a peak, summing to `constraint_bytes` (see the module's docstring).

    `margin` / `allowance_bytes` / `calibration_pairs`: what a predicted peak added to its allocated bytes
    (`memory.ProfileCache.calibration_margin()`, `memory.RESERVED_ALLOWANCE_BYTES`, the pairs it came from).
    `oom`: the measured step ran out of memory, so the peak is a floor counted as over the budget.
    """
    if allocated_bytes is None:  # an older record: the components' own total, at most the constraint's figure
        allocated_bytes = min(sum(_numbers(breakdown).values()), constraint_bytes)
    allocated = int(allocated_bytes)
    rows = _components(breakdown, allocated)
    rest = constraint_bytes - allocated
    if source == PREDICTED and margin is not None and allowance_bytes is not None:
        rows.append(PeakRow(MARGIN_ROW, rest - allowance_bytes, margin_note(margin, calibration_pairs)))
        rows.append(PeakRow(ALLOWANCE_ROW, allowance_bytes,
                            f"fixed {allowance_bytes / 2**20:g} MiB: allocator segments a prediction cannot see"))
        rest = 0
    elif source == MEASURED and not oom and rest >= 0:
        rows.append(PeakRow(RESERVE_ROW, rest, "measured reserved - allocated: held by the caching allocator"))
        rest = 0
    if rest:
        note = ("the step ran out of memory: counted as over the budget" if oom else
                "the constraint's figure minus the rows above (this record does not itemise it)")
        rows.append(PeakRow(RESIDUAL_ROW, rest, note))
    return rows


__all__ = ["ALLOWANCE_ROW", "CALIBRATED", "MARGIN_ROW", "MEASURED", "OVERHEAD_ROWS", "PREDICTED", "PeakRow",
           "RESERVE_ROW", "RESIDUAL_ROW", "margin_note", "peak_rows", "provenance"]
