"""`scent-search profile` and `seed-check` at the CLI boundary."""

import json

import pytest
from click.testing import CliRunner

from scent_search.cli import cli

TINY = ["--set", "dim=32", "--set", "num_lp_tokens=16", "--set", "feature_dim=16", "--set", "hidden_dim=32",
        "--set", "mult=2", "--set", "num_processor_layers=1", "--set", "num_decoder_layers=2",
        "--set", "sigma_ls=[32, 8]", "--batch-size", "2", "--queries", "16",
        "--lr-size", "8"]


@pytest.mark.parametrize("command", ["profile", "seed-check"])
def test_memory_commands_have_help_with_an_example(command):
    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0 and "Example" in res.output


def test_profile_prints_components_in_gib_and_json(tmp_path):
    res = CliRunner().invoke(cli, ["profile", *TINY])
    assert res.exit_code == 0, res.output
    for name in ("modulation_ca", "bandwidth_lins[1]", "optimizer_state", "peak allocated", "constraint",
                 "calibration margin", "reserved allowance"):
        assert name in res.output
    res = CliRunner().invoke(cli, ["profile", *TINY, "--json", "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    prof = data["profile"]
    assert sum(prof["breakdown"].values()) == prof["peak_allocated_bytes"]
    assert data["constraint_bytes"] > prof["peak_allocated_bytes"]


def _table_rows(output: str) -> dict[str, float]:
    """name -> GiB of the table's rows (sub-rows "  name[i]" and totals "= ..." apart)."""
    rows = {}
    for line in output.splitlines():
        parts = line[:32].rsplit(None, 1)
        if len(parts) == 2 and not line.startswith(" ") and not line.startswith("= "):
            try:
                rows[parts[0].strip()] = float(parts[1])
            except ValueError:
                pass
    return rows


def test_profile_rows_add_up_to_the_constraint():
    """Every row of the breakdown, components and what they do not cover, sums to the constraint's figure:
    in --json to the byte, in the table to its rounding."""
    res = CliRunner().invoke(cli, ["profile", *TINY, "--json"])
    data = json.loads(res.output)
    rows = data["rows"]
    assert [r["name"] for r in rows][-2:] == ["calibration margin", "reserved allowance"]
    assert sum(r["bytes"] for r in rows) == data["constraint_bytes"]
    assert rows[-1]["bytes"] == 256 * 2**20 and "10%" in rows[-2]["note"]
    table = CliRunner().invoke(cli, ["profile", *TINY]).output
    parts = _table_rows(table)
    constraint = float(next(ln for ln in table.splitlines() if ln.startswith("= constraint")).split()[2])
    assert set(parts) == {r["name"] for r in rows}
    assert abs(sum(parts.values()) - constraint) <= 0.0005 * len(parts)


def test_bad_set_key_is_a_one_line_exit_2():
    res = CliRunner().invoke(cli, ["profile", "--set", "hiddn_dim=256"])
    assert res.exit_code == 2
    assert "hiddn_dim" in res.output and len(res.output.strip().splitlines()) == 1


def test_max_batch_finds_a_batch_that_fits():
    res = CliRunner().invoke(cli, ["profile", *TINY, "--max-batch", "--budget", "0.5", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["max_batch_size"] >= 1 and data["constraint_bytes"] <= 0.5 * 2 ** 30


def test_calibrate_needs_a_gpu_device():
    res = CliRunner().invoke(cli, ["profile", *TINY, "--calibrate"])
    assert res.exit_code == 2 and "--calibrate" in res.output


@pytest.mark.slow
def test_seed_check_lists_every_claim_with_the_tools_figure():
    res = CliRunner().invoke(cli, ["seed-check", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    claims = {c["claim"]: c for c in data["claims"]}
    assert len(claims) == 18 and data["tolerance"] == 0.25 and data["backend"] == "mamba_ssm"
    assert claims["18 FeedForwards (decoder)"]["holds"] and not claims["10 FeedForwards (decoder)"]["holds"]
    # the two FeedForward figures contradict each other: at most one can hold
    assert not (claims["each FeedForward ~ 2 GB"]["holds"] and claims["each FeedForward ~ 536 MB"]["holds"])
    # sharing shrinks parameters, not activations: no 2x reduction
    assert not claims["solution-4 (sharing): 2x reduction"]["holds"]
    # one decoder layer still runs hv_lins' two FeedForwards (the researcher's code)
    one_layer = claims["solution-3 (1 decoder layer): no FeedForward left"]
    assert one_layer["tool"] == 2 and not one_layer["holds"]
    table = CliRunner().invoke(cli, ["seed-check"])
    assert table.exit_code == 0 and "claims hold" in table.output


def test_unusable_storage_is_a_one_line_exit_2(tmp_path):
    res = CliRunner().invoke(cli, ["profile", *TINY, "--storage", f"sqlite:///{tmp_path}/missing/dir/s.db"])
    assert res.exit_code == 2 and "memory-profile tables" in res.output
    assert len(res.output.strip().splitlines()) == 1
