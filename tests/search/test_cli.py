"""`scent-search run / studies / best` through click, on real storage and with real training."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from scent_search.cli import cli

from tests.search.conftest import one_line_exit_2, write_spec

SEARCH_COMMANDS = ("run", "studies", "best")
BUDGET = 0.334  # GiB: the tiny spec's predicted peaks are 0.330-0.363 GiB (mostly the reserved allowance): about half fit

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
        # trained (or copied) feasible configs COMPLETE; infeasible ones end PRUNED, untrained, with no value
        assert t.state == (TrialState.COMPLETE if t.user_attrs["feasible"] else TrialState.PRUNED)
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


def test_bad_spec_is_one_line_exit_2(tmp_path, sqlite_url):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("mult = [1, 2]", "mult = []"))
    line = one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", sqlite_url]))
    assert str(spec) in line and "space.mult" in line


def test_unknown_key_is_one_line_exit_2(tmp_path, sqlite_url):
    spec = write_spec(tmp_path)
    spec.write_text('colour = "blue"\n' + spec.read_text())
    line = one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", sqlite_url]))
    assert "colour" in line and "unknown key" in line


def test_unreachable_database_is_one_line_exit_2(tmp_path):
    spec = write_spec(tmp_path)
    url = "postgresql+psycopg://scent:hunter2@127.0.0.1:1/nowhere"
    line = one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", url]))
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
    one_line_exit_2(CliRunner().invoke(cli, ["best", "nope", "--storage", url]))
    one_line_exit_2(CliRunner().invoke(cli, ["studies", "--storage", url]))
    assert not (tmp_path / "none.db").exists()  # reading never creates a database


# ---- the edges: each a one-line exit 2 naming the culprit, and nothing half-created ----------


def _nothing_stored(db) -> None:
    assert not db.exists() and not db.parent.exists(), "a refused run created storage"


@pytest.mark.parametrize("args, old, new, key", [
    (["--memory-budget", "inf"], "", "", "--memory-budget"),
    ([], "budget_gib = 1.0", "budget_gib = inf", "budget_gib"),
    ([], "lr = 1e-3", "lr = nan", "train.lr"),
])
def test_infinite_budget_is_refused(tmp_path, args, old, new, key):
    """`inf` would store the constraint -inf: every config 'feasible', and a summary that cannot print."""
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace(old, new))
    db = tmp_path / "store" / "s.db"
    line = one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", f"sqlite:///{db}", *args]))
    assert key in line and ("inf" in line or "nan" in line)
    _nothing_stored(db)


def test_sqlite_file_under_a_file_is_refused(tmp_path):
    spec = write_spec(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    line = one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", f"sqlite:///{afile}/x.db"]))
    assert str(afile) in line and "not a folder" in line
    assert afile.read_text() == "not a folder"


def test_sqlite_folder_that_cannot_be_made_is_refused(tmp_path):
    spec = write_spec(tmp_path)
    line = one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", "sqlite:////proc/nope/x.db"]))
    assert "/proc/nope" in line and "cannot create folder" in line


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "not a folder of images"),
    (lambda d: d.mkdir(), "no PNG/JPEG images"),
    (lambda d: (d.mkdir(), *(_png(d / f"{i}.png", 8) for i in range(2))), "smaller than"),
])
def test_bad_data_is_refused_before_the_study_exists(tmp_path, study_name, make, words):
    """A bad folder used to be found in trial 0, after the study and a FAIL trial were stored; the corrected
    command was then refused with "data differs from the stored study"."""
    folder = tmp_path / "images"
    make(folder)
    spec = write_spec(tmp_path, extra="")
    spec.write_text(f'data = "{folder}"\n' + spec.read_text())
    db = tmp_path / "store" / "s.db"
    url = f"sqlite:///{db}"
    line = one_line_exit_2(CliRunner().invoke(cli, ["run", str(spec), "--storage", url, "--study-name", study_name]))
    assert str(folder) in line and words in line
    _nothing_stored(db)
    # The corrected spec starts the study afresh.
    spec.write_text(spec.read_text().replace(f'data = "{folder}"\n', ""))
    from scent_search.search import prepare_run

    assert prepare_run(spec, storage=url, study_name=study_name).finished == 0


def _png(path, side):
    from PIL import Image

    Image.new("RGB", (side, side), (120, 30, 200)).save(path)


def test_printed_commands_are_shell_quoted(spec_path, tmp_path, fake_probe, fake_train):
    """The `report:` line of the summary, pasted into a shell, reports that study."""
    import io
    import shlex

    from scent_search.report import TerminalReporter
    from scent_search.search import prepare_run, run_study

    name = "it's a $(study); rm -rf x"
    url = f"sqlite:///{tmp_path / 'odd dir' / 'a b.db'}"
    out = io.StringIO()
    plan = prepare_run(spec_path, storage=url, study_name=name, n_trials=1, memory_budget=100.0)
    run_study(plan, TerminalReporter(out=out, bar=False), train_fn=fake_train, probe=fake_probe)
    (line,) = [ln for ln in out.getvalue().splitlines() if ln.strip().startswith("report:")]
    argv = shlex.split(line.split("report:", 1)[1])
    assert argv[:5] == ["scent-search", "report", name, "--storage", url]
    html = tmp_path / "r.html"
    result = CliRunner().invoke(cli, [*argv[1:-2], "--out", str(html)])
    assert result.exit_code == 0, result.output
    assert html.is_file()
    (line,) = [ln for ln in out.getvalue().splitlines() if ln.strip().startswith("dashboard:")]
    assert shlex.split(line.split("dashboard:", 1)[1]) == ["scent-search", "dashboard", "--storage", url]


def test_ctrl_c_message_says_what_happens_on_resume(spec_path, sqlite_url, study_name, fake_probe):
    """Interrupted trials do not count: a resume retries or replaces them (they are not 'redone')."""
    import io

    from scent_search.report import TerminalReporter
    from scent_search.search import prepare_run, run_study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = io.StringIO()
    plan = prepare_run(spec_path, storage=sqlite_url, study_name=study_name, n_trials=2, memory_budget=100.0)
    outcome = run_study(plan, TerminalReporter(out=out, bar=False), train_fn=interrupted, probe=fake_probe)
    assert outcome.interrupted
    (line,) = [ln for ln in out.getvalue().splitlines() if ln.startswith("Interrupted:")]
    assert "retried or replaced" in line and "redone" not in line
    study = optuna.load_study(study_name=study_name, storage=sqlite_url)
    assert [t.user_attrs.get("fail_reason") for t in study.trials] == ["interrupted"]


def test_best_and_studies_read_a_study_stored_with_an_infinite_budget(tmp_path, sqlite_url, study_name):
    """Such studies exist (older versions took `inf`): reading them must not crash."""
    from tests.report.studies import P_DEFAULT, make_study, trial_record

    trial = trial_record(P_DEFAULT, TrialState.COMPLETE, budget=float("inf"), psnr=27.0)
    make_study(sqlite_url, study_name, [trial], budget=float("inf"))
    result = CliRunner().invoke(cli, ["best", study_name, "--storage", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "PSNR 27.00 dB" in result.output and "unknown budget" in result.output
    assert CliRunner().invoke(cli, ["studies", "--storage", sqlite_url]).exit_code == 0
