#!/usr/bin/env python3
"""Render an executed notebook's HTML in headless Chromium and check what a reader would see.

Loads a copy of the page (1280 pixels wide) with a small script that, once the page has laid out
and MathJax has typeset its formulas, measures every figure (nbconvert embeds SVG outputs as <img>
data URIs: decoded by Chromium, its box on the page, the marks in the SVG, the box of each of its
texts), every table and every code cell, and writes the result into the page; Chromium's
--dump-dom returns it. Fails (exit 1) unless the page has at least one figure and one table, every
figure has a non-empty box on the page and drawn marks (circles, lines, paths) and no text outside
its box, every table has rows, no table or figure shows an absolute path (a model's folder where
its short name belongs), no code cell is wider than the page, and no formula is left as raw TeX.

Usage: check_render.py PAGE.html   (CHROMIUM: the browser, default `chromium`)
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PROBE = """
<script>
function renderCheck() {
  // An absolute path (a model's folder, say) where a reader expects a short name.
  const absolute = (text) => /(^|[\\s(])\\/[^\\s\\/]+\\/\\S*/.test(text);
  // SVG figures are drawn off-screen once more, inline, so each text's box can be measured.
  const scratch = document.createElement("div");
  scratch.style.cssText = "position:absolute;left:-20000px;top:0";
  document.body.appendChild(scratch);
  // nbconvert embeds each SVG figure as an <img> with a data: URI.
  const figures = [...document.querySelectorAll('img[src^="data:image/svg+xml"]')].map((img) => {
    const box = img.getBoundingClientRect();
    const style = getComputedStyle(img);
    const parsed = new DOMParser().parseFromString(atob(img.src.split(",")[1]), "image/svg+xml");
    const svg = scratch.appendChild(document.importNode(parsed.documentElement, true));
    // Boxes on the page, so rotated labels (the y axis's) are measured as drawn.
    const frame = svg.getBoundingClientRect();
    const texts = [...svg.querySelectorAll("text")];
    const outside = texts.filter((t) => {
      const b = t.getBoundingClientRect();
      return b.width > 0 && (b.left < frame.left - 1 || b.top < frame.top - 1 ||
        b.right > frame.right + 1 || b.bottom > frame.bottom + 1);
    }).map((t) => t.textContent.trim());
    return {
      width: box.width, height: box.height,
      decoded: img.complete && img.naturalWidth > 0 && img.naturalHeight > 0,
      visible: style.visibility !== "hidden" && style.display !== "none",
      marks: svg.querySelectorAll("circle, polyline, path, line").length,
      text_outside: outside,
      absolute_paths: texts.map((t) => t.textContent).filter(absolute),
    };
  });
  const tables = [...document.querySelectorAll("table")].map((t) => ({
    rows: t.querySelectorAll("tbody tr").length,
    height: t.getBoundingClientRect().height,
    absolute_paths: [...t.querySelectorAll("td, th")].map((c) => c.innerText).filter(absolute),
  }));
  // Code wider than its box is cut off (or needs a scroll bar) at the page's width.
  const overflowing = [...document.querySelectorAll(".jp-InputArea-editor pre, .input_area pre")]
    .filter((pre) => pre.scrollWidth > pre.clientWidth + 1)
    .map((pre) => pre.innerText.split("\\n").reduce((a, b) => (b.length > a.length ? b : a), ""));
  // Formulas MathJax left as TeX show their delimiters.
  const raw_math = [...document.querySelectorAll(".jp-MarkdownCell, .text_cell_render")]
    .map((c) => c.innerText).filter((t) => t.includes("$$") || /\\$\\\\[a-zA-Z]/.test(t))
    .map((t) => t.slice(0, 120));
  const typeset = document.querySelectorAll(".MathJax, .MathJax_Display, mjx-container").length;
  scratch.remove();
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({ figures, tables, overflowing, raw_math, typeset });
  document.body.appendChild(out);
}
window.addEventListener("load", () => {
  // The formulas are typeset after the page loads: check once MathJax has finished.
  if (window.MathJax && MathJax.Hub) MathJax.Hub.Queue(renderCheck); else renderCheck();
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
    # The probed copy sits beside the page, so what the page loads by relative path (its copy of
    # MathJax) loads for the copy too.
    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
             "--virtual-time-budget=30000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=300,
        ).stdout
    finally:
        probe.unlink(missing_ok=True)
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
        if f["text_outside"]:
            problems.append(f"figure {i} has text outside its box: {f['text_outside']}")
        if f["absolute_paths"]:
            problems.append(f"figure {i} shows absolute paths: {f['absolute_paths']}")
    for i, t in enumerate(tables):
        if t["rows"] < 1 or t["height"] <= 0:
            problems.append(f"table {i} has no rows on the page ({t})")
        if t["absolute_paths"]:
            problems.append(f"table {i} shows absolute paths: {t['absolute_paths'][:3]}")
    for line in result["overflowing"]:
        problems.append(f"a code cell is wider than the page at 1280 pixels: {line!r}")
    for text in result["raw_math"]:
        problems.append(f"a formula shows as raw TeX (MathJax did not typeset it): {text!r}")
    if problems:
        print(f"{page.name}: " + "; ".join(problems))
        sys.exit(1)
    marks = sum(f["marks"] for f in figures)
    rows = sum(t["rows"] for t in tables)
    print(f"{page.name}: {len(figures)} figures ({marks} marks), {len(tables)} tables ({rows} rows) "
          f"and {result['typeset']} typeset formulas render in Chromium")


if __name__ == "__main__":
    main()
