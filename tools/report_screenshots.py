"""Screenshots of a Snakemake HTML report as a reader sees it, with headless Chromium.

The report is one page whose views (categories, a figure, a table) are drawn by its JavaScript;
this writes one copy of the page per view with a line at its end that opens that view, and lets
Chromium take a screenshot of each: the start page, one page per category and one per figure.
Look at them before a release: figures a reader cannot read (legends over the data, 24 colours
without a key, unlabelled axes) show at once.

    apt-get install -y chromium           # Debian's package, as root, once
    python tools/report_screenshots.py results/report.html screenshots/ [--figures]

Chromium runs with --no-sandbox (containers run as root); no network is needed (the report
carries its scripts).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


def _views(html: str, figures: bool) -> dict[str, str]:
    """``{screenshot name: JavaScript that opens the view}``."""
    categories = json.loads(re.search(r"var categories = (\{.*?\});\s*</script>", html, re.S).group(1))
    results = json.loads(re.search(r"var results = (\{.*?\});\s*</script>", html, re.S).group(1))
    views = {"00_start": ""}
    for i, cat in enumerate(categories, start=1):
        views[f"{i:02d}_{re.sub(r'[^A-Za-z0-9]+', '_', cat).strip('_')}"] = f"app.showCategory({json.dumps(cat)});"
    if figures:
        for path, entry in results.items():
            if entry["mime_type"].startswith("image/"):
                name = "fig_" + re.sub(r"[^A-Za-z0-9]+", "_", Path(path).stem)
                views[name] = (f"app.setView({{navbarMode: 'resultinfo', resultPath: {json.dumps(path)}, "
                               f"content: 'img', contentPath: results[{json.dumps(path)}].data_uri}});")
    return views


def screenshots(report: Path, out: Path, *, figures: bool = False, size: str = "1600,1000",
                chromium: str = "chromium", wait_ms: int = 4000) -> list[Path]:
    """Write ``out/<view>.png`` for each view of ``report``; returns the files written.

    Parameters
    ----------
    report
        The report's HTML file (``snakemake --report``).
    out
        Folder for the screenshots.
    figures
        Also one screenshot per figure (opened as a reader opens it from its category).
    size
        Window size, ``"width,height"`` in pixels.
    chromium
        The Chromium executable.
    wait_ms
        Virtual time the page's scripts get before the screenshot.
    """
    html = report.read_text(errors="ignore")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, script in _views(html, figures).items():
            page = Path(tmp) / f"{name}.html"
            hook = f"<script>setTimeout(function () {{ {script} }}, 300);</script>" if script else ""
            head, tag, tail = html.rpartition("</body>")  # the last one: the scripts hold the string too
            page.write_text(head + hook + tag + tail if hook else html)
            target = out / f"{name}.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--window-size={size}", f"--virtual-time-budget={wait_ms}",
                            f"--screenshot={target}", page.as_uri()],
                           check=True, capture_output=True, timeout=180)
            written.append(target)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--figures", action="store_true", help="one screenshot per figure as well")
    parser.add_argument("--size", default="1600,1000", help="window width,height (default 1600,1000)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)
    for path in screenshots(args.report, args.out, figures=args.figures, size=args.size, chromium=args.chromium):
        print(path)


if __name__ == "__main__":
    main()
