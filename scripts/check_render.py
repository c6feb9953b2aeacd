#!/usr/bin/env python3
"""Render an executed notebook's HTML in headless Chromium and check what a reader would see.

Loads a copy of the page with a small script that, once the page has laid out, measures every
figure (nbconvert embeds SVG outputs as <img> data URIs: decoded by Chromium, its box on the page,
the marks in the SVG) and every table, and writes the result into the page;
Chromium's --dump-dom returns it. Fails (exit 1) unless the page has at least one figure and one
table, every figure has a non-empty box on the page and drawn marks (circles, lines, paths), and
every table has rows.

Usage: check_render.py PAGE.html   (CHROMIUM: the browser, default `chromium`)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
<script>
window.addEventListener("load", () => {
  // nbconvert embeds each SVG figure as an <img> with a data: URI.
  const figures = [...document.querySelectorAll('img[src^="data:image/svg+xml"]')].map((img) => {
    const box = img.getBoundingClientRect();
    const style = getComputedStyle(img);
    const svg = new DOMParser().parseFromString(atob(img.src.split(",")[1]), "image/svg+xml");
    return {
      width: box.width, height: box.height,
      decoded: img.complete && img.naturalWidth > 0 && img.naturalHeight > 0,
      visible: style.visibility !== "hidden" && style.display !== "none",
      marks: svg.querySelectorAll("circle, polyline, path, line").length,
    };
  });
  const tables = [...document.querySelectorAll("table")].map((t) => ({
    rows: t.querySelectorAll("tbody tr").length,
    height: t.getBoundingClientRect().height,
  }));
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({ figures, tables });
  document.body.appendChild(out);
});
</script>
"""


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    page = Path(sys.argv[1]).resolve()
    browser = os.environ.get("CHROMIUM", "chromium")
    if shutil.which(browser) is None:
        sys.exit(f"{browser} not found: run `bash scripts/setup.sh` (it installs Debian's chromium)")
    html = page.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / page.name
        probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
             "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=300,
        ).stdout
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.S)
    if not found:
        sys.exit(f"{page.name}: the page did not finish loading in Chromium")
    result = json.loads(found.group(1).replace("&quot;", '"'))
    figures, tables = result["figures"], result["tables"]
    problems = []
    if not figures:
        problems.append("no figure")
    if not tables:
        problems.append("no table")
    for i, f in enumerate(figures):
        if not f["decoded"] or not f["visible"] or f["width"] < 100 or f["height"] < 100:
            problems.append(f"figure {i} is not visible ({f})")
        if f["marks"] < 5:
            problems.append(f"figure {i} has almost nothing drawn ({f['marks']} marks)")
    for i, t in enumerate(tables):
        if t["rows"] < 1 or t["height"] <= 0:
            problems.append(f"table {i} has no rows on the page ({t})")
    if problems:
        print(f"{page.name}: " + "; ".join(problems))
        sys.exit(1)
    marks = sum(f["marks"] for f in figures)
    rows = sum(t["rows"] for t in tables)
    print(f"{page.name}: {len(figures)} figures ({marks} marks) and {len(tables)} tables ({rows} rows) render in Chromium")


if __name__ == "__main__":
    main()
