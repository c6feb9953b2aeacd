#!/usr/bin/env python3
"""Writes docs/figure.svg, the README's figure, from an executed chapter: the first SVG figure
whose title contains TITLE (default: chapter 01's I(W) by layer) in EXECUTED (default: the main
job's out/01_isotropy_by_layer.ipynb).

Usage: python3 scripts/readme_figure.py [EXECUTED] [TITLE]
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    executed = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "out" / "01_isotropy_by_layer.ipynb"
    title = sys.argv[2] if len(sys.argv) > 2 else "I(W)"
    nb = json.loads(executed.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            svg = out.get("data", {}).get("image/svg+xml")
            if svg is None:
                continue
            svg = "".join(svg) if isinstance(svg, list) else svg
            if title in svg:
                (ROOT / "docs" / "figure.svg").write_text(svg)
                print(f"wrote docs/figure.svg from {executed} ({title!r})")
                return
    sys.exit(f"{executed}: no SVG figure whose text contains {title!r}")


if __name__ == "__main__":
    main()
