"""The profile cache: stored profiles are returned without recomputing, and two concurrent writers of the
same key profile it once, on SQLite and on the PostgreSQL at 127.0.0.1 (never skipped when CI=true)."""

import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from scent_search.config import ModelConfig, TargetShape
from scent_search.memory import DEFAULT_MARGIN, ProfileCache, profile_step
from scent_search.memory._cache import calibration_table, profiles_table
from tests.postgres import PG_URL, require_postgres

SHAPE = TargetShape(batch_size=2, queries=16, lr_size=8)


_CREATED: list[ModelConfig] = []


def _unique_cfg(tiny_cfg) -> ModelConfig:
    """A key no other test run (or engineer sharing the database) uses; its rows are deleted afterwards."""
    cfg = tiny_cfg.replace(sigma_q=1.0 + uuid.uuid4().int % 10 ** 6 / 1e3)
    _CREATED.append(cfg)
    return cfg


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    yield require_postgres()
    eng = sa.create_engine(PG_URL)  # the database is shared: leave no rows behind
    with eng.begin() as conn:
        for cfg in _CREATED:
            conn.execute(profiles_table.delete().where(profiles_table.c.key_json.contains(f'"sigma_q": {cfg.sigma_q}')))
    eng.dispose()
    _CREATED.clear()


@pytest.fixture
def tiny_profile(tiny_cfg):
    return profile_step(tiny_cfg, SHAPE)


def _rows(url, cfg):
    eng = sa.create_engine(url)
    with eng.connect() as conn:
        rows = conn.execute(sa.select(profiles_table)).fetchall()
    eng.dispose()
    return [r for r in rows if f'"sigma_q": {cfg.sigma_q}' in r.key_json]


def test_a_stored_profile_is_returned_without_recomputing(storage_url, tiny_cfg, tiny_profile):
    cfg = _unique_cfg(tiny_cfg)
    calls = []

    def run():
        calls.append(1)
        return tiny_profile

    cache = ProfileCache(storage_url)
    first = cache.get_or_profile(cfg, SHAPE, profile=run)
    again = ProfileCache(storage_url).get_or_profile(cfg, SHAPE, profile=run)
    assert calls == [1]
    assert again == first == tiny_profile
    assert ProfileCache(storage_url).get(cfg, SHAPE) == tiny_profile
    assert ProfileCache(storage_url).get(cfg, SHAPE.replace(batch_size=3)) is None


def test_two_concurrent_writers_profile_a_key_once(storage_url, tiny_cfg, tiny_profile):
    """Two workers (separate engines, started together) ask for the same key: one profiles, one waits."""
    cfg = _unique_cfg(tiny_cfg)
    calls, results, errors = [], [], []
    barrier = threading.Barrier(2)

    def run():
        calls.append(threading.get_ident())
        time.sleep(0.5)  # a profile takes a while; the other worker must wait, not profile too
        return tiny_profile

    def worker():
        try:
            cache = ProfileCache(sa.create_engine(storage_url, connect_args={"timeout": 60})
                                 if storage_url.startswith("sqlite") else sa.create_engine(storage_url))
            barrier.wait()
            results.append(cache.get_or_profile(cfg, SHAPE, profile=run))
            cache.engine.dispose()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(calls) == 1
    assert results == [tiny_profile, tiny_profile]
    rows = _rows(storage_url, cfg)
    assert len(rows) == 1 and rows[0].status == "done"


def test_a_failed_profile_gives_its_claim_back(storage_url, tiny_cfg, tiny_profile):
    cfg = _unique_cfg(tiny_cfg)
    cache = ProfileCache(storage_url)

    def boom():
        raise RuntimeError("profiling failed")

    with pytest.raises(RuntimeError):
        cache.get_or_profile(cfg, SHAPE, profile=boom)
    assert cache.get_or_profile(cfg, SHAPE, profile=lambda: tiny_profile) == tiny_profile


def test_calibration_margin_is_the_worst_observed_ratio(tmp_path, tiny_profile):
    cache = ProfileCache(f"sqlite:///{tmp_path / 'cal.db'}")
    assert cache.calibration_margin() == DEFAULT_MARGIN
    measured = {**tiny_profile.to_dict(), "source": "measured", "device_kind": "GPU"}
    pred_bytes = tiny_profile.peak_allocated_bytes
    from scent_search.memory import MemoryProfile

    for reserved in (1.05, 1.20, 0.98):
        m = MemoryProfile.from_dict({**measured, "peak_reserved_bytes": int(pred_bytes * reserved)})
        cache.record_calibration(tiny_profile, m)
    assert cache.calibration_margin() == pytest.approx(0.20, abs=1e-6)
    with pytest.raises(ValueError):
        cache.record_calibration(tiny_profile, tiny_profile)
    with cache.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(calibration_table)).scalar_one() == 3


def _process_worker(url: str, cfg_dict: dict, profile_dict: dict, calls_file: str, start_at: float, out) -> None:
    from scent_search.memory import MemoryProfile

    def run():
        with open(calls_file, "a") as f:
            f.write("profiled\n")
        time.sleep(0.5)
        return MemoryProfile.from_dict(profile_dict)

    cache = ProfileCache(url)
    time.sleep(max(0.0, start_at - time.time()))
    out.put(cache.get_or_profile(ModelConfig.from_dict(cfg_dict), SHAPE, profile=run).to_dict())


@pytest.mark.slow
def test_two_worker_processes_profile_a_key_once(storage_url, tiny_cfg, tiny_profile, tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    cfg = _unique_cfg(tiny_cfg)
    calls, out = tmp_path / "calls.txt", ctx.Queue()
    start_at = time.time() + 8  # both processes import torch first, then ask at the same moment
    procs = [ctx.Process(target=_process_worker, args=(storage_url, cfg.to_dict(), tiny_profile.to_dict(),
                                                        str(calls), start_at, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert calls.read_text().count("profiled") == 1
    assert results[0] == results[1] == tiny_profile.to_dict()
    assert len(_rows(storage_url, cfg)) == 1
