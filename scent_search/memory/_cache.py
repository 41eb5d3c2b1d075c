"""Profiles and calibration pairs in SQLAlchemy tables beside Optuna's, in the study's database.

A profile is keyed by model config, target shape, device kind, backend and software versions. A repeated
key is never profiled twice, even by two workers at once: the first inserts a `pending` claim row under a
unique key (the database arbitrates), profiles, and fills the row in; the others wait for it. A claim left
by a dead worker is taken over after STALE_CLAIM_S.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from scent_search.config import ModelConfig, TargetShape
from scent_search.db import engine_kwargs
from scent_search.errors import StorageError
from scent_search.memory._profile import DEFAULT_MARGIN, MemoryProfile, versions

STALE_CLAIM_S = 1800.0  # a claim older than this is a dead worker's; measuring one step takes well under a minute
POLL_S = 0.2

_meta = sa.MetaData()
profiles_table = sa.Table(
    "scent_memory_profiles", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | done
    sa.Column("claimed_by", sa.String(128), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("profile_json", sa.Text, nullable=True),
)
calibration_table = sa.Table(
    "scent_memory_calibration", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_kind", sa.String(128), nullable=False),
    sa.Column("key_json", sa.Text, nullable=False),
    sa.Column("predicted_bytes", sa.BigInteger, nullable=False),
    sa.Column("measured_allocated_bytes", sa.BigInteger, nullable=False),
    sa.Column("measured_reserved_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


def profile_key(cfg: ModelConfig, shape: TargetShape, device_kind: str, backend: str) -> dict[str, Any]:
    v = versions()
    return {"model": cfg.to_dict(), "shape": shape.to_dict(), "device_kind": device_kind, "backend": backend,
            "torch": v["torch"], "mamba_ssm": v["mamba_ssm"], "predictor": v["predictor"]}


def _hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def make_engine(url_or_engine: str | sa.Engine) -> sa.Engine:
    if isinstance(url_or_engine, sa.Engine):
        return url_or_engine
    return sa.create_engine(url_or_engine, **engine_kwargs(url_or_engine))


class ProfileCache:
    """`get_or_profile` returns the stored profile of a key, or profiles it once (whichever worker asks)."""

    def __init__(self, storage: str | sa.Engine):
        self.engine = make_engine(storage)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        try:
            _meta.create_all(self.engine)
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError, sa_exc.OperationalError):
            # another worker created the tables at the same moment (PostgreSQL raises on the race)
            try:
                _meta.create_all(self.engine)
            except sa_exc.SQLAlchemyError as e:
                where = self.engine.url.render_as_string(hide_password=True)
                raise StorageError(f"{where}: cannot create the memory-profile tables "
                                   f"({type(e).__name__}: {str(e).splitlines()[0]})") from e

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa_exc.IntegrityError:
            raise
        except sa_exc.SQLAlchemyError as e:
            where = self.engine.url.render_as_string(hide_password=True)
            raise StorageError(f"{where}: memory-profile store failed: {type(e).__name__}: "
                               f"{str(e).splitlines()[0]}") from e

    def _row(self, key_hash: str):
        with self._tx() as conn:
            return conn.execute(sa.select(profiles_table).where(profiles_table.c.key_hash == key_hash)).first()

    def get(self, cfg: ModelConfig, shape: TargetShape, device: str = "predict",
            backend: str | None = None) -> MemoryProfile | None:
        key = profile_key(cfg, shape, *_kind_and_backend(device, backend))
        row = self._row(_hash(key))
        return MemoryProfile.from_dict(json.loads(row.profile_json)) if row is not None and row.status == "done" \
            else None

    def get_or_profile(self, cfg: ModelConfig, shape: TargetShape, device: str = "predict",
                       backend: str | None = None, *, profile: Callable[[], MemoryProfile] | None = None
                       ) -> MemoryProfile:
        from scent_search.memory._step import profile_step

        kind, backend = _kind_and_backend(device, backend)
        key = profile_key(cfg, shape, kind, backend)
        key_hash = _hash(key)
        run = profile or (lambda: profile_step(cfg, shape, device=device, backend=backend))
        while True:
            row = self._row(key_hash)
            if row is not None and row.status == "done":
                return MemoryProfile.from_dict(json.loads(row.profile_json))
            if row is None:
                if self._claim(key_hash, key):
                    return self._fill(key_hash, run)
            elif time.time() - row.claimed_at > STALE_CLAIM_S and self._take_over(key_hash, row.claimed_by):
                return self._fill(key_hash, run)
            time.sleep(POLL_S)

    def _claim(self, key_hash: str, key: dict) -> bool:
        try:
            with self._tx() as conn:
                conn.execute(profiles_table.insert().values(
                    key_hash=key_hash, key_json=json.dumps(key, sort_keys=True), status="pending",
                    claimed_by=self.worker, claimed_at=time.time()))
            return True
        except sa_exc.IntegrityError:  # another worker holds the claim: wait for its profile
            return False

    def _take_over(self, key_hash: str, old: str) -> bool:
        with self._tx() as conn:
            res = conn.execute(profiles_table.update().where(
                (profiles_table.c.key_hash == key_hash) & (profiles_table.c.claimed_by == old)
                & (profiles_table.c.status == "pending")).values(claimed_by=self.worker, claimed_at=time.time()))
            return res.rowcount == 1

    def _fill(self, key_hash: str, run: Callable[[], MemoryProfile]) -> MemoryProfile:
        try:
            prof = run()
        except BaseException:
            with self._tx() as conn:  # give the claim back so another worker can try
                conn.execute(profiles_table.delete().where(
                    (profiles_table.c.key_hash == key_hash) & (profiles_table.c.claimed_by == self.worker)))
            raise
        with self._tx() as conn:
            conn.execute(profiles_table.update().where(profiles_table.c.key_hash == key_hash).values(
                status="done", profile_json=json.dumps(prof.to_dict(), sort_keys=True)))
        return prof

    def count(self) -> int:
        with self._tx() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(profiles_table)).scalar_one()

    # -- calibration ---------------------------------------------------------------------------------------
    def record_calibration(self, predicted: MemoryProfile, measured: MemoryProfile) -> None:
        """Store one (predicted, measured) pair of the same config and shape (measured must not be an OOM)."""
        if measured.source != "measured" or measured.oom or predicted.source != "predicted":
            raise ValueError("record_calibration needs a predicted profile and a measured, non-OOM one")
        with self._tx() as conn:
            conn.execute(calibration_table.insert().values(
                device_kind=measured.device_kind,
                key_json=json.dumps({"model": measured.model, "shape": measured.shape, "backend": measured.backend},
                                    sort_keys=True),
                predicted_bytes=predicted.peak_allocated_bytes,
                measured_allocated_bytes=measured.peak_allocated_bytes,
                measured_reserved_bytes=measured.peak_reserved_bytes or measured.peak_allocated_bytes,
                created_at=time.time()))

    def calibration_pairs(self) -> list[dict[str, Any]]:
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(calibration_table))]

    def calibration_margin(self) -> float:
        """Margin on predicted bytes: the worst observed measured-reserved / predicted ratio, minus 1.

        DEFAULT_MARGIN until a pair exists. Never below 0: the margin only guards against under-prediction.
        """
        pairs = self.calibration_pairs()
        if not pairs:
            return DEFAULT_MARGIN
        worst = max(p["measured_reserved_bytes"] / max(p["predicted_bytes"], 1) for p in pairs)
        return max(0.0, worst - 1.0)


def _kind_and_backend(device: str, backend: str | None) -> tuple[str, str]:
    """The cache's device kind and backend for a profile request (without running anything)."""
    import torch

    from scent_search.memory._predict import default_backend

    if device == "predict":
        kind = f"predicted:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "predicted:sm90"
        return kind, backend or default_backend()
    dev = torch.device(device)
    if dev.type != "cuda":
        from scent_search.errors import ConfigError

        raise ConfigError("device", f"must be 'predict', 'cuda' or 'cuda:N', got {device!r}")
    if not torch.cuda.is_available():
        from scent_search.errors import ConfigError

        raise ConfigError("device", f"{device!r}: no CUDA device here (use --device predict)")
    from scent_search.model.processor import mamba_ssm_available

    return torch.cuda.get_device_name(dev.index or 0), "mamba_ssm" if mamba_ssm_available() else "torch"
