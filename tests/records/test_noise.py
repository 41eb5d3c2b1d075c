"""Configs over their seeds and the pooled seed noise (records.noise), on known numbers."""

from __future__ import annotations

import math

import pytest

from scent_search.records import NOISE_MULTIPLE, TrialRecord, configs_of, noise_of, with_seed_stats


def _trained(number: int, h: int, psnr: float, seed: int | None = 0, repeat_of: int | None = None,
             **kw) -> TrialRecord:
    return TrialRecord(number=number, state="COMPLETE", params={"hidden_dim": h}, feasible=True, psnr=psnr,
                       train_seed=seed, repeat_of=repeat_of, peak_gib=h / 64, **kw)


def test_pooled_noise_spread_and_grouping_on_known_numbers():
    records = [
        _trained(0, 16, 1.0), _trained(1, 32, 10.0), _trained(2, 64, 5.0),  # explored
        _trained(3, 16, 2.0, seed=1, repeat_of=0), _trained(4, 16, 3.0, seed=2, repeat_of=0),
        _trained(5, 32, 12.0, seed=1, repeat_of=1),
        _trained(6, 64, 9.0, seed=0, duplicate_of=2),  # a copy of #2: no new seed
        _trained(7, 32, 99.0, seed=1, repeat_of=1),  # the same seed again (a twin): counted once
        TrialRecord(number=8, state="PRUNED", params={"hidden_dim": 64}, feasible=False, peak_gib=2.0),
    ]
    configs = {c.number: c for c in configs_of(records)}
    assert sorted(configs) == [0, 1, 2]
    assert configs[0].trials == (0, 3, 4) and configs[0].seeds == (0, 1, 2) and configs[0].mean == 2.0
    assert configs[0].std == pytest.approx(1.0) and configs[0].n == 3  # sample std of 1, 2, 3
    assert configs[1].psnrs == (10.0, 12.0) and configs[1].std == pytest.approx(math.sqrt(2))
    assert configs[2].n == 1 and configs[2].std is None
    noise = noise_of(list(configs.values()))
    # sum of squares within configs (2 + 2) over degrees of freedom ((3 - 1) + (2 - 1))
    assert noise.std == pytest.approx(math.sqrt(4 / 3)) and noise.dof == 3 and noise.repeated == (3, 2)
    assert noise.spread == pytest.approx(11.0 - 2.0) and noise.configs == 3
    assert noise.ratio == pytest.approx(9.0 / math.sqrt(4 / 3))
    assert noise.describe() == "2 configs, 2-3 seeds each"
    # the standing trial of each config carries its statistics; nothing else does
    stats = {r.number: (r.psnr_mean, r.n_seeds) for r in with_seed_stats(records) if r.n_seeds is not None}
    assert stats == {0: (2.0, 3), 1: (11.0, 2), 2: (5.0, 1)}


def test_below_the_noise_is_two_standard_errors_of_the_difference():
    records = [_trained(0, 16, 20.0), _trained(1, 16, 21.0, seed=1, repeat_of=0),  # noise: std 0.707, 1 dof
               _trained(2, 32, 21.5), _trained(3, 64, 23.0)]
    c = {c.number: c for c in configs_of(records)}
    noise = noise_of(list(c.values()))
    sigma = math.sqrt(0.5)
    assert NOISE_MULTIPLE == 2.0
    assert noise.threshold(2, 1) == pytest.approx(2 * sigma * math.sqrt(1 / 2 + 1))  # 1.73 dB
    assert noise.below(c[0], c[2]) is True  # 20.5 vs 21.5: 1.0 dB < 1.73
    assert noise.below(c[0], c[3]) is False  # 20.5 vs 23.0: 2.5 dB
    # 21.5 vs 23.0: 1.5 dB, and two single-seed configs need 2 sigma sqrt(2) = 2.0 dB to be told apart
    assert noise.threshold(1, 1) == pytest.approx(2.0) and noise.below(c[2], c[3]) is True


def test_without_a_second_seed_the_noise_is_unknown():
    configs = configs_of([_trained(0, 16, 20.0), _trained(1, 32, 21.0)])
    noise = noise_of(configs)
    assert noise.std is None and noise.ratio is None and noise.dof == 0
    assert noise.threshold(1, 1) is None and noise.below(configs[0], configs[1]) is None
    assert noise.spread == pytest.approx(1.0)
