"""Fixtures of the search tests: real storages (SQLite and the PostgreSQL on 127.0.0.1:5432), a tiny study
spec, and injectable stand-ins for the peak probe and the training function."""

from __future__ import annotations

import types
import uuid
from pathlib import Path

import optuna
import pytest

from scent_search.records import GIB
from scent_search.errors import NonFiniteLoss, OutOfMemory
from scent_search.search import StudySpec, load_spec
from scent_search.search.probe import Peak
from tests.postgres import PG_URL, require_postgres

# A study every test can afford on a shared 2-core CPU: a tiny model, 6 training steps, 64-pixel validation.
TINY_SPEC = """
name = "tiny"
budget_gib = {budget}
n_trials = 3
seed = 0
device = "cpu"

[target]
batch_size = 4
queries = 256
lr_size = 16

[train]
steps = 6
batch_size = 2
sample_q = 64
lr_size = 16
eval_points = 2
val_hr_size = 64
val_crops = 2
lr = 1e-3

[model]
dim = 16
num_lp_tokens = 8
feature_dim = 8
num_processor_layers = 1

[space]
hidden_dim = [16, 32, 64]
mult = [1, 2]
num_decoder_layers = [1, 2]
share_scales = [false, true]
sigma_ls = [[16.0], [16.0, 4.0]]

[sampler]
name = "random"

[pruner]
name = "nop"

[heartbeat]
interval = 1
grace_period = 3
max_retry = 2
"""


def write_spec(folder: Path, budget: float = 1.0, extra: str = "", name: str = "tiny.toml",
               multi_objective: bool = False) -> Path:
    """The tiny spec; `multi_objective`: objectives = ["psnr", "peak_memory"], and no [pruner] (none prunes)."""
    path = folder / name
    text = TINY_SPEC.format(budget=budget) + extra
    if multi_objective:
        text = 'objectives = ["psnr", "peak_memory"]\n' + text.replace('[pruner]\nname = "nop"\n', "")
    path.write_text(text)
    return path


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return write_spec(tmp_path)


@pytest.fixture
def tiny_spec(spec_path: Path) -> StudySpec:
    return load_spec(spec_path)


@pytest.fixture
def study_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_url(study_name: str):
    """The PostgreSQL URL; skipped only where it is unreachable and CI is not "true". The test's study
    (a unique name) is deleted afterwards."""
    yield require_postgres()
    storage = optuna.storages.RDBStorage(PG_URL)
    try:
        optuna.delete_study(study_name=study_name, storage=storage)
    except KeyError:
        pass
    storage.engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request):
    """Each test using it runs against both backends."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def fake_peak_bytes(model_cfg, shape) -> int:
    """A stand-in for the predictor: decoder activations grow with B*Q*hidden*mult*layers*scales."""
    per_query = model_cfg.hidden_dim * (2 + 3 * model_cfg.mult) * model_cfg.num_decoder_layers * model_cfg.num_scales
    return shape.batch_size * shape.queries * per_query * 4 * 4 + 8 * 2**20


class FakeProbe:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model_cfg, shape) -> Peak:
        self.calls += 1
        b = fake_peak_bytes(model_cfg, shape)
        return Peak(allocated_bytes=b, reserved_bytes=b, constraint_bytes=b, source="predicted",
                    breakdown={"hv_lins": b // 2, "other": b - b // 2}, n_params=1234, backend="torch",
                    device_kind="cpu")


class FakeTrain:
    """Counts training runs and steps; `fail` maps a run's index (0, 1, ...) -> "oom" | "nan"."""

    def __init__(self, fail: dict[int, str] | None = None) -> None:
        self.runs: list = []
        self.steps = 0
        self.fail = fail or {}

    def __call__(self, model_cfg, train_cfg, data, device, on_eval=None):
        reason = self.fail.get(len(self.runs))
        self.runs.append(model_cfg)
        for i in range(train_cfg.eval_points):
            self.steps += train_cfg.steps // train_cfg.eval_points
            if reason == "oom":
                raise OutOfMemory(f"simulated OOM at hidden_dim {model_cfg.hidden_dim}")
            if reason == "nan":
                raise NonFiniteLoss("training loss became nan at step 3")
            if on_eval:
                on_eval(i, 20.0 + i + model_cfg.hidden_dim / 64)
        return types.SimpleNamespace(psnr=21.0 + model_cfg.hidden_dim / 64, bicubic_psnr=20.0, steps_per_s=50.0,
                                     samples_per_s=100.0, flops_per_step=10**6, n_params=1234, backend="torch",
                                     device=str(device), steps_done=train_cfg.steps, train_seconds=0.01)


@pytest.fixture
def fake_probe() -> FakeProbe:
    return FakeProbe()


@pytest.fixture
def fake_train() -> FakeTrain:
    return FakeTrain()


def budget_between(spec: StudySpec, frac: float = 0.5) -> float:
    """A budget (GiB) that cuts the fake peaks of the spec's space: the smallest configs fit, the largest not."""
    space = spec.space
    small = spec.model.replace(hidden_dim=min(space["hidden_dim"]), mult=min(space["mult"]),
                               num_decoder_layers=min(space["num_decoder_layers"]), sigma_ls=(16.0,))
    large = spec.model.replace(hidden_dim=max(space["hidden_dim"]), mult=max(space["mult"]),
                               num_decoder_layers=max(space["num_decoder_layers"]), sigma_ls=(16.0, 4.0))
    lo, hi = fake_peak_bytes(small, spec.target), fake_peak_bytes(large, spec.target)
    return (lo + frac * (hi - lo)) / GIB


def one_line_exit_2(result) -> str:
    """The CLI result's one line of output, asserting exit code 2 (a refused input, with nothing else said)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]
