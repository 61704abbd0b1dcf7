"""report.html in a real browser (headless Chromium): no console errors, plots loaded and visible.

Not skipped when Chromium is missing: it fails and says to run `make test`, which installs it.
"""

from __future__ import annotations

import pytest

from peftlab.report import write_report
from peftlab.report.explorer import SCRIPT
from tests.report.browser import chromium, missing
from tests.report.fakes import XSS, sql_comparison


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return write_report(sql_comparison(tmp_path_factory.mktemp("browser") / "cmp"), examples=[0, 1])


@pytest.fixture(scope="module")
def browser():
    if (why := missing()) is not None:
        pytest.fail(why, pytrace=False)
    with chromium() as driver:
        yield driver


def test_report_renders_without_errors(browser, report):
    browser.get(report.resolve().as_uri())
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")  # lazy anything would load now
    logs = browser.get_log("browser")
    errors = [e for e in logs if e["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"

    images = browser.execute_script("""
        return Array.from(document.images).map(img => {
            const r = img.getBoundingClientRect();
            return {alt: img.alt, complete: img.complete, natural: img.naturalWidth, w: r.width, h: r.height,
                    shown: getComputedStyle(img).visibility !== 'hidden' && getComputedStyle(img).display !== 'none'};
        });""")
    assert len(images) == 6, images
    for img in images:
        assert img["complete"] and img["natural"] > 0, f"plot not loaded: {img}"
        assert img["w"] > 200 and img["h"] > 100 and img["shown"], f"plot not visible: {img}"

    # Nothing was fetched: every resource the page used is inline (data: URIs).
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))"
    )
    assert fetched == []


def test_injected_markup_is_text_not_code(browser, report):
    browser.get(report.resolve().as_uri())
    # One script, peftlab's explorer (the CSP admits it by hash); the injected one is text.
    scripts = browser.execute_script("return Array.from(document.scripts).map(s => s.textContent)")
    assert scripts == [SCRIPT]
    body = browser.execute_script("return document.body.innerText")
    assert XSS in body  # shown as the literal prediction
    # The collapsed input opens on click.
    opened = browser.execute_script("""
        const d = document.querySelector('details.input'); d.querySelector('summary').click();
        return [d.open, d.querySelector('pre').getBoundingClientRect().height];""")
    assert opened[0] is True and opened[1] > 0
