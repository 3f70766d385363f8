"""The one list of the lab's pages, read by the navigation (app/main.py), the scenes (app/presets.py), the browser
harness (bench/_browser.py) and the URL fuzz (tests/test_url_fuzz.py). A new page is one line here and one file
in pages/. No Streamlit here, so scripts and tests can read it.

Home is the default page, served at "/": a default page still reserves its own url path without answering at it,
so Home's url path is "index", and /home is a hidden alias that sends the browser to "/" with the same query
parameters (app/main.py).
"""

from __future__ import annotations

from dataclasses import dataclass

HOME_PATH, HOME_ALIAS_PATH = "index", "home"


@dataclass(frozen=True)
class PageInfo:
    key: str    # the name scenes, presets and tests use; also the url path, except Home's
    file: str   # under pages/
    title: str
    icon: str   # a Material icon: it ships with Streamlit's font, so it renders with no emoji font installed

    @property
    def url_path(self) -> str:
        """The path st.navigation serves the page at ("" for Home, the default page)."""
        return "" if self.key == "home" else self.key


PAGE_LIST: tuple[PageInfo, ...] = (
    PageInfo("home", "home.py", "Home", ":material/home:"),
    PageInfo("sam_step", "sam_step.py", "How a SAM step works", ":material/my_location:"),
    PageInfo("playground", "playground.py", "Playground", ":material/toys:"),
    PageInfo("escape", "escape.py", "Escape lab", ":material/directions_run:"),
    PageInfo("valley", "valley.py", "Asymmetric valley lab", ":material/landscape:"),
    PageInfo("psam", "psam.py", "PSAM scheduler", ":material/schedule:"),
    PageInfo("tournament", "tournament.py", "Budget tournament", ":material/leaderboard:"),
    PageInfo("cifar", "cifar.py", "CIFAR-10", ":material/image:"),
    PageInfo("classroom", "classroom.py", "Class experiment", ":material/groups:"),
)
PAGE_KEYS: tuple[str, ...] = tuple(p.key for p in PAGE_LIST)
