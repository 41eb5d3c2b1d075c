"""Opening a study's storage to write it: a new SQLite file is made once, however many processes start at once."""

from __future__ import annotations

import multiprocessing as mp
import traceback
import uuid

import optuna
import pytest

from scent_search.search import prepare_run

from tests.search.conftest import write_spec


def _prepare(spec_path, url: str, name: str, barrier, results) -> None:
    barrier.wait()  # every process reaches the new file's schema creation at the same moment
    try:
        prepare_run(spec_path, storage=url, study_name=name)
        results.put("ok")
    except BaseException as e:  # noqa: BLE001 - the parent reports what the child met
        results.put(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")


@pytest.mark.slow
def test_runs_started_at_once_on_a_new_sqlite_file(tmp_path):
    """`scent-search run` in several processes at once on a file that does not exist yet: before the schema
    lock, one died with "table studies already exists" or a duplicate alembic_version row. Rounds on
    fresh files, four processes each, make the race near certain without the lock."""
    from scent_search.data import load_data

    spec = write_spec(tmp_path, budget=100.0)
    load_data(None)  # decoded once here and inherited by the forked processes: they start in step
    ctx = mp.get_context("fork")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'new-{round_}' / 'studies.db'}"
        names = [f"race-{uuid.uuid4().hex[:8]}" for _ in range(4)]
        barrier, results = ctx.Barrier(len(names)), ctx.Queue()
        procs = [ctx.Process(target=_prepare, args=(spec, url, n, barrier, results)) for n in names]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert outcomes == ["ok"] * len(names), "\n".join(o for o in outcomes if o != "ok")
        assert sorted(optuna.get_all_study_names(url)) == sorted(names)
