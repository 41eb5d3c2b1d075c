"""`scent-search map`: the table of every config by peak, the summary, --json, the offline heatmap, and one-line
refusals. Real predictions of a two-config space (seconds)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from scent_search.cli import cli

from tests.search.conftest import one_line_exit_2, write_spec
from tests.search.test_feasibility import _two_configs


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `map` writes its heatmap here without --out


def test_map_prints_the_table_and_summary_and_writes_the_heatmap(tmp_path, sqlite_url):
    spec = _two_configs(tmp_path)
    html = tmp_path / "map.html"
    result = CliRunner().invoke(cli, ["map", str(spec), "--storage", sqlite_url, "--memory-budget", "100",
                                      "--out", str(html)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["hidden_dim", "mult"])
    rows = [ln.split() for ln in lines[header + 1:header + 3]]
    assert [r[1] for r in rows] == ["1", "2"] and all(r[-2:] == ["yes", "predicted"] for r in rows)
    assert float(rows[0][-3]) <= float(rows[1][-3])  # sorted by peak
    assert "2 of 2 configs fit 100 GiB" in lines and "(2 predicted now" in result.output
    assert html.is_file() and "plotly" in html.read_text() and 'src="http' not in html.read_text()

    again = CliRunner().invoke(cli, ["map", str(spec), "--storage", sqlite_url, "--memory-budget", "1e-6", "--json"])
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["configs"] == 2 and data["fit"] == 0 and data["new_predictions"] == 0  # cached
    assert [c["mult"] for c in data["cells"]] == [1, 2] and not any(c["fits"] for c in data["cells"])
    default = tmp_path / f"{data['study']}-map.html"  # without --out: NAME-map.html here
    assert data["out"] == default.name and default.is_file() and "plotly" in default.read_text()


def test_bad_input_is_one_line_exit_2(tmp_path, sqlite_url):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("mult = [1, 2]", "mult = []"))
    assert "space.mult" in one_line_exit_2(CliRunner().invoke(cli, ["map", str(spec), "--storage", sqlite_url]))
    good = write_spec(tmp_path, name="good.toml")
    line = one_line_exit_2(CliRunner().invoke(cli, ["map", str(good), "--storage",
                                                     "postgresql+psycopg://u:secret@127.0.0.1:1/x"]))
    assert "secret" not in line and "127.0.0.1" in line
    line = one_line_exit_2(CliRunner().invoke(cli, ["map", str(good), "--storage", sqlite_url,
                                                     "--out", str(tmp_path / "no" / "map.html")]))
    assert "--out" in line


def test_the_processor_backend_is_said_and_can_be_chosen(tmp_path, sqlite_url):
    """The processor's memory depends on its backend: the map says which it predicts, and --backend picks one."""
    from scent_search.memory._predict import default_backend

    spec = _two_configs(tmp_path)
    here = CliRunner().invoke(cli, ["map", str(spec), "--storage", sqlite_url])
    assert here.exit_code == 0, here.output
    assert f"processor backend {default_backend()}" in here.output.splitlines()[0]
    assert ("--backend mamba_ssm" in here.output) == (default_backend() == "torch")
    chosen = CliRunner().invoke(cli, ["map", str(spec), "--storage", sqlite_url, "--backend", "mamba_ssm", "--json"])
    assert chosen.exit_code == 0, chosen.output
    data = json.loads(chosen.output)
    assert data["backend"] == "mamba_ssm"
    assert data["new_predictions"] == (2 if default_backend() == "torch" else 0)  # another cache key, or the same
