"""The HTML report: self-contained, holds every trial's point, renders edge cases, escapes study text."""

from __future__ import annotations

import html.parser

import optuna
import pytest
from optuna.trial import TrialState

from scent_search.report import render_report, write_report
from tests.report.studies import BUDGET, SPACE, make_study, trial_record

P = {"hidden_dim": 256, "mult": 2, "num_decoder_layers": 2, "share_scales": False, "sigma_ls": "64"}


class _Refs(html.parser.HTMLParser):
    """Every URL a page would load: script src, link href, img/iframe src, CSS url(...)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) and tag in ("script", "link", "img", "iframe", "embed", "source"):
                self.urls.append(a[key])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and ("url(" in data or "@import" in data):
            self.urls.append(f"css: {data.strip()[:60]}")


def test_report_is_self_contained_and_holds_every_trial(rich_study: optuna.Study, tmp_path) -> None:
    out = tmp_path / "report.html"
    write_report(rich_study, out)
    page = out.read_text(encoding="utf-8")
    refs = _Refs()
    refs.feed(page)
    assert refs.urls == []  # no external script, stylesheet, image or CSS url
    assert "Plotly.newPlot" in page and len(page) > 3_000_000  # plotly.js itself is in the page
    for t in rich_study.trials:
        assert f'"trial-{t.number}"' in page, f"trial {t.number} has no point in the Pareto figure"
    for div in ("pareto-front", "memory-breakdown", "param-importance", "history"):
        assert f'id="{div}"' in page
    assert 'id="pareto-table"' in page


def _page(storage_url: str, name: str, trials: list, **kw) -> str:
    return render_report(make_study(storage_url, name, trials, **kw))


def test_empty_study_renders_and_says_so(storage_url: str) -> None:
    page = _page(storage_url, "empty", [])
    assert "The study has no trial yet." in page
    assert "No Pareto trial." in page


def test_study_without_completed_trial_renders_and_says_so(storage_url: str) -> None:
    study = make_study(storage_url, "none-complete", [trial_record(P, TrialState.PRUNED, psnr=25.0),
                                                       trial_record(P, TrialState.FAIL, fail_reason="nan")])
    study.ask()  # and one still running
    page = render_report(study)
    assert "No trial has completed yet: there is no Pareto front." in page
    assert "1 trial(s) are still running and not shown." in page
    assert '"trial-0"' in page and '"trial-1"' in page and '"trial-2"' not in page


def test_study_without_feasible_trial_renders_and_says_so(storage_url: str) -> None:
    page = _page(storage_url, "infeasible", [trial_record(P, TrialState.PRUNED, peak_gib=BUDGET + 1 + i)
                                             for i in range(3)])
    assert f"No completed trial is feasible under the {BUDGET:g} GiB budget with a PSNR" in page
    assert "No feasible trial with a PSNR: no Pareto front." in page  # said in the figure too
    assert all(f'"trial-{i}"' in page for i in range(3))


def test_study_with_one_objective_value_renders_and_says_so(storage_url: str) -> None:
    page = _page(storage_url, "one", [trial_record(P, TrialState.COMPLETE, psnr=27.0)], spec=False)
    assert "Only one trial has a PSNR value" in page
    assert "Not enough trials with a PSNR \\u00d74 value (1; needs 2)." in page  # plotly's JSON escapes "×"
    assert 'id="pareto-table"' in page  # the single trial is the front


def test_pareto_trials_that_do_not_beat_bicubic_are_flagged(storage_url: str) -> None:
    page = _page(storage_url, "weak", [trial_record(P, TrialState.COMPLETE, psnr=23.5)])  # bicubic is 24
    assert "1 Pareto trial(s) do not beat bicubic upsampling" in page


def test_study_text_is_escaped(storage_url: str) -> None:
    evil = '<script>alert("x")</script>'
    space = dict(SPACE, sigma_ls=optuna.distributions.CategoricalDistribution(["<b>64</b>", "128,32"]))
    trial = optuna.trial.create_trial(params={**P, "sigma_ls": "<b>64</b>"}, distributions=space, value=27.0,
                                      user_attrs={"peak_gib": 1.0, "psnr": 27.0, "peak_source": evil},
                                      system_attrs={"constraints:peak_memory": -1.0})
    study = make_study(storage_url, f"study {evil}", [trial])
    study.set_user_attr("device", '<img src=x onerror="alert(1)">')
    page = render_report(study)
    assert evil not in page and "<b>64</b>" not in page and "<img src=x" not in page
    assert "scent-search report: study &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=" in page


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_attrs_render_as_missing(storage_url: str, bad: str) -> None:
    t = trial_record(P, TrialState.COMPLETE, psnr=27.0, steps_per_s=float(bad))
    page = _page(storage_url, "nonfinite", [t])
    table = page[page.index('id="pareto-table"'):]
    table = table[:table.index("</table>")]
    assert "27.00" in table and "nan" not in table.lower() and "inf" not in table.lower()
