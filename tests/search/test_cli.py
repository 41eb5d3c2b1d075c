"""`scent-search run / studies / best` through click, on real storage and with real training."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from scent_search.cli import cli

from tests.search.conftest import write_spec

SEARCH_COMMANDS = ("run", "studies", "best")
BUDGET = 0.33  # GiB: the tiny spec's predicted peaks are 0.32-0.35 GiB (mostly the reserved-memory allowance)

# docs/internals.md "Trial records": what every trial carries, and what a trained one adds.
EVERY_TRIAL = {"peak_allocated_bytes", "peak_reserved_bytes", "peak_gib", "peak_source", "budget_gib", "feasible",
               "breakdown", "n_params", "backend", "device"}
TRAINED = {"psnr", "bicubic_psnr", "steps_per_s", "samples_per_s", "flops_per_step"}


@pytest.mark.parametrize("command", SEARCH_COMMANDS)
def test_every_search_command_has_help_with_an_example(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output


@pytest.mark.slow
def test_small_study_end_to_end(tmp_path, sqlite_url, study_name):
    """Real profile (predicted on CPU) and real training of a tiny config; every trial is stored with its
    constraint (both forms) and its records, and `studies` / `best` read them back."""
    spec = write_spec(tmp_path, budget=BUDGET)
    result = CliRunner().invoke(cli, ["run", str(spec), "--storage", sqlite_url, "--study-name", study_name,
                                      "--n-trials", "4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Best feasible trial" in result.output and "Pareto set" in result.output and sqlite_url in result.output
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    assert len(study.trials) == 4
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        assert t.constraints["peak_memory"] == pytest.approx(t.user_attrs["peak_gib"] - BUDGET)
        assert t.system_attrs["constraints"] == [t.constraints["peak_memory"]]
        assert EVERY_TRIAL <= set(t.user_attrs)
        assert t.user_attrs["peak_source"] == "predicted" and t.user_attrs["device"] == "cpu"
        if t.user_attrs["feasible"] and t.user_attrs.get("duplicate_of") is None:
            assert TRAINED <= set(t.user_attrs) and t.user_attrs["steps_done"] == 6
            assert t.value == t.user_attrs["psnr"]
    assert study.user_attrs["spec"]["budget_gib"] == BUDGET
    assert any(t.user_attrs["feasible"] and "psnr" in t.user_attrs for t in study.trials), "nothing was trained"

    listed = CliRunner().invoke(cli, ["studies", "--storage", sqlite_url, "--json"])
    assert listed.exit_code == 0
    (row,) = [r for r in json.loads(listed.output) if r["study"] == study_name]
    assert row["trials"] == 4
    best = CliRunner().invoke(cli, ["best", study_name, "--storage", sqlite_url, "--json"])
    assert best.exit_code == 0
    data = json.loads(best.output)
    if any(t.user_attrs["feasible"] for t in study.trials):
        assert data["best"]["psnr"] == max(t.user_attrs.get("psnr", -1) for t in study.trials)
        assert data["model_config"]["hidden_dim"] == data["best"]["params"]["hidden_dim"]


def _one_line_exit_2(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_bad_spec_is_one_line_exit_2(tmp_path, sqlite_url):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("mult = [1, 2]", "mult = []"))
    line = _one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", sqlite_url]))
    assert str(spec) in line and "space.mult" in line


def test_unknown_key_is_one_line_exit_2(tmp_path, sqlite_url):
    spec = write_spec(tmp_path)
    spec.write_text('colour = "blue"\n' + spec.read_text())
    line = _one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", sqlite_url]))
    assert "colour" in line and "unknown key" in line


def test_unreachable_database_is_one_line_exit_2(tmp_path):
    spec = write_spec(tmp_path)
    url = "postgresql+psycopg://scent:hunter2@127.0.0.1:1/nowhere"
    line = _one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", url]))
    assert "hunter2" not in line and "127.0.0.1" in line


@pytest.mark.parametrize("args, words", [
    (["--n-trials", "0"], "--n-trials"),
    (["--memory-budget", "0"], "--memory-budget"),
    (["--device", "gpu"], "--device"),
    (["--workers", "2"], "PostgreSQL"),
])
def test_bad_arguments_exit_2(tmp_path, sqlite_url, args, words):
    spec = write_spec(tmp_path)
    result = CliRunner().invoke(cli, ["run", str(spec), "--storage", sqlite_url, *args])
    assert result.exit_code == 2 and words in result.output


def test_best_of_unknown_study_and_missing_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    _one_line_exit_2(CliRunner().invoke(cli, ["best", "nope", "--storage", url]))
    _one_line_exit_2(CliRunner().invoke(cli, ["studies", "--storage", url]))
    assert not (tmp_path / "none.db").exists()  # reading never creates a database
