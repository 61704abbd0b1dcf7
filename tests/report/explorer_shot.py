"""Screenshot a report's explorer with two chosen axes, as headless Chromium renders it.

.venv/bin/python -m tests.report.explorer_shot REPORT_HTML OUT_PNG [X_AXIS [Y_AXIS [HOVER_LABEL]]]

e.g. ``runs/sql_demo-compare_all/report.html docs/explorer_compare_all.png flops forgetting_delta lora``
(axis keys as in report/explorer.py AXES).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.report.browser import chromium, missing


def main(report: str, out: str, x: str = "trainable_params", y: str = "score", hover: str = "") -> None:
    if (why := missing()) is not None:
        sys.exit(why)
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    with chromium(1280, 1000) as driver:
        driver.get(Path(report).resolve().as_uri())
        for axis, key in (("x", x), ("y", y)):
            driver.execute_script(
                "const s = document.querySelector('.explorer select.pick-' + arguments[0]); s.value = arguments[1];"
                "s.dispatchEvent(new Event('change'));",
                axis,
                key,
            )
        driver.execute_script("document.querySelector('nav.toc').style.display = 'none'")  # sticky: it would cover it
        section = driver.find_element(By.CSS_SELECTOR, "section[id^='explore']")
        driver.execute_script("arguments[0].scrollIntoView()", section)
        if hover:
            point = driver.find_element(By.CSS_SELECTOR, f".explorer circle.pt[data-label='{hover}']")
            ActionChains(driver).move_to_element(point).perform()
        section.screenshot(str(out))
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
