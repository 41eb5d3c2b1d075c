"""`scent-search report` and `scent-search dashboard` at the command line."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner

from scent_search.cli import cli


def test_report_writes_html_csv_and_json(rich_study: optuna.Study, storage_url: str, tmp_path) -> None:
    out, csv_path, json_path = tmp_path / "r.html", tmp_path / "t.csv", tmp_path / "t.json"
    result = CliRunner().invoke(cli, ["report", "rich", "--storage", storage_url, "--out", str(out),
                                      "--csv", str(csv_path), "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    assert "40 trials" in result.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert len(csv_path.read_text().splitlines()) == 41
    assert json.loads(json_path.read_text())["study"] == "rich"


def test_report_on_a_missing_study_exits_2_with_one_line(rich_study: optuna.Study, storage_url: str,
                                                          tmp_path) -> None:
    result = CliRunner().invoke(cli, ["report", "nope", "--storage", storage_url, "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "no study named 'nope'" in result.output and "'rich'" in result.output
    assert not (tmp_path / "r.html").exists()


def test_report_on_a_missing_storage_file_exits_2_and_creates_nothing(tmp_path) -> None:
    db = tmp_path / "absent.db"
    result = CliRunner().invoke(cli, ["report", "x", "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "no such SQLite file" in result.output
    assert not db.exists()


def test_unreachable_storage_message_hides_the_password(tmp_path) -> None:
    url = "postgresql+psycopg://user:s3cret@127.0.0.1:1/db"
    result = CliRunner().invoke(cli, ["report", "x", "--storage", url, "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "s3cret" not in result.output and "Error: " in result.output


@pytest.mark.parametrize("command", ["report", "dashboard"])
def test_commands_have_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"scent-search {command}" in result.output


@pytest.mark.parametrize("flag", ["--out", "--csv", "--json"])
@pytest.mark.parametrize("bad", ["no/such/dir/f", "afile/f"])
def test_an_unwritable_output_is_refused_before_anything_is_written(rich_study: optuna.Study, storage_url: str,
                                                                    tmp_path, flag: str, bad: str) -> None:
    (tmp_path / "afile").write_text("a file")
    outputs = {"--out": tmp_path / "r.html", "--csv": tmp_path / "t.csv", "--json": tmp_path / "t.json"}
    outputs[flag] = tmp_path / bad
    args = [a for f, p in outputs.items() for a in (f, str(p))]
    result = CliRunner().invoke(cli, ["report", "rich", "--storage", storage_url, *args])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {flag}: ") and str(tmp_path / bad) in line
    assert not any(p.exists() for p in outputs.values())  # not the HTML either, when --csv is the bad one
