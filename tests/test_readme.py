"""The README's two set-up commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_main_job_and_test_commands():
    main_job, tests = readme_commands()[:2]
    assert "scent-search run" in main_job and main_job.startswith("bash scripts/setup")
    assert "pytest" in tests and tests.startswith("bash scripts/setup")


def test_ci_runs_the_readme_test_command():
    tests = readme_commands()[1]
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_cli_command_is_documented_in_the_readme():
    from scent_search.cli import cli

    text = (ROOT / "README.md").read_text()
    for name in cli.commands:
        assert f"scent-search {name}" in text
