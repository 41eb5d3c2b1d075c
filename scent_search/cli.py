"""The `scent-search` command line: a thin click layer over the library.

Domain errors (`ScentError`) become one-line messages with exit code 2 here, and only here.
Each command's docstring carries an example; `--help` shows it.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from scent_search.errors import ScentError


class _Group(click.Group):
    """Converts domain errors raised by any command into `click.UsageError`-style exits (code 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ScentError as e:
            click.echo(f"Error: {e}".splitlines()[0], err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scent-search")
def cli() -> None:
    """Search MambaSCENTHybrid decoder designs under a measured peak-GPU-memory budget.

    \b
    Example:
      scent-search run                       # the embedded default study
      scent-search report default --out report.html
    """


def json_option(f: Callable) -> Callable:
    """Shared `--json` flag: print the same data as the table, as JSON on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")(f)


def storage_option(f: Callable) -> Callable:
    """Shared `--storage URL` option (any SQLAlchemy URL; default: the default study's SQLite file)."""
    return click.option("--storage", metavar="URL", default=None,
                        help="SQLAlchemy URL of the study storage (default: sqlite:///studies/default.db).")(f)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# ---- memory commands: profile, seed-check --------------------------------------------------------

# ---- search commands: run, studies, best ---------------------------------------------------------

# ---- report commands: report, dashboard ----------------------------------------------------------


def main() -> None:
    cli(prog_name="scent-search")


if __name__ == "__main__":
    main()
