"""Bounded caches (issue 5): the server's memory levels off however many configs are requested.

Claims:
1. Every `st.cache_data` in app/ and pages/ declares `max_entries` (a literal or a module constant
   that is a positive int), and every `st.cache_resource` on a function with arguments does too.
   Exempt: a zero-argument resource (exactly one entry) and a `scope="session"` resource (it lives
   and dies with its session, so it grows with open sessions, not with configs requested).
2. Requesting more distinct configs than `max_entries` keeps the cache at `max_entries` entries
   (least-recently-used ones are dropped), for the real cached functions in app/cache.py.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*REPO.glob("app/*.py"), *REPO.glob("pages/*.py")])
MAX_REASONABLE = 1024  # a toy result is ≤ ~1 MB; 1024 of them would already be a lot for a laptop


def _cache_decorators(tree: ast.Module):
    """(function node, decorator name, max_entries expression or None) for each st.cache_* use."""
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for dec in node.decorator_list:
            call = dec if isinstance(dec, ast.Call) else None
            target = call.func if call else dec
            if isinstance(target, ast.Attribute) and target.attr in ("cache_data", "cache_resource", "shared"):
                kw = {k.arg: k.value for k in call.keywords} if call else {}
                scope = kw.get("scope")
                session = isinstance(scope, ast.Constant) and scope.value == "session"
                yield node, target.attr, kw.get("max_entries"), session


def _int_value(expr, tree: ast.Module) -> int | None:
    """The value of a literal int or of a module-level NAME = <int literal>."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, int):
        return expr.value
    if isinstance(expr, ast.Name):
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == expr.id for t in stmt.targets):
                return _int_value(stmt.value, tree)
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == expr.id:
                return _int_value(stmt.value, tree)
    return None


def test_every_cache_declares_max_entries():
    found, problems = 0, []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for fn, kind, max_entries, session_scoped in _cache_decorators(tree):
            found += 1
            has_args = bool(fn.args.args or fn.args.posonlyargs or fn.args.kwonlyargs or fn.args.vararg)
            where = f"{path.relative_to(REPO)}:{fn.lineno} {fn.name}"
            if kind == "cache_resource" and (not has_args or session_scoped):
                continue  # one entry by construction / released with its session
            if max_entries is None:
                problems.append(f"{where}: st.{kind} without max_entries")
                continue
            n = _int_value(max_entries, tree)
            if n is None or not 0 < n <= MAX_REASONABLE:
                problems.append(f"{where}: max_entries={ast.unparse(max_entries)} is not an int in 1..{MAX_REASONABLE}")
    assert found > 0, "no st.cache_data / st.cache_resource found in app/ or pages/: nothing is cached"
    assert problems == [], "\n".join(problems)


def _entries(cached_func) -> int:
    """Number of entries in a global st.cache_data cache (its per-entry memory stats)."""
    cache = cached_func._info.get_function_cache(cached_func._function_key)
    return sum(len(v) for v in cache.get_stats().values())


def test_schedule_cache_stays_bounded():
    """schedule_mask: ask for 1.5× max_entries distinct schedules; the cache holds max_entries."""
    cache_mod = importlib.import_module("app.cache")
    fn = cache_mod.schedule_mask
    limit = fn._info.max_entries
    assert limit is not None
    fn.clear()
    n = limit + limit // 2
    for i in range(n):
        fn("psam", 50 + i, 2, 0.6, 0.3, 0.3)  # distinct step counts = distinct configs
        assert _entries(fn) <= limit
    assert _entries(fn) == limit
    fn.clear()


def test_simulation_cache_stays_bounded():
    """simulate: more distinct (tiny) configs than max_entries; the cache holds max_entries."""
    pytest.importorskip("core.toy.simulate", reason="core/toy/simulate.py has not landed yet")
    from core.toy.simulate import SimConfig

    cache_mod = importlib.import_module("app.cache")
    fn = cache_mod.simulate
    limit = fn._info.max_entries
    assert limit is not None
    fn.clear()
    for seed in range(limit + 10):  # 1 particle × 2 steps: each run is a few ms
        fn(SimConfig(particles=1, steps=2, seed=seed, keep_paths=1, record_points=2, device="cpu"))
        assert _entries(fn) <= limit
    assert _entries(fn) == limit
    fn.clear()
