"""The report page in a real browser (Debian's `chromium`, headless): its plots hold drawn traces, and
a page whose plotly.min.js is missing says so instead of showing empty boxes. Skips without a browser."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from results.report import write_report
from search.profiles import get_profile

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium installed (Debian package `chromium`): "
                                                        "the page is not rendered in a browser")


def _rendered_dom(page: Path, profile_dir: Path) -> str:
    """The page's DOM after its scripts ran (plotly draws the plots as SVG)."""
    done = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile_dir}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        check=True, capture_output=True, text=True, timeout=120)
    return done.stdout


@pytest.fixture(scope="module")
def report_dir(tiny_study) -> Path:
    study, cfg, run_dir = tiny_study
    write_report(study, get_profile(cfg.profile), run_dir / "page-report")
    return run_dir / "page-report"


def test_the_plots_hold_drawn_traces(tiny_study, report_dir, tmp_path):
    study, _, _ = tiny_study
    dom = _rendered_dom(report_dir / "report.html", tmp_path / "browser")
    plots = dom.split('class="plot-container')[1:]
    assert len(plots) == 3, "expected the Pareto plot, the learning curves and the importances"
    pareto, curves, importances = plots
    assert pareto.count('class="point"') >= len(study.trials) + 1  # every trial, and the export choice's ring
    assert curves.count('class="trace scatter') == len(study.trials) and 'class="js-line"' in curves
    assert 'class="trace bars"' in importances
    assert 'id="plotly-missing"' not in dom and "Export will take" in dom


def test_without_plotly_js_the_page_says_so(report_dir, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(report_dir / "report.html", alone / "report.html")  # the page without plotly.min.js beside it
    dom = _rendered_dom(alone / "report.html", tmp_path / "browser")
    assert 'id="plotly-missing"' in dom and "plotly.min.js</code> was not found" in dom
    assert 'class="plot-container' not in dom and "<table id=\"ranking\">" in dom
