"""Open generated reports in a real headless Chromium with the network disabled: every figure renders,
the page logs no error, and hostile labels are shown as text, never run.

Needs Debian's chromium (``apt-get install chromium``) and the playwright Python package; it never
downloads a browser (no ``playwright install``). Skipped, with the reason, where either is missing.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from report_samples import CPU, GPU, records_for, write_jsonl


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


CHROMIUM = _chromium()
HAS_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: install Debian's 'chromium' package (CI does)"),
    pytest.mark.skipif(not HAS_PLAYWRIGHT, reason="the playwright Python package is not installed (pip install "
                                                  "mbcost[test])"),
]

HOSTILE = '</script><script>window.__pwned = 1</script> "q" <b>bold</b>'


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def _open(browser, path: Path) -> tuple[object, list[str], list[str]]:
    """Open ``path`` offline; returns the page, the errors it logged and any network request attempted."""
    context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    requests: list[str] = []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            requests.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_function(
        "() => { const p = [...document.querySelectorAll('.js-plotly-plot')];"
        " return p.length > 0 && p.every(d => d.querySelector('svg.main-svg')); }", timeout=60_000)
    return page, errors, requests


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    from typer.testing import CliRunner

    from mbcost.cli import app

    d = tmp_path_factory.mktemp("browser")
    cpu = write_jsonl(d / "cpu.jsonl", records_for(CPU))
    gpu = write_jsonl(d / "gpu.jsonl", records_for(GPU, label=HOSTILE))
    out = {"plain": d / "plain.html", "measured": d / "measured.html"}
    runner = CliRunner()
    r = runner.invoke(app, ["report", "--input", "224", "--models", "v1,v2,vgg16", "--no-bench",
                            "--out", str(out["plain"])])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", "--models", "v1,v2,vgg16", "--no-bench", "--from", str(cpu), "--from",
                            str(gpu), "--out", str(out["measured"])])
    assert r.exit_code == 0, r.output
    return out


def _check_figures(page, errors: list[str], requests: list[str]) -> None:
    expected = int(page.get_attribute("main", "data-figures"))
    plots = page.locator(".js-plotly-plot")
    assert plots.count() == expected == 13
    for i in range(expected):
        plot = plots.nth(i)
        assert plot.locator("svg.main-svg").count() >= 1
        assert plot.locator(".gtitle").first.text_content().strip()  # every figure has its title drawn
        for axis in ("x", "y"):  # xtitle, x2title, ...: at least one titled axis of each kind
            assert plot.locator(f"text[class^='{axis}'][class$='title']").count() >= 1
    assert errors == []
    assert requests == []  # nothing tried to leave the file


def test_report_without_measurements_renders_offline(browser, reports):
    page, errors, requests = _open(browser, reports["plain"])
    _check_figures(page, errors, requests)
    assert "not measured" in page.locator("[data-figure='latency']").text_content()
    assert "not measured" in page.locator("[data-figure='roofline']").text_content()
    _check_claims(page, measured=False)
    page.context.close()


def _check_claims(page, *, measured: bool) -> None:
    """The claims section comes first, and its figures drew their points."""
    assert page.locator("#claims tbody tr").count() == 8
    assert page.locator("#claims-h").bounding_box()["y"] < page.locator("#conventions").bounding_box()["y"]
    spirals = page.locator("[data-figure='spirals']")
    assert spirals.locator(".scatterlayer .trace").count() == 6  # the input and n = 2, 3, 5, 15, 30
    assert spirals.locator(".scatterlayer .point").count() > 6 * 300
    assert page.locator("[data-figure='bottleneck_error'] .scatterlayer .trace").count() == 3
    frontier = page.locator("[data-figure='frontier']")
    assert frontier.locator(".subplot.xy .scatterlayer .point").count() == 31  # every quoted model
    assert frontier.locator(".subplot.x2y2 .scatterlayer .point").count() == (6 if measured else 0)
    assert page.locator("#v2-table tbody tr").count() == 11


def test_merged_report_renders_offline_and_hostile_labels_stay_text(browser, reports):
    page, errors, requests = _open(browser, reports["measured"])
    _check_figures(page, errors, requests)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    runs_text = page.locator("#runs").text_content()
    assert HOSTILE in runs_text  # shown literally in the table
    assert page.locator("#runs b").count() == 0  # and no tag of it became an element
    legend = page.locator("[data-figure='latency'] .legendtext").all_text_contents()
    assert "Intel Xeon Gold 6354 float32" in legend
    assert any("window.__pwned" in t and "<b>bold</b>" in t for t in legend), legend
    assert page.locator("[data-figure='roofline'] .scatterlayer .point").count() > 50  # layers placed
    _check_claims(page, measured=True)
    page.context.close()
