"""Long fuzz run of the formula parser, for BENCHMARKS.md (issue 5).

    .venv/bin/python bench/fuzz.py [COUNT] [--seed S] [--json]

Runs COUNT examples (default 20,000) of each strategy in tests/test_formula_fuzz.py (well-formed
and adversarial grammar-made expressions, and random text) through the same property as the CI test, and prints
the number of examples, the outcome split (accepted / refused, with the most common reasons),
the slowest example and the wall time. Any outcome other than a Formula or a FormulaError stops
the run with the failing text. Without --seed the run is random; with it, reproducible.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests.test_formula_fuzz import check_outcome, expressions, random_text, valid_expressions  # noqa: E402

STRATEGIES = {"well_formed": valid_expressions, "adversarial": expressions, "random_text": random_text}


def reason(message: str) -> str:
    """A FormulaError message without its details (column, names), to group similar refusals."""
    text = message.split(";")[0]
    text = re.sub(r" at column \d+", "", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return re.sub(r"\d+", "N", text)


def run(strategy, count: int, seed_value: int | None) -> dict:
    outcomes: Counter = Counter()
    slowest = [0.0, ""]

    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(text):
        start = time.perf_counter()
        outcome = check_outcome(text)
        elapsed = time.perf_counter() - start
        if elapsed > slowest[0]:
            slowest[:] = [elapsed, text]
        outcomes["accepted" if outcome == "accepted" else "refused: " + reason(outcome)] += 1

    if seed_value is not None:
        one = seed(seed_value)(one)
    start = time.perf_counter()
    one()
    wall = time.perf_counter() - start
    n = sum(outcomes.values())
    accepted = outcomes.get("accepted", 0)
    return {
        "examples": n, "accepted": accepted, "refused": n - accepted, "other_outcomes": 0,
        "wall_s": round(wall, 2), "per_example_ms": round(1000 * wall / max(n, 1), 3),
        "slowest_ms": round(1000 * slowest[0], 2), "slowest_text": slowest[1][:80],
        "top_reasons": outcomes.most_common(8),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=20_000, help="examples per strategy")
    parser.add_argument("--seed", type=int, default=None, help="fixed seed (default: random)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("count must be at least 1")
    report = {"count": args.count, "seed": args.seed}
    for name, strategy in STRATEGIES.items():
        report[name] = r = run(strategy, args.count, args.seed)
        if args.json:
            continue
        print(f"{name:12s} {r['examples']:7,d} examples in {r['wall_s']:7.1f} s "
              f"({r['per_example_ms']:.2f} ms each, slowest {r['slowest_ms']:.1f} ms): "
              f"{r['accepted']:,} accepted, {r['refused']:,} refused with a FormulaError, 0 other outcomes")
        print(f"    slowest: {r['slowest_text']!r}")
        for label, k in r["top_reasons"]:
            print(f"    {k:7,d}  {label}", flush=True)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
