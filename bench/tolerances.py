"""The headroom of every numeric tolerance in tests/: observed error against the tolerance, at 1 and 2 threads.

    nice -n 10 .venv/bin/python bench/tolerances.py [--threads 1,2] [--tests tests/test_sam.py ...] [--min 10]

How: the test files run under pytest twice (OMP_NUM_THREADS / MKL_NUM_THREADS and torch.set_num_threads = 1, then
2; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are left as the machine sets them) with this module as a pytest plugin
(`-p bench.tolerances`). The plugin wraps the comparison functions the tests use and records, at every call, the
test file and line that called it, the tolerance and the observed error:

* torch.testing.assert_close, torch.allclose, np.testing.assert_allclose, np.allclose, math.isclose: the
  allowed error per element is atol + rtol·|expected| (math.isclose: max(rel_tol·max(|a|, |b|), abs_tol));
  headroom = min over elements of allowed / |actual − expected| (∞ where the two are equal);
* pytest.approx: its own tolerance (max(rel·|expected|, abs)) against |actual − expected|.

The defaults of each function are used where a test gives none (assert_close: float32 rtol 1.3e-6, atol 1e-5;
float64 1e-7, 1e-7; np.testing.assert_allclose rtol 1e-7; torch.allclose / np.allclose rtol 1e-5, atol 1e-8;
approx rel 1e-6, abs 1e-12; math.isclose rel_tol 1e-9).

Explicit comparisons written out as `abs(x − y) < 1e-9` cannot be hooked; the table lists them (file:line) from
the source so that each is read by eye. Float32: the table shows each site's dtype; the simulator's tests
already run both float32 and float64 configs where the code has a dtype switch (core.toy.simulate DTYPES).

Prints one row per call site: file:line, dtype, the tolerance, the largest observed error and the smallest
headroom over all calls at each thread count, and flags rows below --min (10×, issue 19).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_LOG = "SAMLAB_TOLERANCE_LOG"
DEFAULT_TESTS = ["tests/test_airbench.py", "tests/test_cifar_train.py", "tests/test_sam.py", "tests/test_landscapes.py",
                 "tests/test_formula.py", "tests/test_measure.py", "tests/test_simulate.py", "tests/test_theory.py",
                 "tests/test_theory_extra.py", "tests/test_tournament.py", "tests/test_claims.py",
                 "tests/test_sharpness.py", "tests/test_schedules.py", "tests/test_page_sam_step.py"]


# ------------------------------------------------------------------------------------------------
# The plugin (runs inside pytest)
# ------------------------------------------------------------------------------------------------

def _site() -> str:
    for frame in inspect.stack()[2:]:
        path = Path(frame.filename)
        if "tests" in path.parts and path.name.startswith("test_"):
            return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{frame.lineno}"
    return ""


def _record(kind: str, dtype: str, tol: str, err: float, headroom: float) -> None:
    site = _site()
    path = os.environ.get(ENV_LOG)
    if not site or not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"site": site, "kind": kind, "dtype": dtype, "tol": tol, "err": err,
                            "headroom": headroom if math.isfinite(headroom) else None}) + "\n")


def _measure(actual, expected, atol: float, rtol: float) -> tuple[float, float, str]:
    """(max |a − e|, min allowed/|a − e|, dtype) elementwise, NaNs equal to NaNs ignored."""
    import numpy as np

    def arr(x):
        if hasattr(x, "detach"):
            return x.detach().cpu().double().numpy(), str(x.dtype).removeprefix("torch.")
        a = np.asarray(x)
        return a.astype(np.float64) if a.dtype.kind in "biuf" else a, str(a.dtype)

    a, dt = arr(actual)
    e, _ = arr(expected)
    if a.dtype.kind not in "fiub" or e.dtype.kind not in "fiub":
        return 0.0, math.inf, dt
    a, e = np.broadcast_arrays(a, e)
    diff = np.abs(a - e)
    ok = np.isfinite(diff)
    diff = np.where(ok, diff, 0.0)
    allowed = atol + rtol * np.abs(e)
    pos = diff > 0
    head = float(np.min(allowed[pos] / diff[pos])) if pos.any() else math.inf
    return float(diff.max()) if diff.size else 0.0, head, dt


def _observe(site: str, actual, expected, atol: float, rtol: float) -> None:
    """Record what one comparison saw (its error, its headroom); a comparison this cannot measure is skipped,
    never failed: the wrapped check still runs as written."""
    try:
        err, head, dts = _measure(actual, expected, atol, rtol)
        _record(site, dts, f"atol {atol:g} rtol {rtol:g}", err, head)
    except Exception:
        pass


def _install() -> None:
    import numpy as np
    import torch

    try:
        from _pytest import approx as python_api  # pytest ≥ 9
    except ImportError:
        from _pytest import python_api

    orig_ac = torch.testing.assert_close

    @functools.wraps(orig_ac)
    def assert_close(actual, expected, *args, rtol=None, atol=None, **kw):
        dt = getattr(actual, "dtype", torch.float64)  # torch's own defaults per dtype when none are given
        d_rtol, d_atol = {torch.float32: (1.3e-6, 1e-5), torch.float16: (1e-3, 1e-5),
                          torch.bfloat16: (1.6e-2, 1e-5)}.get(dt, (1e-7, 1e-7))
        _observe("assert_close", actual, expected, d_atol if atol is None else atol, d_rtol if rtol is None else rtol)
        return orig_ac(actual, expected, *args, rtol=rtol, atol=atol, **kw)

    torch.testing.assert_close = assert_close

    orig_tall = torch.allclose

    def t_allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
        _observe("torch.allclose", a, b, atol, rtol)
        return orig_tall(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)

    torch.allclose = t_allclose

    orig_naac = np.testing.assert_allclose

    @functools.wraps(orig_naac)
    def np_assert_allclose(actual, desired, rtol=1e-7, atol=0, *args, **kw):
        _observe("assert_allclose", actual, desired, atol, rtol)
        return orig_naac(actual, desired, rtol, atol, *args, **kw)

    np.testing.assert_allclose = np_assert_allclose

    orig_nac = np.allclose

    @functools.wraps(orig_nac)
    def np_allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
        _observe("np.allclose", a, b, atol, rtol)
        return orig_nac(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)

    np.allclose = np_allclose

    orig_isclose = math.isclose

    def isclose(a, b, *, rel_tol=1e-9, abs_tol=0.0):
        try:
            err = abs(a - b)
            allowed = max(rel_tol * max(abs(a), abs(b)), abs_tol)
            _record("math.isclose", "float64", f"rel {rel_tol:g} abs {abs_tol:g}", float(err),
                    allowed / err if err > 0 else math.inf)
        except Exception:
            pass
        return orig_isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)

    math.isclose = isclose

    orig_eq = python_api.ApproxScalar.__eq__

    def approx_eq(self, actual):
        try:
            exp = self.expected
            if isinstance(exp, (int, float)) and isinstance(actual, (int, float)) and math.isfinite(exp):
                err = abs(float(actual) - float(exp))
                tol = float(self.tolerance)
                _record("approx", type(actual).__name__, f"±{tol:.3g}", err, tol / err if err > 0 else math.inf)
        except Exception:
            pass
        return orig_eq(self, actual)

    python_api.ApproxScalar.__eq__ = approx_eq


def pytest_configure(config) -> None:  # pytest plugin hook (-p bench.tolerances)
    n = os.environ.get("OMP_NUM_THREADS")
    if n:
        import torch

        torch.set_num_threads(int(n))
    _install()


# ------------------------------------------------------------------------------------------------
# The driver
# ------------------------------------------------------------------------------------------------

def explicit_comparisons(files: list[str]) -> list[str]:
    """file:line of explicit `< 1e-…` / `<= 1e-…` comparisons (read by eye; no hook can see them)."""
    import re

    pat = re.compile(r"(<|<=)\s*\d*\.?\d+e-\d+")
    out = []
    for f in files:
        for i, line in enumerate((ROOT / f).read_text().splitlines(), 1):
            code = line.split("#")[0]
            if "assert" in code and pat.search(code):
                out.append(f"{f}:{i}: {code.strip()[:100]}")
    return out


def run(threads: int, tests: list[str], log: Path) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), ENV_LOG: str(log),
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "bench.tolerances", "-p", "no:cacheprovider", *tests]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tests", nargs="*", default=DEFAULT_TESTS)
    ap.add_argument("--min", type=float, default=10.0, help="flag headroom below this")
    ap.add_argument("--json", default="", help="also write the table here")
    ap.add_argument("--from-json", default="", help="print a table written by --json (no test run)")
    a = ap.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    table: dict[str, dict] = {}
    codes = {}
    if a.from_json:
        raw = json.loads(Path(a.from_json).read_text())
        for site, r in raw.items():
            cell = {k for k in r if k[:1] == "t" and k[1:].isdigit()}
            row = {k: v for k, v in r.items() if k not in cell}
            row.update({int(k[1:]): {**r[k], "headroom": math.inf if r[k]["headroom"] in (None, "inf", "Infinity")
                                     else float(r[k]["headroom"])} for k in cell})
            table[site] = row
        threads = sorted({n for r in table.values() for n in r if isinstance(n, int)})
    for n in ([] if a.from_json else threads):
        log = Path(tempfile.mkstemp(prefix=f"tol-{n}-", suffix=".jsonl")[1])
        codes[n] = run(n, a.tests, log)
        for line in log.read_text().splitlines():
            r = json.loads(line)
            row = table.setdefault(r["site"], {"kind": r["kind"], "dtype": r["dtype"], "tol": r["tol"]})
            cell = row.setdefault(n, {"err": 0.0, "headroom": math.inf, "calls": 0})
            cell["err"] = max(cell["err"], r["err"])
            h = math.inf if r["headroom"] is None else r["headroom"]
            cell["headroom"] = min(cell["headroom"], h)
            cell["calls"] += 1
        log.unlink()

    def key(site):
        f, _, line = site.rpartition(":")
        return f, int(line)

    def negated(site: str) -> bool:
        """`assert not allclose(…)`: a check that two things DIFFER (headroom does not apply)."""
        f, _, line = site.rpartition(":")
        try:
            text = (ROOT / f).read_text().splitlines()[int(line) - 1]
        except (OSError, IndexError, ValueError):
            return False
        return "not torch.allclose" in text or "not np.allclose" in text or "not math.isclose" in text

    print(f"{'site':44s} {'check':16s} {'dtype':8s} {'tolerance':24s} "
          + " ".join(f"{'err@' + str(n):>10s} {'head@' + str(n):>9s}" for n in threads))
    low = []
    for site in sorted(table, key=key):
        row = table[site]
        cells = []
        for n in threads:
            c = row.get(n)
            if c is None:
                cells.append(f"{'-':>10s} {'-':>9s}")
                continue
            h = c["headroom"]
            cells.append(f"{c['err']:10.2e} {('exact' if h == math.inf else f'{h:.3g}'):>9s}")
            if h < a.min and not negated(site):
                low.append((site, n, h))
        kind = "must differ" if negated(site) else row["kind"]
        print(f"{site:44s} {kind:16s} {row['dtype']:8s} {row['tol']:24s} " + " ".join(cells))
    print(f"\n{len(table)} call sites; pytest exit codes by threads: {codes}")
    print(f"below {a.min:g}× headroom: " + (", ".join(f"{s} ({n} thr: {h:.3g}×)" for s, n, h in low) or "none"))
    print("\nexplicit comparisons (no hook; read by eye):")
    for line in explicit_comparisons(a.tests):
        print("  " + line)
    if a.json:
        Path(a.json).write_text(json.dumps({s: {k if isinstance(k, str) else f"t{k}": v for k, v in r.items()}
                                            for s, r in table.items()}, default=str, indent=1))
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"load average {' '.join(load)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
