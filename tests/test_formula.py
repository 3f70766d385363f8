"""Tests of the safe formula parser (core/toy/formula.py): the grammar, autograd, and hostile input
(issue 2: "bad or hostile text gets a one-line error naming what is wrong, never a traceback and
never code execution")."""

import builtins
import math
import os
import subprocess

import pytest
import torch

from core.toy import formula as formula_module
from core.toy.formula import MAX_DEPTH, MAX_LENGTH, Formula, FormulaError, compile_formula


def _xy(n=7, dtype=torch.float64):
    x = torch.linspace(-2.0, 2.0, n, dtype=dtype).requires_grad_(True)
    y = torch.linspace(1.5, -1.0, n, dtype=dtype).requires_grad_(True)
    return x, y


# ---------------------------------------------------------------------------------------------
# The grammar: values and gradients against hand-written torch
# ---------------------------------------------------------------------------------------------

CASES = [
    ("x^2 + y^2", lambda x, y: x**2 + y**2),
    ("x**2 + 3*y", lambda x, y: x**2 + 3 * y),
    ("x^2+1", lambda x, y: x**2 + 1),  # ^ binds like **, not like Python's XOR (which is weaker than +)
    ("-x**2", lambda x, y: -(x**2)),
    ("2^-1 * x", lambda x, y: 0.5 * x),
    ("(x - 1)^2 * (x + 1)^2 + 0.5*y^2", lambda x, y: (x - 1) ** 2 * (x + 1) ** 2 + 0.5 * y**2),
    ("sin(x) * cos(y) + tan(x/4)", lambda x, y: torch.sin(x) * torch.cos(y) + torch.tan(x / 4)),
    ("exp(-x^2) - log(1 + y^2) + sqrt(1 + x^2)",
     lambda x, y: torch.exp(-(x**2)) - torch.log(1 + y**2) + torch.sqrt(1 + x**2)),
    ("abs(x) + tanh(y) + sigmoid(x*y) + softplus(x - y)",
     lambda x, y: torch.abs(x) + torch.tanh(y) + torch.sigmoid(x * y) + torch.nn.functional.softplus(x - y)),
    ("min(x, y) + max(x, y, 0.5)",
     lambda x, y: torch.minimum(x, y) + torch.maximum(torch.maximum(x, y), torch.tensor(0.5, dtype=x.dtype))),
    ("pi * x + e * y", lambda x, y: math.pi * x + math.e * y),
    ("(1 - x)^2 + 100*(y - x^2)^2", lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2),
    ("  x +\n\ty ", lambda x, y: x + y),
    ("+x - -y", lambda x, y: x + y),
    ("1e-3 * x + 2.5E2 * y", lambda x, y: 1e-3 * x + 250.0 * y),
]


@pytest.mark.parametrize("text,reference", CASES, ids=[c[0] for c in CASES])
def test_formula_matches_hand_written_torch_in_value_and_gradient(text, reference):
    """Formula(x, y) equals the same expression written in torch, and autograd gives the same ∇."""
    f = compile_formula(text)
    assert isinstance(f, Formula) and f.text == text
    x, y = _xy()
    out = f(x, y)
    gx, gy = torch.autograd.grad(out.sum(), [x, y])
    x2, y2 = _xy()
    ref = reference(x2, y2)
    rx, ry = torch.autograd.grad(ref.sum(), [x2, y2], allow_unused=True)
    rx = torch.zeros_like(x2) if rx is None else rx  # an unused variable has gradient 0
    ry = torch.zeros_like(y2) if ry is None else ry
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, rx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gy, ry, rtol=1e-12, atol=1e-12)


def test_caret_is_power_with_power_precedence():
    """`^` is documented as power: x^2+1 is (x**2)+1, and 2^3^2 is 2^(3^2) = 512 like **."""
    x = torch.tensor([3.0])
    assert compile_formula("x^2+1")(x).item() == 10.0
    assert compile_formula("2^3^2")(x).item() == 512.0


@pytest.mark.parametrize("text", ["3", "pi", "x", "y", "exp(1) - 2"])
def test_output_has_x_shape_and_both_gradients_exist(text):
    """Contract: the output is broadcast to x's shape even for constants, and autograd.grad with
    respect to both x and y works (zero where a variable is unused)."""
    f = compile_formula(text)
    x = torch.zeros(4, 3, requires_grad=True)
    y = torch.ones(4, 3, requires_grad=True)
    out = f(x, y)
    assert out.shape == (4, 3) and out.dtype == torch.float32
    gx, gy = torch.autograd.grad(out.sum(), [x, y])
    assert torch.equal(gx, torch.full_like(x, 1.0 if text == "x" else 0.0))
    assert torch.equal(gy, torch.full_like(y, 1.0 if text == "y" else 0.0))


def test_variables_reports_which_coordinates_are_used():
    assert compile_formula("x^2 + 1").variables == frozenset({"x"})
    assert compile_formula("sin(y)").variables == frozenset({"y"})
    assert compile_formula("x*y").variables == frozenset({"x", "y"})
    assert compile_formula("2").variables == frozenset()


def test_formula_keeps_dtype_and_accepts_a_missing_y():
    """float32 in → float32 out; a 1-D landscape may call f(x) alone (y = 0)."""
    f = compile_formula("x^2 + y")
    x = torch.tensor([1.0, 2.0], dtype=torch.float32)
    assert f(x).dtype == torch.float32
    assert torch.equal(f(x), torch.tensor([1.0, 4.0]))


def test_constant_parts_are_folded_in_floats_not_python_errors():
    """Constant parts give inf like float tensors do, never ZeroDivisionError/OverflowError."""
    x = torch.tensor([2.0], dtype=torch.float64)
    # 1/0 folds to inf: x/(1/0) = 0 everywhere, which is finite, so the formula is accepted
    assert compile_formula("x / (1/0)")(x).item() == 0.0
    # 10^100 is a float (1e100), never a Python big int; times itself it overflows to inf
    assert compile_formula("x * 10^100")(x).item() == 2e100
    # finite for x < 0 on the probe grid, so accepted; inf at x = 2 (the simulator marks divergence)
    assert math.isinf(compile_formula("exp(50*x) * 10^100 * 10^100 * 10^100")(x).item())


# ---------------------------------------------------------------------------------------------
# Refused input: one line, naming what is wrong
# ---------------------------------------------------------------------------------------------

REFUSED = [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("foo + 1", "unknown name 'foo' at column 1"),
    ("x + foo", "unknown name 'foo' at column 5"),
    ("x.real", "attribute access"),
    ("(x).__class__", "attribute access"),
    ("x[0]", "subscripts"),
    ("lambda: 1", "lambda"),
    ("[a for a in (1, 2)]", "comprehensions"),
    ("max(a for a in x)", "comprehensions"),
    ("'abc'", "strings"),
    ("\"x\" + x", "strings"),
    ("f'{x}'", "f-strings"),
    ("max(x, y=1)", "keyword arguments"),
    ("(z := 1)", "assignment"),
    ("9**9**9", "exponent too large"),
    ("x ^ 1000", "exponent too large"),
    ("2 ** (10 ** 3)", "exponent too large"),
    ("1e400 * x", "number too large"),
    ("123456789 * x", "number too large"),
    ("1" * 400, "too long"),
    ("x % 2", "operator '%'"),
    ("x // 2", "operator '//'"),
    ("x < y", "comparisons"),
    ("x and y", "and/or"),
    ("x if y else 1", "if/else"),
    ("(x, y)", "tuples"),
    ("{x: 1}", "dicts"),
    ("not x", "operator 'not'"),
    ("~x", "operator '~'"),
    ("sin", "'sin' is a function"),
    ("sin(x, y)", "sin() takes 1 argument, got 2"),
    ("max(x)", "two or more arguments"),
    ("sin(*x)", "* arguments"),
    ("1j * x", "complex"),
    ("True * x", "not a number"),
    ("None", "not a number"),
    ("x;y", "syntax error at column 2"),
    ("x +", "syntax error"),
    ("x = 1", "syntax error"),
    ("import os", "syntax error"),
    ("ｘ + 1", "character 'ｘ' at column 1 is not allowed"),  # full-width x: NFKC would fold it to x
    ("x + \u00b2", "not allowed"),
    ("x\u200b+ 1", "not allowed"),  # zero-width space
    ("x + \x00", "not allowed"),
    ("log(-1 - x^2)", "not a finite number anywhere"),
    ("sqrt(-1) + x", "not a finite number anywhere"),
    ("__import__", "unknown name '__import__'"),
]


@pytest.mark.parametrize("text,expected", REFUSED, ids=[repr(t)[:30] for t, _ in REFUSED])
def test_refused_with_a_one_line_message_naming_the_problem(text, expected):
    with pytest.raises(FormulaError) as info:
        compile_formula(text)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and 0 < len(message) < 300
    assert isinstance(info.value, ValueError)  # callers may catch ValueError for all bad input


def test_non_text_input_is_refused():
    for value in (None, 3, b"x", ["x"]):
        with pytest.raises(FormulaError):
            compile_formula(value)


# ---------------------------------------------------------------------------------------------
# Hostile input (issue 2): never code execution, never another exception
# ---------------------------------------------------------------------------------------------

HOSTILE = [
    "__import__('os').system('touch {sentinel}')",
    "__import__(\"os\").system(\"touch {sentinel}\")",
    "eval(\"__import__('os').system('touch {sentinel}')\")",
    "exec('open(\"{sentinel}\", \"w\")')",
    "open('{sentinel}', 'w')",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__.__mro__[-1].__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]('touch {sentinel}')",
    "(lambda: __import__('os').system('touch {sentinel}'))()",
    "globals()['__builtins__']",
    "getattr(x, 'real')",
    "sin.__globals__",
    "x.__init__.__globals__['os']",
    "f'{{__import__(\"os\").system(\"touch {sentinel}\")}}'",
    "(s := __import__('subprocess'))",
    "breakpoint()",
    "compile('1', 'f', 'eval')",
    "__builtins__",
    "x if __import__('os').system('touch {sentinel}') else y",
    "max(x, key=__import__('os').system)",
    "sin(x)\n__import__('os')",
    "𝓍 + 1",  # mathematical script x
    "\ufeffx",  # byte-order mark
]


@pytest.fixture
def sentinel_guard(tmp_path, monkeypatch):
    """Any attempt to run a command or to eval/exec during compile or call is recorded.
    eval/exec are replaced for the duration: the parser must not need them (ast.parse uses only
    compile(..., PyCF_ONLY_AST), which builds a tree and runs nothing)."""
    calls = []

    def record(name):
        def fake(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called")
        return fake

    monkeypatch.setattr(os, "system", record("os.system"))
    monkeypatch.setattr(os, "popen", record("os.popen"))
    monkeypatch.setattr(subprocess, "Popen", record("subprocess.Popen"))
    monkeypatch.setattr(builtins, "eval", record("eval"))
    monkeypatch.setattr(builtins, "exec", record("exec"))
    return tmp_path / "pwned", calls


@pytest.mark.parametrize("template", HOSTILE, ids=[repr(t)[:40] for t in HOSTILE])
def test_hostile_formula_is_refused_and_runs_nothing(template, sentinel_guard):
    sentinel, calls = sentinel_guard
    text = template.replace("{sentinel}", str(sentinel))
    with pytest.raises(FormulaError) as info:
        compile_formula(text)
    assert "\n" not in str(info.value)
    assert calls == []
    assert not sentinel.exists()


def test_parser_source_never_calls_eval_exec_or_compile_to_bytecode():
    """The module builds torch functions by recursion over the tree; a grep for eval/exec calls
    guards against someone 'simplifying' it later (ruff S307/S102 check this too)."""
    import inspect
    import re

    source = inspect.getsource(formula_module)
    assert not re.search(r"(?<![\w.])(eval|exec|compile)\(", source)


def test_deep_nesting_gives_a_formula_or_a_clean_error_never_recursion_error():
    """Deep nesting within the length limit → a Formula or FormulaError, never RecursionError
    (limits: MAX_LENGTH characters, MAX_NODES tree nodes, MAX_DEPTH levels)."""
    cases = {
        "sin(" * 55 + "x" + ")" * 55: "nested too deeply",
        "-" * (MAX_DEPTH + 1) + "x": "nested too deeply",
        "-" * 150 + "x": "too complex",
        "(" * 140 + "x" + ")" * 140: None,  # parentheses add no tree depth: it is just x
        "(" * 210 + "x" + ")" * 50: "syntax error",  # Python's parser stops at 200 parentheses
        "x" + "**x" * 90: "too complex",
        " + ".join(["x"] * 40): None,  # a 40-term sum is 40 deep, and allowed
    }
    for text, expected in cases.items():
        assert len(text) <= MAX_LENGTH
        if expected is None:
            f = compile_formula(text)
            assert f(torch.tensor([2.0])).item() == (2.0 if text.startswith("(") else 80.0)
        else:
            with pytest.raises(FormulaError, match=expected):
                compile_formula(text)


def test_very_long_input_is_refused_before_parsing(monkeypatch):
    """A megabyte of text is refused by its length, without reaching ast.parse."""
    import ast

    monkeypatch.setattr(ast, "parse", lambda *a, **k: pytest.fail("ast.parse reached"))
    with pytest.raises(FormulaError, match="too long"):
        compile_formula("x+" * 500_000 + "x")


def test_huge_exponent_is_refused_without_computing_it():
    """9**9**9 has 370 million digits; refusing it must take milliseconds, not hours."""
    import time

    start = time.perf_counter()
    for text in ("9**9**9", "9^9^9^9", "(9**9)**(9**9)", "2**2**2**2**2**2"):
        with pytest.raises(FormulaError, match="exponent too large"):
            compile_formula(text)
    assert time.perf_counter() - start < 1.0
