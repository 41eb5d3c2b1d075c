"""The feasibility map: the peak memory of every config of a study's space, as every view reads it.

A *config* is one choice per searched discrete knob, in Optuna's stored form (`sigma_ls` as "128,32").
`lr`, a continuous range, changes no peak and is not part of it. The search service computes the map
(search/feasibility.py: predicted through the profile cache) and keeps it in the study as the system attr
MAP_ATTR; the report draws it and the CLI prints it. Trials that measured a config's peak on a GPU replace
its predicted cell (`with_measured`), so the map tells what is known best of each config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import optuna

from scent_search import compat
from scent_search.records.names import MAP_ATTR
from scent_search.records.trial import TrialRecord, finite

PREDICTED, MEASURED = "predicted", "measured"  # a cell's source


@dataclass(frozen=True)
class MapCell:
    """One config and its peak: the GiB the constraint compares with the budget."""

    params: Mapping[str, Any]  # knob -> Optuna param, the map's knobs only
    peak_gib: float
    source: str = PREDICTED
    trial: int | None = None  # the trial whose measurement this is (measured cells)


@dataclass(frozen=True)
class FeasibilityMap:
    """Every config of a space (`knobs`, in KNOBS order) with its peak, judged against `budget_gib`."""

    knobs: tuple[str, ...]
    cells: tuple[MapCell, ...]
    budget_gib: float
    backend: str | None = None  # the processor backend the predictions model (mamba_ssm | torch)

    def key(self, params: Mapping[str, Any]) -> tuple | None:
        """The config `params` hold (extra params, e.g. lr, ignored); None if one of the map's knobs is missing."""
        if not all(k in params for k in self.knobs):
            return None
        return tuple(params[k] for k in self.knobs)

    def fits(self, cell: MapCell) -> bool:
        return cell.peak_gib <= self.budget_gib

    @property
    def feasible(self) -> list[MapCell]:
        return [c for c in self.cells if self.fits(c)]

    @property
    def infeasible(self) -> list[MapCell]:
        return [c for c in self.cells if not self.fits(c)]

    def by_peak(self) -> list[MapCell]:
        return sorted(self.cells, key=lambda c: (c.peak_gib, [str(c.params[k]) for k in self.knobs]))

    def summary(self) -> str:
        """e.g. "41 of 108 configs fit 1 GiB"."""
        return f"{len(self.feasible)} of {len(self.cells)} configs fit {self.budget_gib:g} GiB"

    def with_budget(self, budget_gib: float) -> "FeasibilityMap":
        return dataclasses.replace(self, budget_gib=budget_gib)

    def with_measured(self, records: Iterable[TrialRecord]) -> "FeasibilityMap":
        """Cells that a trial measured show the measured peak (the highest, where several measured it)."""
        measured: dict[tuple, TrialRecord] = {}
        for r in records:
            k = self.key(r.params)
            if k is None or r.peak_source != MEASURED or r.peak_gib is None:
                continue
            if k not in measured or r.peak_gib > measured[k].peak_gib:
                measured[k] = r
        if not measured:
            return self
        cells = []
        for c in self.cells:
            r = measured.get(self.key(c.params))
            cells.append(c if r is None else MapCell(c.params, r.peak_gib, MEASURED, r.number))
        return dataclasses.replace(self, cells=tuple(cells))

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per config, by peak: its knobs, peak_gib, fits, source, trial (`map --json`)."""
        return [{**dict(c.params), "peak_gib": c.peak_gib, "fits": self.fits(c), "source": c.source,
                 "trial": c.trial} for c in self.by_peak()]

    # ---- stored form: compact rows, one per config ---------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"knobs": list(self.knobs), "budget_gib": self.budget_gib, "backend": self.backend,
                "cells": [[*(c.params[k] for k in self.knobs), c.peak_gib, c.source, c.trial] for c in self.cells]}

    @classmethod
    def from_dict(cls, data: Any) -> "FeasibilityMap | None":
        """The map of `to_dict`; None where `data` is not one (missing, malformed, from another version)."""
        try:
            if not isinstance(data, Mapping):
                return None
            knobs = tuple(str(k) for k in data["knobs"])
            budget = finite(data["budget_gib"])
            n = len(knobs)
            cells = []
            for row in data["cells"]:
                peak = finite(row[n])
                if peak is None or len(row) != n + 3:
                    return None
                cells.append(MapCell(dict(zip(knobs, row[:n])), peak, str(row[n + 1]),
                                     row[n + 2] if isinstance(row[n + 2], int) else None))
        except (KeyError, TypeError, IndexError):
            return None
        backend = data.get("backend")
        backend = backend if isinstance(backend, str) else None
        return None if budget is None else cls(knobs, tuple(cells), budget, backend)


def store_map(study: optuna.Study, fmap: FeasibilityMap) -> None:
    """Keep the map in the study (a system attr: the dashboard lists user attrs, and this one is long)."""
    compat.set_study_system_attr(study, MAP_ATTR, fmap.to_dict())


def stored_map(study: optuna.Study) -> FeasibilityMap | None:
    """The map the study's run stored, or None (a study made before maps, or by another tool)."""
    data = compat.study_system_attrs(study).get(MAP_ATTR)
    return None if data is None else FeasibilityMap.from_dict(data)
