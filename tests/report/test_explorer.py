"""The report's Pareto explorer: its data, and the page in headless Chromium (axes, hover, filters)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from peftlab.report import write_report
from peftlab.report.aggregate import compare_runs
from peftlab.report.explorer import SCRIPT_HASH, data
from peftlab.report.pareto import pareto_front
from peftlab.report.runs import load_runs
from tests.report.browser import chromium, missing
from tests.report.fakes import SQL_LABELS, sql_comparison


class Attr(HTMLParser):
    """Collects the data-explorer attribute as a browser would decode it."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found += [v for k, v in attrs if k == "data-explorer"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return write_report(sql_comparison(tmp_path_factory.mktemp("explorer") / "cmp"), examples=[0])


def test_one_point_per_run_with_its_summary_values(report):
    comp = compare_runs(load_runs(report.parent))[0]
    d = data(comp, {})
    assert len(d["points"]) == sum(len(accs) for _, accs, *_ in SQL_LABELS.values())
    lora = [p for p in d["points"] if p["label"] == "lora"]
    assert [p["trainable_params"] for p in lora] == [SQL_LABELS["lora"][2]] * 2
    assert sorted(p["seed"] for p in lora) == [0, 1]
    run = next(r for r in comp.runs if r.name == lora[0]["run"])
    assert lora[0]["score"] == run.score and lora[0]["flops"] == run.summary.flops
    # The leaderboard's verdict travels with every point: the same top group everywhere.
    for e in comp.entries:
        for p in (p for p in d["points"] if p["label"] == e.label):
            assert (p["top"], p["standing"]) == (e.tie.in_top_group, e.tie.word)
    assert any(p["top"] for p in d["points"]) and not all(p["top"] for p in d["points"])
    keys = [a["key"] for a in d["axes"]]
    # only the measures these runs recorded: no forgetting, no latency in the fake comparison
    assert keys[:2] == ["score", "trainable_params"] and "forgetting_delta" not in keys and "ms_per_token" not in keys
    assert next(a for a in d["axes"] if a["key"] == "score")["higher"] is True


def test_the_page_carries_the_data_escaped_and_admits_only_its_own_script(report):
    text = report.read_text()
    parser = Attr()
    parser.feed(text)
    assert len(parser.found) == 1
    decoded = json.loads(parser.found[0])
    assert {p["label"] for p in decoded["points"]} == set(SQL_LABELS)
    assert f"script-src '{SCRIPT_HASH}'" in text and text.count("<script>") == 1


@pytest.fixture(scope="module")
def page(report):
    if (why := missing()) is not None:
        pytest.fail(why, pytrace=False)
    with chromium() as driver:
        driver.get(report.resolve().as_uri())
        yield driver


def circles(driver, selector: str = "circle.pt") -> list[dict]:
    return driver.execute_script(
        f"""return Array.from(document.querySelectorAll('.explorer {selector}')).map(c => ({{
            run: c.dataset.run, label: c.dataset.label, cx: +c.getAttribute('cx'), cy: +c.getAttribute('cy')}}));"""
    )


def test_it_draws_every_run_and_marks_the_pareto_front(page, report):
    assert not [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert page.execute_script("return document.querySelector('.explorer .noscript')") is None
    points = circles(page)
    assert len(points) == 10 and {p["label"] for p in points} == set(SQL_LABELS)
    comp = compare_runs(load_runs(report.parent))[0]
    runs = {r.name: r for r in comp.runs}
    names = [p["run"] for p in points]
    costs = [runs[n].summary.trainable_params for n in names]
    front = pareto_front(costs, [runs[n].score for n in names])
    assert {p["run"] for p in circles(page, "circle.on-front")} == {names[i] for i in front}


def test_picking_an_axis_redraws_the_points_against_it(page):
    before = {p["run"]: p["cx"] for p in circles(page)}
    page.execute_script(
        "const s = document.querySelector('.explorer select.pick-x'); s.value = 'flops';"
        "s.dispatchEvent(new Event('change'));"
    )
    assert page.execute_script("return document.querySelector('.explorer .axis-x').textContent").startswith(
        "training FLOPs"
    )
    after = {p["run"]: p["cx"] for p in circles(page)}
    assert after.keys() == before.keys() and after != before
    # zero-shot trains nothing: 0 FLOPs, the leftmost point
    assert min(after, key=after.get).startswith("sql_demo-zero_shot")


def test_hovering_a_point_shows_its_run(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    circle = page.find_element(By.CSS_SELECTOR, ".explorer circle.pt[data-label='lora-r4']")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", circle)
    ActionChains(page).move_to_element(circle).perform()
    tip = page.find_element(By.CSS_SELECTOR, ".explorer .tip")
    assert tip.is_displayed()
    assert "lora-r4" in tip.text and circle.get_attribute("data-run") in tip.text
    (comp,) = compare_runs(load_runs(Path(page.current_url.removeprefix("file://")).parent))
    standing = next(e.tie.word for e in comp.entries if e.label == "lora-r4")
    assert f"standing: {standing}" in tip.text


def test_top_group_points_carry_a_ring(page):
    (comp,) = compare_runs(load_runs(Path(page.current_url.removeprefix("file://")).parent))
    ringed = page.execute_script(
        "return Array.from(document.querySelectorAll('.explorer circle.top-ring')).map(c => c.dataset.label)"
    )
    assert sorted(ringed) == sorted(r.label for e in comp.top_group for r in e.runs)


def test_unticking_a_label_hides_its_points(page):
    from selenium.webdriver.common.by import By

    page.find_element(By.CSS_SELECTOR, ".explorer .filter input[value='lora']").click()
    points = circles(page)
    assert len(points) == 8 and "lora" not in {p["label"] for p in points}
    assert page.execute_script("return document.querySelector('.explorer').dataset.shown") == "8"
    page.find_element(By.CSS_SELECTOR, ".explorer .filter input[value='lora']").click()
    assert len(circles(page)) == 10
