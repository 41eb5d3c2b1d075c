"""Configs and their seed noise: one definition of what every view ranks and how far apart is "apart".

A study's trials are grouped by config (their params). Each trained feasible config has one PSNR per
training seed: the original trial's (the spec's `[train] seed`) and those of its repeats (`repeat_of`,
`train_seed`; docs/search.md, "Repeats"). A copy of a trained twin (`duplicate_of`) is no new seed.

- `ConfigResult`: a config's trials, seeds and final PSNRs; `mean`, `std` (sample std, None with one seed),
  `n`. `number` is the trial that stands for it (its original) on the Pareto front, in `best` and the tables.
- `Noise` (`noise_of(configs)`): the pooled seed-to-seed std over the configs with >= 2 seeds,

      sigma = sqrt( sum_c sum_i (x_ci - mean_c)^2 / sum_c (n_c - 1) ),

  i.e. each repeated config's variance weighted by its degrees of freedom; and the spread, best mean minus
  worst mean over every trained feasible config. Without a config trained with two seeds the noise is
  unknown (None), never guessed.
- "Below the noise": two configs' means differ by less than NOISE_MULTIPLE standard errors of the difference,
  |mean_a - mean_b| < 2 * sigma * sqrt(1/n_a + 1/n_b) (about a 95 % two-sided test, the seeds' noise taken as
  known). Two single-seed configs need 2.83 sigma to be told apart, two three-seed configs 1.63 sigma.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from scent_search.records.names import FEASIBLE
from scent_search.records.trial import TrialRecord

NOISE_MULTIPLE = 2.0  # standard errors of a difference of means that "below the noise" stays under


def config_key(params: Mapping[str, Any]) -> tuple:
    """A config's identity: its params (Optuna's stored values), order-free."""
    return tuple(sorted(params.items()))


@dataclass(frozen=True)
class ConfigResult:
    """One trained feasible config: its trials trained to the end, one per seed, by trial number."""

    number: int  # the trial that stands for the config: its original (lowest-numbered non-repeat)
    params: Mapping[str, Any]
    trials: tuple[int, ...]
    seeds: tuple[int | None, ...]  # train_seed of each (None: a study older than train_seed)
    psnrs: tuple[float, ...]  # final x4 PSNR of each (dB)
    peak_gib: float | None

    @property
    def n(self) -> int:
        return len(self.psnrs)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.psnrs)

    @property
    def std(self) -> float | None:
        """Sample std over seeds (n - 1 in the denominator); None with one seed."""
        return statistics.stdev(self.psnrs) if self.n >= 2 else None

    def label(self) -> str:
        """25.31 ± 0.12 dB (3 seeds), or 25.31 dB (1 seed)."""
        std = f" ± {self.std:.2f}" if self.std is not None else ""
        return f"{self.mean:.2f}{std} dB ({self.n} seed{'s' if self.n != 1 else ''})"


def _groups(records: Sequence[TrialRecord]) -> list[tuple[int, list[int]]]:
    """(index of the standing trial, indices of the config's members, one per seed, by trial number) for each
    trained feasible config: finished trials with a final PSNR, copies excluded; a seed counts once."""
    order = sorted(range(len(records)), key=lambda i: (records[i].number if records[i].number is not None else -1))
    groups: dict[tuple, dict[int | None, int]] = {}
    for i in order:
        r = records[i]
        if r.status == FEASIBLE and r.psnr is not None and r.duplicate_of is None:
            groups.setdefault(config_key(r.params), {}).setdefault(r.train_seed, i)
    out = []
    rank = {i: k for k, i in enumerate(order)}
    for by_seed in groups.values():
        kept = sorted(by_seed.values(), key=rank.__getitem__)
        original = next((i for i in kept if records[i].repeat_of is None), kept[0])
        out.append((original, kept))
    return out


def configs_of(records: Sequence[TrialRecord]) -> list[ConfigResult]:
    """The trained feasible configs of a study's records (finished trials with a final PSNR, copies
    excluded), by the number of the trial that stands for each. A seed counts once per config."""
    out = []
    for original, kept in _groups(records):
        r = records[original]
        out.append(ConfigResult(number=r.number, params=dict(r.params),
                                trials=tuple(records[i].number for i in kept),
                                seeds=tuple(records[i].train_seed for i in kept),
                                psnrs=tuple(records[i].psnr for i in kept), peak_gib=r.peak_gib))
    return sorted(out, key=lambda c: c.number)


def with_seed_stats(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The records, with `psnr_mean`, `psnr_std` and `n_seeds` set on each config's standing trial (the
    statistics of `configs_of`)."""
    out = list(records)
    for original, kept in _groups(records):
        psnrs = [records[i].psnr for i in kept]
        out[original] = dataclasses.replace(records[original], psnr_mean=statistics.fmean(psnrs),
                                            psnr_std=statistics.stdev(psnrs) if len(psnrs) >= 2 else None,
                                            n_seeds=len(psnrs))
    return out


@dataclass(frozen=True)
class Noise:
    """A study's seed-to-seed noise and the spread of its configs' mean PSNRs (dB)."""

    std: float | None  # pooled seed-to-seed std; None: no config has two seeds (unknown)
    repeated: tuple[int, ...]  # seeds of each config that has >= 2 (what the pooled std is made of)
    spread: float | None  # best mean - worst mean over trained feasible configs; None without any
    configs: int  # trained feasible configs

    @property
    def dof(self) -> int:
        """Degrees of freedom of the pooled std: sum over repeated configs of (n - 1)."""
        return sum(n - 1 for n in self.repeated)

    @property
    def ratio(self) -> float | None:
        """spread / noise; None when either is unknown or the noise is 0."""
        if self.std is None or self.spread is None or self.std <= 0:
            return None
        return self.spread / self.std

    def describe(self) -> str:
        """What the noise is pooled over: "3 configs × 3 seeds", or "3 configs, 2-4 seeds each"."""
        k, seeds = len(self.repeated), sorted(set(self.repeated))
        configs = f"{k} config{'s' if k != 1 else ''}"
        return f"{configs} × {seeds[0]} seeds" if len(seeds) == 1 else \
            f"{configs}, {seeds[0]}-{seeds[-1]} seeds each"

    def threshold(self, n_a: int, n_b: int) -> float | None:
        """The smallest difference of two means (of n_a and n_b seeds) that is not below the noise."""
        if self.std is None:
            return None
        return NOISE_MULTIPLE * self.std * math.sqrt(1 / n_a + 1 / n_b)

    def below(self, a: ConfigResult, b: ConfigResult) -> bool | None:
        """Whether the two configs' means differ by less than the noise; None when the noise is unknown."""
        limit = self.threshold(a.n, b.n)
        return None if limit is None else abs(a.mean - b.mean) < limit

    def to_dict(self) -> dict[str, Any]:
        return {"std": self.std, "configs_repeated": len(self.repeated), "seeds": list(self.repeated),
                "dof": self.dof, "spread": self.spread, "configs": self.configs, "spread_over_noise": self.ratio,
                "rule": f"below the noise: |mean_a - mean_b| < {NOISE_MULTIPLE:g} * std * sqrt(1/n_a + 1/n_b)"}


def noise_of(configs: Sequence[ConfigResult]) -> Noise:
    repeated = [c for c in configs if c.n >= 2]
    dof = sum(c.n - 1 for c in repeated)
    std = math.sqrt(sum((x - c.mean) ** 2 for c in repeated for x in c.psnrs) / dof) if dof else None
    means = [c.mean for c in configs]
    return Noise(std=std, repeated=tuple(c.n for c in repeated), spread=max(means) - min(means) if means else None,
                 configs=len(configs))


def best_config(configs: Sequence[ConfigResult]) -> ConfigResult | None:
    """The highest mean PSNR (ties: the smaller peak, then the earlier trial)."""
    return max(configs, key=lambda c: (c.mean, -(c.peak_gib or 0.0), -c.number), default=None)
