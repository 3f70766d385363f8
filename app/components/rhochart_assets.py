"""The ρ chart's browser code, read once: its own JavaScript and CSS (app/components/rhochart/rhochart.js, .css) and
the path of plotly.js in the installed plotly package. Both the component (app/components/rhochart, which serves
them to the page) and the offline file (app/offline.py, which inlines them) take them from here, so ρ moves in the
file exactly as on the page. No Streamlit here: the offline file is built from bytes and strings alone.
"""

from __future__ import annotations

from pathlib import Path

import plotly

ASSETS = Path(__file__).parent / "rhochart"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
CORE_JS = (ASSETS / "rhochart.js").read_text(encoding="utf-8")
CSS = (ASSETS / "rhochart.css").read_text(encoding="utf-8")
