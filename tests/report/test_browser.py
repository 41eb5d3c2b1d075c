"""The report file and the dashboard page in headless chromium: the plots render, with one SVG point per
plotted trial, and optuna-dashboard's own best trial is a trained feasible one. The screenshots in docs/
come from `scripts/screenshots.py`, on the default study.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest

from scent_search import compat
from scent_search.report import attach_all, summarize, write_report
from tests.report.studies import dashboard_server, get_json

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                       reason=f"{CHROMIUM} is absent (in CI this test must run)"),
]

# SVG/HTML void elements have no end tag in the dumped DOM.
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _PointCounter(html.parser.HTMLParser):
    """Counts plotly's points inside the element with a given id: scatter markers are `<path class="point">`,
    bars `<g class="point">`."""

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id, self.depth, self.points, self.found = element_id, 0, 0, False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.depth == 0 and a.get("id") == self.element_id:
            self.found, self.depth = True, 1
            return
        if self.depth:
            if "point" in (a.get("class") or "").split():
                self.points += 1
            if tag not in _VOID:
                self.depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth and "point" in (dict(attrs).get("class") or "").split():
            self.points += 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in _VOID:
            self.depth -= 1


def count_points(dom: str, element_id: str) -> int:
    counter = _PointCounter(element_id)
    counter.feed(dom)
    assert counter.found, f"no element with id {element_id!r} in the rendered page"
    return counter.points


def render(url: str, screenshot: Path, profile: Path, size: str) -> str:
    """Load `url` in headless chromium, let it run (virtual time, so no sleeps), screenshot it and
    return the DOM after the scripts ran."""
    result = subprocess.run(
        [shutil.which("chromium") or CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--hide-scrollbars", f"--window-size={size}",
         f"--screenshot={screenshot}", "--dump-dom", url],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000, "blank screenshot"
    return result.stdout


def plotted(study: optuna.Study) -> int:
    return sum(r.plottable for r in summarize(study).records)


def test_report_renders_one_point_per_trial(rich_study: optuna.Study, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report(rich_study, out)
    dom = render(out.as_uri(), tmp_path / "report.png", tmp_path / "profile", "1300,2600")
    assert plotted(rich_study) == len(rich_study.trials) == 40
    assert count_points(dom, "pareto-front") == 40
    assert "main-svg" in dom  # plotly drew, with the embedded plotly.js and no network


def bar_segments(study: optuna.Study) -> int:
    """Segments of the breakdown figure: one per row of each Pareto trial's itemised peak."""
    names = {row.name for r in summarize(study).pareto for row in r.peak_rows}
    return len(summarize(study).pareto) * len(names)


def test_dashboard_renders_the_custom_pareto_figure(rich_study: optuna.Study, storage_url: str,
                                                    tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(storage_url)
    attach_all(storage)
    with dashboard_server(storage) as base:
        dom = render(f"{base}/dashboard/studies/{compat.study_id(rich_study)}", tmp_path / "dashboard.png",
                     tmp_path / "profile", "1400,2400")
    assert count_points(dom, "user-defined-plot:scent-pareto-budget") == plotted(rich_study)
    assert count_points(dom, "user-defined-plot:scent-memory-breakdown") == bar_segments(rich_study)


def test_dashboard_best_trial_is_feasible_and_trained_and_the_metric_named(tmp_path: Path) -> None:
    """A default-like study whose widest configs are over the budget: optuna-dashboard's own best trial (its
    API and its page) is the best trained feasible trial, never an untrained infeasible one, and the
    metric is called "PSNR ×4 (dB)". The map foresees every config fitting, so that the trials' own peaks
    (as a measurement on a GPU can) make some of them infeasible."""
    from scent_search.search import Peak, load_spec, prepare_run, run_study
    from tests.search.conftest import FakeProbe, FakeTrain, budget_between, write_spec

    url = f"sqlite:///{tmp_path / 'study.db'}"
    spec = write_spec(tmp_path)
    plan = prepare_run(spec, storage=url, n_trials=10, memory_budget=budget_between(load_spec(spec), 0.3))
    run_study(plan, train_fn=FakeTrain(), probe=FakeProbe(), map_probe=lambda m, s: Peak(0, 0, 0, "predicted"))
    storage = optuna.storages.RDBStorage(url)
    attach_all(storage)
    study = optuna.load_study(study_name="tiny", storage=storage)
    records = summarize(study).records
    trained = [r for r in records if r.status == "feasible" and r.psnr is not None]
    assert trained and any(r.status == "infeasible" for r in records)
    best = max(trained, key=lambda r: (r.psnr, -r.number))
    with dashboard_server(storage) as base:
        detail = get_json(f"{base}/api/studies/{compat.study_id(study)}")
        dom = render(f"{base}/dashboard/studies/{compat.study_id(study)}", tmp_path / "dashboard.png",
                     tmp_path / "profile", "1400,2400")
    assert detail["objective_names"] == ["PSNR ×4 (dB)"]
    (shown,) = detail["best_trials"]
    attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
    assert shown["state"] == "Complete" and attrs["feasible"] == "True" and float(attrs["psnr"]) == best.psnr
    assert shown["number"] == best.number and shown["values"] == [best.psnr]
    for t in detail["trials"]:  # nothing untrained carries a value the dashboard could plot or rank
        if {a["key"]: a["value"] for a in t["user_attrs"]}.get("feasible") == "False":
            assert t["state"] == "Pruned" and t.get("values") is None and t["intermediate_values"] == []
    assert f"Best Trial (number={best.number})" in dom
    assert "PSNR ×4 (dB)" in dom
