"""Regenerate docs/report.png: a report of the fake comparison, as headless Chromium renders it.

.venv/bin/python -m tests.report.screenshot [docs/report.png [MAX_HEIGHT, 0 = whole page]]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from peftlab.report import write_report
from tests.report.browser import missing, screenshot
from tests.report.fakes import sql_comparison


def main(out: str = "docs/report.png", max_height: str = "2370") -> None:
    if (why := missing()) is not None:
        sys.exit(why)
    with tempfile.TemporaryDirectory() as tmp:
        html = write_report(sql_comparison(Path(tmp) / "sql_demo-compare"), examples=[0, 5])
        screenshot(html, Path(out), max_height=int(max_height) or None)
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
