""""Download this view (HTML)": one self-contained file where ρ moves as on the page, with no network (issue 18).

The file holds plotly.js (the copy in the installed plotly package, inlined), the ρ chart's own JavaScript and CSS
(app/components/rhochart_assets: the same code the page runs, so ρ moves exactly as there) and the page's grid payload
(app/rhogrid.py), base64-encoded in a <script type="application/octet-stream"> element. A caption names the
config, the ρ range, the lab's version and the date. A lecturer can put it on a course website or open it in a
hall with no Wi-Fi. Pure: bytes and strings in, a string out.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from app.components.rhochart_assets import CORE_JS, CSS, PLOTLY_JS
from app.rhogrid import GridView

OFFLINE_LIMIT = 6_000_000  # bytes per file (issue 18)
REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def lab_version() -> str:
    """The lab's version: the git commit of the running code (with +changes when the tree differs from it)."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty=+changes"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"SAM Lab {rev}" if rev else "SAM Lab (unversioned)"


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    # "</script" cannot occur inside an inline script; plotly.min.js has none, and this keeps it so
    return PLOTLY_JS.read_text(encoding="utf-8").replace("</script", "<\\/script")


def caption(title: str, config: Mapping, view: GridView, *, date: dt.date | None = None) -> str:
    """The file's caption: the page, the config (key = value), the ρ range and steps, the version and the date."""
    s = view.slider
    cfg = ", ".join(f"{k} = {v}" for k, v in config.items())
    when = (date or dt.datetime.now(dt.UTC).date()).isoformat()
    return (f"{title}. Config: {cfg}. {s.label.split(' ')[0]} from {s.rhos[0]:g} to {s.rhos[-1]:g} in "
            f"{len(s.rhos)} steps. {lab_version()}, {when}.")


def offline_html(view: GridView, rho: float, *, title: str, caption_text: str) -> str:
    """The self-contained HTML file of `view`, opening at the grid step nearest `rho`."""
    data = base64.b64encode(view.data).decode("ascii")
    boot = """
(function () {
  var b64 = document.getElementById("samlab-grid").textContent.trim();
  var bin = atob(b64), bytes = new Uint8Array(bin.length);
  for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  var payload = JSON.parse(new TextDecoder().decode(bytes));
  window.samlabChart = SamLabRho.mount(document.getElementById("samlab-view"), payload, INDEX, {});
})();""".replace("INDEX", str(view.slider.nearest(rho)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: "Source Sans Pro", "Source Sans 3", system-ui, sans-serif; margin: 1rem auto; max-width: 1200px;
  padding: 0 1rem; color: #31333f; --st-primary-color: #ff4b4b; }}
h1 {{ font-size: 1.5rem; margin: 0 0 0.5rem 0; }}
.samlab-file-caption {{ font-size: 0.9rem; color: #555; margin: 0.75rem 0; }}
{CSS}
</style>
<script>{_plotly_js()}</script>
<script>{CORE_JS}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="samlab-file-caption" data-testid="offline-caption">{html.escape(caption_text)}</p>
<div id="samlab-view"></div>
<script type="application/octet-stream" id="samlab-grid">{data}</script>
<script>{boot}</script>
<noscript>This view needs JavaScript (plotly.js is inside the file; no network is used).</noscript>
<!-- grid: {json.dumps(view.digest)} -->
</body></html>
"""
