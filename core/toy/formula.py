"""A safe parser for user formulas L(x, y), turned into a differentiable torch function.

Students type a loss such as ``x^2 + 3*sin(y)`` into the playground. That text comes from a
stranger on a shared server, so it must never reach ``eval``/``exec``. Instead:

1. The text is checked for length and for characters (printable ASCII only: no unicode look-alikes
   such as a full-width ``ｘ``, which Python would silently fold into ``x``).
2. ``ast.parse(text, mode="eval")`` turns it into a syntax tree. This only *parses*: no bytecode is
   made and nothing runs.
3. We walk the tree and accept only a WHITELIST of node types: numbers, the names ``x`` ``y`` ``pi``
   ``e``, the operators ``+ - * / **`` (and ``^``, see below), unary ``+``/``-``, and calls of a fixed
   set of functions (``FUNCTIONS``). Anything else (attribute access, subscripts, strings, lambdas,
   comprehensions, keyword arguments, ``:=`` ...) is refused with a one-line message.
4. From the accepted tree we build, by recursion, a plain Python function made of torch operations.
   It is differentiable by autograd like any torch code.

Limits keep hostile input cheap: at most ``MAX_LENGTH`` characters, ``MAX_NODES`` tree nodes, nesting
depth ``MAX_DEPTH``, number literals up to ``MAX_LITERAL`` and constant exponents up to
``MAX_EXPONENT`` (so ``9**9**9`` is refused, never computed). Parts of the formula without x or y
are folded once at compile time, in float64 *tensors* (never Python big ints, which could take
forever), so ``1/0`` gives inf instead of an exception.

``^`` means power, as on a calculator (``x^2`` = ``x**2``). Python would read ``^`` as bitwise XOR
with a lower precedence than ``+`` (``x^2+1`` would mean ``x^(2+1)``), so we replace ``^`` by ``**``
in the text before parsing; the precedence is then that of ``**``.

A formula whose value is not finite anywhere on a probe grid over [-3, 3]² (e.g. ``log(-1-x^2)``)
is refused, since there is nothing to draw or descend. Non-finite values in some places are allowed:
the simulator marks particles that reach them as diverged.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable

import torch

MAX_LENGTH = 300  # characters
MAX_NODES = 200  # nodes of the syntax tree
MAX_DEPTH = 50  # nesting depth of the syntax tree (a sum of n terms is n deep)
MAX_LITERAL = 1e6  # largest number literal
MAX_EXPONENT = 100.0  # largest |exponent| when the exponent is a constant
PROBE = (-3.0, 3.0, 21)  # probe grid: lo, hi, points per axis

# name -> (torch function, number of arguments; None means two or more)
FUNCTIONS: dict[str, tuple[Callable, int | None]] = {
    "sin": (torch.sin, 1),
    "cos": (torch.cos, 1),
    "tan": (torch.tan, 1),
    "exp": (torch.exp, 1),
    "log": (torch.log, 1),
    "sqrt": (torch.sqrt, 1),
    "abs": (torch.abs, 1),
    "tanh": (torch.tanh, 1),
    "sigmoid": (torch.sigmoid, 1),
    "softplus": (torch.nn.functional.softplus, 1),
    "min": (torch.minimum, None),
    "max": (torch.maximum, None),
}
CONSTANTS = {"pi": math.pi, "e": math.e}
VARIABLES = ("x", "y")

# Friendly names for node types we refuse, so the message says what is wrong.
_REFUSED = {
    ast.Attribute: "attribute access (a.b) is not allowed",
    ast.Subscript: "subscripts (a[i]) are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "assignment (:=) is not allowed",
    ast.Starred: "* arguments are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "and/or are not allowed",
    ast.IfExp: "if/else is not allowed",
    ast.List: "lists are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Set: "sets are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Slice: "slices are not allowed",
}
_BINOPS = {
    ast.Add: torch.add,
    ast.Sub: torch.sub,
    ast.Mult: torch.mul,
    ast.Div: torch.div,
    ast.Pow: torch.pow,
}
_OP_SYMBOLS = {
    ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
    ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~", ast.Not: "not",
}


class FormulaError(ValueError):
    """A formula that cannot be used. ``str(e)`` is one line naming what is wrong."""


# A compiled piece of the formula: either a Python float (a constant, folded at compile time)
# or a function (x, y) -> tensor.
_Piece = float | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Formula:
    """A compiled formula: call it as ``f(x, y)`` with tensors of one shape.

    The result is a tensor of x's shape (broadcast with y), even for a constant formula, and it is
    differentiable with respect to both x and y. ``variables`` says which of x, y the text uses.
    """

    def __init__(self, text: str, fn: Callable, variables: frozenset[str]):
        self.text = text
        self.variables = variables
        self._fn = fn

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.as_tensor(x) if not torch.is_tensor(x) else x
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        if y is None:
            y = torch.zeros_like(x)
        elif not torch.is_tensor(y) or not y.is_floating_point():
            y = torch.as_tensor(y, dtype=x.dtype, device=x.device)
        out = self._fn(x, y)
        # Tie unused variables into the graph with a zero term, so that the output always has the
        # broadcast shape and autograd.grad with respect to x and y works even for "3" or "x^2".
        if "x" not in self.variables:
            out = out + 0.0 * x
        if "y" not in self.variables:
            out = out + 0.0 * y
        return out

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"


def compile_formula(text: str) -> Formula:
    """Parse ``text`` into a :class:`Formula`, or raise :class:`FormulaError` with a one-line message.

    Never evaluates the text as Python. See the module docstring for the grammar and the limits.
    """
    try:
        return _compile(text)
    except FormulaError:
        raise
    except (RecursionError, MemoryError):
        raise FormulaError("the formula is too deeply nested") from None


def _compile(text) -> Formula:
    if not isinstance(text, str):
        raise FormulaError("the formula must be text")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"the formula is too long ({len(text)} characters; the limit is {MAX_LENGTH})")
    for i, ch in enumerate(text):
        if ch in "\t\n\r":
            continue
        if not " " <= ch <= "~":  # printable ASCII only
            raise FormulaError(f"character {ch!r} at column {i + 1} is not allowed (use plain ASCII)")
    source, columns = _caret_to_power(text)
    if not source.strip():
        raise FormulaError("the formula is empty")
    try:
        # Python may also emit a SyntaxWarning here (e.g. "invalid decimal literal" for "1if").
        # We leave it alone: silencing it with warnings.catch_warnings() would change the global
        # warning filters, which is not safe while other server threads run.
        tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        col = columns[min(max((err.offset or 1) - 1, 0), len(columns) - 1)]
        reason = (err.msg or "invalid syntax").splitlines()[0]
        raise FormulaError(f"syntax error at column {col}: {reason}") from None
    except ValueError as err:  # e.g. null bytes on older Pythons
        raise FormulaError(f"cannot parse the formula: {str(err).splitlines()[0]}") from None
    n_nodes = sum(1 for _ in ast.walk(tree))  # ast.walk is iterative: safe on deep trees
    if n_nodes > MAX_NODES:
        raise FormulaError(f"the formula is too complex ({n_nodes} parts; the limit is {MAX_NODES})")
    used: set[str] = set()
    piece = _Builder(columns, used).build(tree.body, 1)
    fn = piece if callable(piece) else _constant_fn(piece)
    formula = Formula(text, fn, frozenset(used))
    _probe(formula)
    return formula


def _caret_to_power(text: str) -> tuple[str, list[int]]:
    """Replace ``^`` by ``**``, line breaks and tabs by spaces, and drop leading spaces (Python
    would read them as an indent). Also return, for each character of the new text, its 1-based
    column in the original text (for error messages)."""
    out, columns = [], []
    for i, ch in enumerate(text):
        if ch in " \t\n\r" and not out:
            continue  # leading white space
        if ch in "\t\n\r":
            out.append(" ")
            columns.append(i + 1)
        elif ch == "^":
            out.append("**")
            columns += [i + 1, i + 1]
        else:
            out.append(ch)
            columns.append(i + 1)
    return "".join(out), columns or [1]


def _constant_fn(value: float):
    return lambda x, y: torch.full_like(x, value)


def _fold(fn: Callable, *values: float) -> float:
    """Evaluate a torch function on constants, in float64 tensors: no exceptions, no big ints."""
    args = [torch.tensor(v, dtype=torch.float64) for v in values]
    return float(fn(*args))


class _Builder:
    """Recursion over the syntax tree: each accepted node becomes a float or a torch function."""

    def __init__(self, columns: list[int], used: set[str]):
        self.columns = columns
        self.used = used

    def col(self, node: ast.AST) -> int:
        offset = getattr(node, "col_offset", 0)
        return self.columns[min(offset, len(self.columns) - 1)]

    def fail(self, node: ast.AST, message: str, hint: str = ""):
        """Raise "<what is wrong> at column N[; hint]"."""
        raise FormulaError(f"{message} at column {self.col(node)}" + (f"; {hint}" if hint else ""))

    def build(self, node: ast.AST, depth: int) -> _Piece:
        if depth > MAX_DEPTH:
            raise FormulaError(f"the formula is nested too deeply (the limit is {MAX_DEPTH} levels)")
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, depth)
        if isinstance(node, ast.BinOp):
            return self.binop(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        for kind, message in _REFUSED.items():
            if isinstance(node, kind):
                self.fail(node, message)
        self.fail(node, f"'{type(node).__name__}' is not allowed in a formula")

    def number(self, node: ast.Constant) -> float:
        value = node.value
        if isinstance(value, str):
            self.fail(node, "text strings are not allowed")
        if isinstance(value, bool) or value is None or value is Ellipsis:
            self.fail(node, f"{value!r} is not a number")
        if isinstance(value, complex):
            self.fail(node, "complex numbers are not allowed")
        if not isinstance(value, (int, float)):
            self.fail(node, f"{type(value).__name__} values are not allowed")
        # Compare before converting: a huge int literal would overflow float().
        if not abs(value) <= MAX_LITERAL:
            self.fail(node, "number too large", f"the limit is {MAX_LITERAL:g}")
        return float(value)

    def name(self, node: ast.Name) -> _Piece:
        name = node.id
        if name in VARIABLES:
            self.used.add(name)
            return (lambda x, y: x) if name == "x" else (lambda x, y: y)
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            self.fail(node, f"'{name}' is a function", f"write {name}(...)")
        self.fail(node, f"unknown name {name[:20]!r}", "use x, y, pi, e or " + ", ".join(FUNCTIONS))

    def unary(self, node: ast.UnaryOp, depth: int) -> _Piece:
        if not isinstance(node.op, (ast.UAdd, ast.USub)):
            self.fail(node, f"operator '{_OP_SYMBOLS.get(type(node.op), '?')}' is not allowed")
        operand = self.build(node.operand, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return operand
        if not callable(operand):
            return -operand
        return lambda x, y: torch.neg(operand(x, y))

    def binop(self, node: ast.BinOp, depth: int) -> _Piece:
        op = type(node.op)
        if op not in _BINOPS:
            self.fail(node, f"operator '{_OP_SYMBOLS.get(op, '?')}' is not allowed", "use + - * / ** or ^")
        left = self.build(node.left, depth + 1)
        right = self.build(node.right, depth + 1)
        if op is ast.Pow and not callable(right) and not abs(right) <= MAX_EXPONENT:
            self.fail(node.right, "exponent too large", f"the limit is {MAX_EXPONENT:g}")
        fn = _BINOPS[op]
        if not callable(left) and not callable(right):
            return _fold(fn, left, right)
        return _apply(fn, [left, right])

    def call(self, node: ast.Call, depth: int) -> _Piece:
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                self.fail(node.func, "attribute access (a.b) is not allowed")
            self.fail(node, "only calls of named functions are allowed")
        name = node.func.id
        if name not in FUNCTIONS:
            self.fail(node, f"unknown function {name[:20]!r}", "use one of " + ", ".join(FUNCTIONS))
        if node.keywords:
            self.fail(node, "keyword arguments are not allowed")
        fn, arity = FUNCTIONS[name]
        args = [self.build(a, depth + 1) for a in node.args]  # first: refused arguments say why
        n = len(node.args)
        if arity is not None and n != arity:
            self.fail(node, f"{name}() takes {arity} argument{'s' if arity > 1 else ''}, got {n}")
        if arity is None and n < 2:
            self.fail(node, f"{name}() takes two or more arguments, got {n}")
        if arity is None:  # min/max of several: reduce pairwise
            piece = args[0]
            for a in args[1:]:
                piece = _fold(fn, piece, a) if not callable(piece) and not callable(a) else _apply(fn, [piece, a])
            return piece
        if not callable(args[0]):
            return _fold(fn, args[0])
        return _apply(fn, args)


def _apply(fn: Callable, args: list[_Piece]) -> Callable:
    """A function (x, y) -> fn(arg1(x, y), ...). Constants become 0-d tensors of x's dtype and
    device (torch functions such as minimum need tensors, and this keeps everything in floats)."""

    def run(x, y):
        values = [a(x, y) if callable(a) else x.new_tensor(a) for a in args]
        return fn(*values)

    return run


def _probe(formula: Formula) -> None:
    """Refuse a formula that is not finite anywhere on a grid over [-3, 3]²."""
    lo, hi, n = PROBE
    grid = torch.linspace(lo, hi, n, dtype=torch.float64)
    x, y = torch.meshgrid(grid, grid, indexing="ij")
    with torch.no_grad():
        value = formula(x, y)
    if value.shape != x.shape:
        raise FormulaError("the formula does not give one value per point")
    if not torch.isfinite(value).any():
        raise FormulaError(f"the formula is not a finite number anywhere on [{lo:g}, {hi:g}]²")
