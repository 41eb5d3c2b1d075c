"""Regenerate docs/report-screenshot.png and docs/dashboard-screenshot.png from a study.

    python scripts/screenshots.py                      # runs the default study first (a few minutes on 2 CPU cores)
    python scripts/screenshots.py --storage sqlite:///studies/default.db --study default

Without --storage it runs the default study (`scent-search run` with no STUDY.toml) into a temporary
SQLite file. It writes the report, attaches the dashboard artifacts, serves optuna-dashboard in-process on a
free local port, and screenshots both pages with Debian's headless /usr/bin/chromium, the way
tests/report/test_browser.py drives it (nothing is downloaded). Run it from the repository root.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' browser helpers: one way to drive chromium and serve the dashboard

from scent_search import compat  # noqa: E402
from scent_search.records import load_study, open_existing  # noqa: E402
from scent_search.report import (DashboardArtifactsCallback, TerminalReporter, attach_all,  # noqa: E402
                                 write_report)
from scent_search.search import prepare_run, run_study  # noqa: E402
from tests.report.studies import dashboard_server  # noqa: E402
from tests.report.test_browser import render  # noqa: E402

REPORT_SIZE, DASHBOARD_SIZE = "1300,3000", "1400,2400"  # px: the window each page is drawn in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="SQLAlchemy URL of an existing study (default: run the default study)")
    parser.add_argument("--study", default="default", help="study name (default: default)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder of the PNGs (default: docs/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        url = args.storage
        if url is None:
            url = f"sqlite:///{tmp_path / 'default.db'}"
            plan = prepare_run(None, storage=url, study_name=args.study)
            run_study(plan, TerminalReporter(bar=False), after_trial=DashboardArtifactsCallback())
        storage = open_existing(url)
        study = load_study(storage, args.study, url)
        report = tmp_path / "report.html"
        write_report(study, report)
        args.out.mkdir(parents=True, exist_ok=True)
        render(report.as_uri(), args.out / "report-screenshot.png", tmp_path / "profile-report", REPORT_SIZE)
        attach_all(storage)
        with dashboard_server(storage) as base:
            render(f"{base}/dashboard/studies/{compat.study_id(study)}", args.out / "dashboard-screenshot.png",
                   tmp_path / "profile-dashboard", DASHBOARD_SIZE)
    print(f"wrote {args.out / 'report-screenshot.png'} and {args.out / 'dashboard-screenshot.png'}")


if __name__ == "__main__":
    main()
