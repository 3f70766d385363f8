"""Property-based fuzzing of the formula parser (issue 5: "the formula parser is fuzzed with
property-based tests over random and adversarial expressions; every outcome is either a valid
result or a clear message").

The property, for every generated text:
    compile_formula(text) either returns a Formula whose value on a (5,) tensor pair is a tensor
    of shape (5,) that autograd can differentiate, or raises FormulaError with a one-line message.
    Nothing else: no other exception, no command run, no eval/exec, and no example slower than
    the deadline (a hostile formula that got computed, like 9**9**9, would take hours).

Strategies: well-formed expressions (mostly accepted), adversarial expressions (valid and hostile
pieces mixed), and random text.
CI runs a fixed number of examples with a fixed seed (derandomize=True), a few seconds in all.
`bench/fuzz.py` reuses these strategies for a long run and prints the outcome split.
"""

from __future__ import annotations

import builtins
import os
import subprocess
from contextlib import ExitStack
from datetime import timedelta
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.toy.formula import FUNCTIONS, Formula, FormulaError, compile_formula

# ast.parse warns about some odd text (e.g. "1if") before refusing it; expected, not a problem.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")

CI_EXAMPLES = 300
# Per-example time bound. A normal example takes about a millisecond, but on this 2-core machine
# shared by several test runs (load average 11) single examples stalled for up to 3 s and then ran
# in 0.3 ms when retimed. Hypothesis reports a deadline miss that does not repeat as a failure, so
# the bound is generous: 10 s still catches any formula that really gets computed, like 9**9**9
# (hours and gigabytes as a Python int).
DEADLINE = timedelta(seconds=10)

# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

# Pieces of well-formed formulas (the parser should accept most combinations of them) ...
VALID_LEAVES = ["x", "y", "pi", "e", "0", "1", "2", "2.5", "1e3", "1e-3", "9", "0.5", "100", "1e6"]
VALID_OPERATORS = ["+", "-", "*", "/", "**", "^"]
VALID_NAMES = list(FUNCTIONS)
# ... and hostile or odd ones a student (or an attacker) might type.
HOSTILE_LEAVES = [
    "1e400", "123456789", "0x10", "1_000", "1j", "True", "None", "...", "'s'", '"os"', "__import__",
    "os", "foo", "sin", "__builtins__", "globals()", "x.real", "x[0]", "(lambda: 1)", "[x for x in y]",
    "f'{x}'", "(z := 1)", "x if y else 1", "not x", "~x", "ｘ", "𝓍", "\u200b", "\x00", "#", "\\", "\n",
]
HOSTILE_OPERATORS = ["%", "//", "@", "&", "|", "<", "==", " and ", ",", ".", ";", ":="]
HOSTILE_NAMES = ["__import__", "eval", "exec", "open", "getattr", "print", "lambda", "foo", "x"]


def _grammar(leaves, operators, names, postfix):
    """Expressions built by recursion from leaves with binary operators, unary signs, function
    calls of 0–3 arguments and (when given) postfix pieces; at most 25 leaves."""

    def binop(children):
        return st.tuples(children, st.sampled_from(operators), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})")

    def unary(children):
        return st.tuples(st.sampled_from(["-", "+", "--"]), children).map(lambda t: t[0] + t[1])

    def call(children):
        args = st.lists(children, min_size=0, max_size=3).map(", ".join)
        return st.tuples(st.sampled_from(names), args).map(lambda t: f"{t[0]}({t[1]})")

    def extend(children):
        options = [binop(children), unary(children), call(children)]
        if postfix:
            options.append(st.tuples(children, st.sampled_from(postfix)).map(lambda t: t[0] + t[1]))
        return st.one_of(options)

    return st.recursive(st.sampled_from(leaves), extend, max_leaves=25)


# Well-formed expressions: exercises evaluation, autograd, exponent limits, NaN-everywhere.
valid_expressions = _grammar(VALID_LEAVES, VALID_OPERATORS, VALID_NAMES, postfix=[])
# Adversarial expressions: valid pieces mixed with hostile ones, postfix attribute/subscript/calls,
# huge powers, keyword and star arguments.
expressions = _grammar(
    VALID_LEAVES + HOSTILE_LEAVES, VALID_OPERATORS + HOSTILE_OPERATORS,
    VALID_NAMES + HOSTILE_NAMES,
    postfix=[".real", ".__class__", "[0]", "[::-1]", "()", "(x)", "**9**9", "^99", "^-99", "(key=x)", "(*x)"],
)

# Random text: printable ASCII biased towards formula characters, and arbitrary unicode.
FORMULA_CHARS = "xy0123456789+-*/^()., eEpisncoxtaqrlgbmhdfuw_[]{}'\":=<>!%@&|~#\\\t\n"
random_text = st.one_of(
    st.text(alphabet=FORMULA_CHARS, max_size=80),
    st.text(max_size=40),
    st.text(alphabet=FORMULA_CHARS, min_size=250, max_size=400),  # around the length limit
)

# ---------------------------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------------------------


def _forbid(name):
    def fake(*args, **kwargs):
        raise AssertionError(f"{name} was called while compiling a formula")
    return fake


def check_outcome(text: str) -> str:
    """Compile and evaluate `text`; return "accepted" or the FormulaError message. Any other
    outcome raises (which fails the test). Commands and eval/exec are patched to fail loudly."""
    x = torch.linspace(-1.5, 1.5, 5, dtype=torch.float64, requires_grad=True)
    y = torch.linspace(0.7, -0.3, 5, dtype=torch.float64, requires_grad=True)
    with ExitStack() as stack:
        for target, name in ((os, "system"), (os, "popen"), (subprocess, "Popen"), (builtins, "eval"),
                             (builtins, "exec")):
            stack.enter_context(mock.patch.object(target, name, _forbid(name)))
        try:
            f = compile_formula(text)
        except FormulaError as err:
            message = str(err)
            assert message and "\n" not in message, repr(message)
            return message
        assert isinstance(f, Formula)
        out = f(x, y)
        assert isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == x.dtype
        gx, gy = torch.autograd.grad(out.sum(), [x, y])
        assert gx.shape == x.shape and gy.shape == y.shape
        return "accepted"


FUZZ_SETTINGS = settings(
    max_examples=CI_EXAMPLES, derandomize=True, deadline=DEADLINE, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@FUZZ_SETTINGS
@given(expressions)
def test_grammar_generated_expressions_give_a_formula_or_a_formula_error(text):
    check_outcome(text)


@FUZZ_SETTINGS
@given(valid_expressions)
def test_well_formed_expressions_give_a_formula_or_a_formula_error(text):
    check_outcome(text)


@FUZZ_SETTINGS
@given(random_text)
def test_random_text_gives_a_formula_or_a_formula_error(text):
    check_outcome(text)


def test_the_fuzz_reaches_both_outcomes():
    """The strategies are not degenerate: over a fixed sample, some expressions are accepted and
    some refused (otherwise the properties above would test only one branch)."""
    outcomes = []

    @settings(max_examples=200, derandomize=True, deadline=None, database=None)
    @given(st.one_of(valid_expressions, expressions))
    def collect(text):
        outcomes.append(check_outcome(text) == "accepted")

    collect()
    assert 0 < sum(outcomes) < len(outcomes)
