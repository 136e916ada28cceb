"""`dvc plots show` offline: an HTML page template with vega, vega-lite and vega-embed inlined.

DVC's default page loads the three libraries from a CDN, so the plots are blank without internet;
it inserts those <script> tags only where a template has a `{scripts}` placeholder. Ours has none
and carries the libraries inline (vendored under plots/vendor/, the versions DVC's page asks for,
BSD-3-Clause); `.dvc/config` points DVC at it (`[plots] html_template = plots/offline.html`,
relative to .dvc/). Regenerate it after changing the vendored files:

    python -m pronounce.scoring.plots write     # plots/vendor/*.min.js -> .dvc/plots/offline.html
    python -m pronounce.scoring.plots check dvc_plots/index.html   # no http(s) <script src>?

Where the libraries come from: docs/scoring.md#offline-plots-the-page-template
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
VENDOR_DIR = ROOT / "plots" / "vendor"
TEMPLATE_PATH = ROOT / ".dvc" / "plots" / "offline.html"
LIBRARIES = (  # (file, npm package@version): load order matters (vega-embed needs the other two)
    ("vega.min.js", "vega@5.20.2"),
    ("vega-lite.min.js", "vega-lite@5.2.0"),
    ("vega-embed.min.js", "vega-embed@6.18.2"),
)
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

_HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Offline page template (src/pronounce/scoring/plots.py): vega, vega-lite and vega-embed are
         inlined below instead of loaded from a CDN. Each library: BSD-3-Clause, Copyright (c)
         University of Washington Interactive Data Lab; see plots/vendor/LICENSE.*. -->
"""
_TAIL = """    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_template(vendor_dir=VENDOR_DIR) -> str:
    parts = [_HEAD]
    for name, package in LIBRARIES:
        js = (Path(vendor_dir) / name).read_text(encoding="utf-8")
        if re.search(r"</script", js, re.IGNORECASE) or any(p in js for p in PLACEHOLDERS):
            raise ValueError(f"{name} cannot be inlined: it contains </script or a DVC placeholder")
        parts.append(f"    <!-- {package} ({name}) -->\n    <script type=\"text/javascript\">\n{js}\n    </script>\n")
    parts.append(_TAIL)
    return "".join(parts)


def write_offline_template(vendor_dir=VENDOR_DIR, out=TEMPLATE_PATH) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(offline_template(vendor_dir), encoding="utf-8")
    return out


_SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)


def external_scripts(html: str) -> list[str]:
    """Every <script src> of a page that is not local (http:, https:, protocol-relative //)."""
    return [src for src in _SCRIPT_SRC.findall(html) if re.match(r"(?i)(https?:)?//", src)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["write"]:
        print(f"wrote {write_offline_template()}")
        return 0
    if argv[:1] == ["check"] and len(argv) == 2:
        bad = external_scripts(Path(argv[1]).read_text(encoding="utf-8"))
        for src in bad:
            print(f"external script: {src}")
        print("offline: yes" if not bad else "offline: NO")
        return 1 if bad else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
