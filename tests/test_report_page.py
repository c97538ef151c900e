"""The report page in a real browser (Debian's `chromium`, headless): its plots hold drawn traces, a
page whose plotly.min.js is missing says so instead of showing empty boxes, and in a 1,024 px window the
ranking scrolls inside its box while the size-tier labels do not overlap. Skips without a browser."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from results.report import write_report
from search.profiles import get_profile

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium installed (Debian package `chromium`): "
                                                        "the page is not rendered in a browser")


MEASURE = """<script>window.addEventListener('load', () => setTimeout(() => {
  const box = document.querySelector('.scroll');
  const tiers = [...document.querySelectorAll('.legendtext')].filter(t => t.textContent.startsWith('size tier'))
    .map(t => t.getBoundingClientRect());
  const overlap = tiers.some((a, i) => tiers.slice(i + 1).some(
    b => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom));
  const out = document.createElement('pre');
  out.id = 'measure';
  const page = document.documentElement;
  out.textContent = JSON.stringify({page: page.scrollWidth, window: page.clientWidth,
    box: box.clientWidth, table: box.scrollWidth, tiers: tiers.length, overlap: overlap});
  document.body.appendChild(out);
}, 1000));</script>"""
"""Appended to a copy of the page: measures the layout after plotly drew and writes it into the DOM."""


def _rendered_dom(page: Path, profile_dir: Path, width: int | None = None) -> str:
    """The page's DOM after its scripts ran (plotly draws the plots as SVG), in a `width` px window if given."""
    done = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile_dir}",
         *([f"--window-size={width},900"] if width else []), "--virtual-time-budget=10000", "--dump-dom",
         page.as_uri()],
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


def test_at_1024_px_the_ranking_scrolls_in_its_box_and_tier_labels_do_not_overlap(report_dir, tmp_path):
    measured = report_dir / "measured.html"  # beside plotly.min.js
    measured.write_text((report_dir / "report.html").read_text().replace("</body>", MEASURE + "</body>"))
    dom = _rendered_dom(measured, tmp_path / "browser", width=1024)
    m = json.loads(dom.split('<pre id="measure">', 1)[1].split("</pre>", 1)[0])
    assert m["page"] <= m["window"] <= 1024  # nothing sticks out of the window: the page is not cut
    assert m["table"] > m["box"]  # the ranking is wider than the window and scrolls inside its own box
    assert m["tiers"] == 4 and not m["overlap"]
