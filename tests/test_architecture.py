"""The layers of the house (docs/architecture.md), checked from the source with `ast`:

* no import circle anywhere in the project, counting imports inside functions (such an import hides a circle,
  it does not remove it);
* core/ is the engine alone: it imports nothing from streamlit, app/, pages/, serve/ or bench/;
* app/ never imports pages/ or bench/; serve/ never imports pages/;
* pages import no torch (a landscape gives its loss as numpy; the engine does the tensors).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "app", "pages", "serve", "bench")


def _modules() -> dict[str, Path]:
    out = {}
    for top in PACKAGES:
        for p in (ROOT / top).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every module name path imports, anywhere in the file, relative imports resolved."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between the project's own modules, every raw import per module)."""
    mods = _modules()
    edges, raw = {}, {}
    for name, path in mods.items():
        raw[name] = _imports(path, name)
        own = set()
        for imp in raw[name]:
            while imp and imp not in mods:
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                own.add(imp)
        edges[name] = own
    return edges, raw


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_anywhere():
    edges, _ = _graph()
    assert _cycles(edges) == []


def _layer_breaks(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    _, raw = _graph()
    return sorted(f"{m} imports {imp}" for m, imps in raw.items() if m.split(".")[0] == prefix
                  for imp in imps if imp.split(".")[0] in forbidden)


def test_core_is_the_engine_alone():
    assert _layer_breaks("core", ("streamlit", "app", "pages", "serve", "bench")) == []


def test_app_and_serve_stay_below_the_pages():
    assert _layer_breaks("app", ("pages", "bench")) == []
    assert _layer_breaks("serve", ("pages",)) == []


def test_pages_import_no_torch():
    assert _layer_breaks("pages", ("torch",)) == []
