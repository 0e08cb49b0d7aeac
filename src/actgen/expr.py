"""Stage 2: a whitelisting parser from spec text to SymPy expressions.

Spec text is parsed with Python's :mod:`ast` and every node is mapped explicitly onto a SymPy
constructor. Nothing is evaluated: no ``eval``/``exec``/``sympify``/``parse_expr`` ever sees user
text, so names such as ``__import__`` or attribute access simply have no meaning here.

Allowed syntax: numbers, the names in scope, ``+ - * / **``, comparisons and ``&``/``|``/``and``/
``or`` inside conditions, calls of whitelisted functions, tuples (Piecewise branches, Sum limits),
list literals (vectors, in identities) and subscripts ``name[index]`` (vector components).
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import keyword
import math
from typing import Callable

import sympy as sp

from .errors import EntryFailure

MAX_TEXT = 2000
MAX_NODES = 600
MAX_DEPTH = 40
MAX_INT_DIGITS = 60
MAX_EXPONENT = 1000

BUILTIN_FUNCTIONS: dict[str, Callable] = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "atan": sp.atan,
    "asinh": sp.asinh,
    "sin": sp.sin,
    "cos": sp.cos,
    "erf": sp.erf,
    "erfc": sp.erfc,
    "Abs": sp.Abs,
    "abs": sp.Abs,
    "sign": sp.sign,
    "Max": sp.Max,
    "max": sp.Max,
    "Min": sp.Min,
    "min": sp.Min,
    "Heaviside": lambda x, h0=sp.Rational(1, 2): sp.Heaviside(x, h0),
}

CONSTANTS = {"pi": sp.pi, "E": sp.E}


@dataclasses.dataclass(frozen=True)
class VectorValue:
    """A K-vector in an identity: ``component(index)`` gives its index-th entry (1-based)."""

    component: Callable[[sp.Expr], sp.Expr]
    length: int | None = None  # a concrete length for list literals; None for a general K


@dataclasses.dataclass(frozen=True)
class Scope:
    """What an expression may name: variables, indexed vectors, functions and whether ``==`` is allowed."""

    variables: dict
    functions: dict = dataclasses.field(default_factory=dict)
    allow_equality: bool = False
    allow_diff: bool = False

    def names(self):
        return sorted(set(self.variables) | set(CONSTANTS))

    def function_names(self):
        return sorted(set(BUILTIN_FUNCTIONS) | set(self.functions) | {"Piecewise", "Sum"} | ({"diff"} if self.allow_diff else set()))


def is_condition(value) -> bool:
    """A relational or logical value (SymPy's Symbol is a Boolean too, so test the real kinds)."""
    from sympy.logic.boolalg import BooleanAtom, BooleanFunction

    return isinstance(value, (sp.core.relational.Relational, BooleanFunction, BooleanAtom))


def valid_identifier(name: object) -> bool:
    """Names that can become Python identifiers in generated code."""
    return (
        isinstance(name, str)
        and name.isidentifier()
        and name.isascii()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
        and name.lower() == name
    )


def parse(text: object, scope: Scope):
    """Parse ``text`` in ``scope``; returns a SymPy object or raises :class:`EntryFailure`."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise EntryFailure(f"expected an expression (text or number), got {_kind(text)}; write it as text, e.g. z / (1 + Abs(z))")
    if isinstance(text, float) and not math.isfinite(text):
        raise EntryFailure(f"number {text} is not finite; use a finite number")
    if isinstance(text, (int, float)):
        text = repr(text)
    if len(text) > MAX_TEXT:
        raise EntryFailure(f"expression is {len(text)} characters long, over the limit of {MAX_TEXT}; split it up")
    if not text.strip():
        raise EntryFailure("expression is empty; write an expression such as 'z / (1 + Abs(z))'")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        shown = text.strip() if len(text.strip()) <= 60 else text.strip()[:57] + "..."
        raise EntryFailure(f"syntax error{col} in '{shown}': {exc.msg}; write the expression in SymPy syntax") from None
    except (ValueError, RecursionError, MemoryError):
        raise EntryFailure("expression could not be parsed (too deeply nested or invalid characters); simplify it") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise EntryFailure(f"expression has {count} syntax nodes, over the limit of {MAX_NODES}; simplify it")
    return _Converter(scope, text.strip()).convert(tree.body, 0)


def _kind(value):
    return {dict: "a mapping", tuple: "a list", list: "a list", type(None): "nothing", bool: "a boolean", int: "a number", float: "a number", str: "text"}.get(type(value), type(value).__name__)


_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_COMPARE = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}


class _Converter:
    def __init__(self, scope: Scope, text: str = ""):
        self.scope = scope
        self.text = text

    def convert(self, node, depth):
        if depth > MAX_DEPTH:
            raise EntryFailure(f"expression is nested more than {MAX_DEPTH} levels deep; simplify it")
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            if isinstance(node, ast.IfExp):
                raise EntryFailure(f"conditional expression '{_describe(node)}' is not allowed in an expression; write Piecewise((value, condition), (other, True))")
            raise EntryFailure(f"{_construct(node)} '{_describe(node)}' is not allowed in an expression; use numbers, the names in scope, + - * / **, comparisons and calls of known functions")
        return method(node, depth + 1)

    def _scalar(self, node, depth):
        value = self.convert(node, depth)
        if isinstance(value, VectorValue):
            raise EntryFailure(f"'{ast.unparse(node)}' is a vector; take a component with [index]")
        if isinstance(value, tuple):
            raise EntryFailure(f"'{ast.unparse(node)}' is a tuple; tuples only appear in Piecewise branches and Sum limits")
        return value

    def _Constant(self, node, depth):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            what = {str: "a string", bytes: "a bytes literal", complex: "a complex number", type(None): "None", bool: "a boolean"}.get(type(value), type(value).__name__)
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise EntryFailure(f"literal {shown} is {what}; only real numbers may appear in expressions (use True only as the last Piecewise condition)")
        if isinstance(value, int):
            if len(str(abs(value))) > MAX_INT_DIGITS:
                raise EntryFailure(f"integer literal has more than {MAX_INT_DIGITS} digits; use a smaller number")
            return sp.Integer(value)
        if not math.isfinite(value):
            raise EntryFailure("number is not finite; use a finite number")
        # keep decimal literals exact as written: 0.01 means 1/100, and every digit of a long
        # constant (SELU's) is kept, not only the 17 a float holds
        source = ast.get_source_segment(self.text, node) or repr(value)
        try:
            return sp.Rational(source.replace("_", ""))
        except (TypeError, ValueError):
            return sp.Rational(repr(value))

    def _Name(self, node, depth):
        name = node.id
        if name in self.scope.variables:
            return self.scope.variables[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in self.scope.function_names():
            raise EntryFailure(f"'{name}' is a function; call it as {name}(...)")
        if name.startswith("_"):
            raise EntryFailure(f"name '{name}' is not allowed (names starting with '_' are reserved); use one of the names in scope: {', '.join(self.scope.names())}")
        raise EntryFailure(f"unknown name '{name}'{_hint(name, self.scope.names(), 'the names in scope are')}")

    def _UnaryOp(self, node, depth):
        if isinstance(node.op, ast.USub):
            return -self._scalar(node.operand, depth)
        if isinstance(node.op, ast.UAdd):
            return self._scalar(node.operand, depth)
        if isinstance(node.op, ast.Not):
            return sp.Not(self._scalar(node.operand, depth))
        raise EntryFailure(f"operator in '{ast.unparse(node)}' is not allowed; use + - * / ** and comparisons")

    def _BinOp(self, node, depth):
        if isinstance(node.op, ast.Pow):
            return self._power(node, depth)
        if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            a, b = self._scalar(node.left, depth), self._scalar(node.right, depth)
            if not (is_condition(a) and is_condition(b)):
                raise EntryFailure(f"'&' and '|' combine conditions only, in '{ast.unparse(node)}'")
            return sp.And(a, b) if isinstance(node.op, ast.BitAnd) else sp.Or(a, b)
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise EntryFailure(f"operator in '{ast.unparse(node)}' is not allowed; use + - * / ** and comparisons")
        a, b = self._scalar(node.left, depth), self._scalar(node.right, depth)
        for operand in (a, b):
            if is_condition(operand):
                raise EntryFailure(f"a condition cannot be used in arithmetic in '{ast.unparse(node)}'; use Piecewise((value, condition), ...)")
        return op(a, b)

    def _power(self, node, depth):
        base = self._scalar(node.left, depth)
        exponent = self._scalar(node.right, depth)
        if exponent.is_number and exponent.is_integer and abs(int(exponent)) > MAX_EXPONENT:
            raise EntryFailure(f"integer exponent {ast.unparse(node.right)} is larger than {MAX_EXPONENT}; such powers are not allowed")
        if exponent.is_number and base.is_number and base.is_integer and exponent.is_integer and abs(int(base)) > 1:
            digits = len(str(abs(int(base)))) * abs(int(exponent))
            if digits > MAX_INT_DIGITS * 10:
                raise EntryFailure(f"power {ast.unparse(node)} is too large to evaluate; use a smaller number")
        return base**exponent

    def _BoolOp(self, node, depth):
        values = [self._scalar(v, depth) for v in node.values]
        if not all(is_condition(v) for v in values):
            raise EntryFailure(f"'and'/'or' combine conditions only, in '{ast.unparse(node)}'")
        return sp.And(*values) if isinstance(node.op, ast.And) else sp.Or(*values)

    def _Compare(self, node, depth):
        if len(node.ops) != 1:
            raise EntryFailure(f"chained comparison '{ast.unparse(node)}' is not allowed; combine two comparisons with &")
        op = node.ops[0]
        if isinstance(op, ast.Eq):
            if not self.scope.allow_equality or depth > 2:
                raise EntryFailure(f"'==' is only allowed at the top of an identity's claim, in '{ast.unparse(node)}'")
            return ("==", self._scalar(node.left, depth), self._scalar(node.comparators[0], depth))
        cls = _COMPARE.get(type(op))
        if cls is None:
            raise EntryFailure(f"comparison in '{ast.unparse(node)}' is not allowed; use <, <=, > or >=")
        return cls(self._scalar(node.left, depth), self._scalar(node.comparators[0], depth))

    def _Tuple(self, node, depth):
        return tuple(self._scalar(e, depth) for e in node.elts)

    def _List(self, node, depth):
        items = tuple(self._scalar(e, depth) for e in node.elts)
        if not items:
            raise EntryFailure("an empty vector [] has no components")

        def component(index, items=items):
            if index.is_Integer and 1 <= int(index) <= len(items):
                return items[int(index) - 1]
            raise EntryFailure(f"vector of length {len(items)} has no component {index} (components are numbered from 1)")

        return VectorValue(component, len(items))

    def _Subscript(self, node, depth):
        target = node.value
        index = self._scalar(node.slice, depth)
        if not (index.is_Integer or (index.is_Symbol and index.is_integer)):
            raise EntryFailure(f"subscript in '{ast.unparse(node)}' must be an index name or a whole number")
        if isinstance(target, ast.Name) and isinstance(self.scope.variables.get(target.id), sp.IndexedBase):
            return self.scope.variables[target.id][index]
        value = self.convert(target, depth)
        if isinstance(value, VectorValue):
            return value.component(index)
        raise EntryFailure(f"'{_describe(target)}' cannot be subscripted; only vectors take [index], e.g. z[i] in a vector activation")

    def _Call(self, node, depth):
        if not isinstance(node.func, ast.Name):
            if not isinstance(node.func, (ast.Attribute, ast.Call, ast.Subscript, ast.Lambda)):
                raise EntryFailure(f"'{_describe(node.func)}' cannot be called; call a known function by name, e.g. exp(z)")
            self.convert(node.func, depth)  # reports the construct (attribute access, lambda, ...)
            raise EntryFailure(f"'{_describe(node.func)}' cannot be called; call a known function by name, e.g. exp(z)")
        if node.keywords:
            raise EntryFailure(f"keyword arguments are not allowed in '{ast.unparse(node)}'; pass values by position")
        name = node.func.id
        if name == "Piecewise":
            return self._piecewise(node, depth)
        if name == "Sum":
            return self._sum(node, depth)
        if name == "diff" and self.scope.allow_diff:
            return self._diff(node, depth)
        if name in self.scope.functions:
            args = [self.convert(a, depth) for a in node.args]
            return self.scope.functions[name](*args)
        if name in BUILTIN_FUNCTIONS:
            args = [self._scalar(a, depth) for a in node.args]
            try:
                return BUILTIN_FUNCTIONS[name](*args)
            except TypeError:
                raise EntryFailure(f"wrong number of arguments in '{_describe(node)}'; see the function's usual signature, e.g. exp(z), log(z), Max(a, b)") from None
        if name.startswith("_"):
            raise EntryFailure(f"function '{name}' is not allowed (names starting with '_' are reserved); call one of the known functions: {', '.join(self.scope.function_names())}")
        raise EntryFailure(f"unknown function '{name}'{_hint(name, self.scope.function_names(), 'the known functions are')}")

    def _piecewise(self, node, depth):
        if not node.args:
            raise EntryFailure("Piecewise needs (value, condition) pairs, the last with condition True")
        pairs = []
        for arg in node.args:
            if not isinstance(arg, ast.Tuple) or len(arg.elts) != 2:
                raise EntryFailure(f"Piecewise arguments must be (value, condition) pairs, got '{ast.unparse(arg)}'")
            value = self._scalar(arg.elts[0], depth)
            cond_node = arg.elts[1]
            if isinstance(cond_node, ast.Constant) and cond_node.value is True:
                cond = sp.true
            else:
                cond = self._scalar(cond_node, depth)
                if not is_condition(cond):
                    raise EntryFailure(f"'{ast.unparse(cond_node)}' is not a condition; write a comparison such as z > 0")
            pairs.append((value, cond))
        if pairs[-1][1] is not sp.true:
            raise EntryFailure("the last Piecewise branch must have the condition True, so that every input has a value; add a last branch (value, True)")
        return sp.Piecewise(*pairs)

    def _sum(self, node, depth):
        if len(node.args) != 2 or not isinstance(node.args[1], ast.Tuple) or len(node.args[1].elts) != 3:
            raise EntryFailure("write a sum over classes as Sum(term, (j, 1, K))")
        term = self._scalar(node.args[0], depth)
        index, low, high = (self._scalar(e, depth) for e in node.args[1].elts)
        if not (index.is_Symbol and index.is_integer):
            raise EntryFailure(f"the summation index must be an index name, got '{ast.unparse(node.args[1].elts[0])}'")
        return sp.Sum(term, (index, low, high))

    def _diff(self, node, depth):
        if len(node.args) != 2:
            raise EntryFailure("write a derivative as diff(expression, variable)")
        expr = self._scalar(node.args[0], depth)
        var = self._scalar(node.args[1], depth)
        if not (var.is_Symbol or isinstance(var, sp.Indexed)):
            raise EntryFailure(f"diff needs a variable to differentiate by, got '{ast.unparse(node.args[1])}'")
        return sp.Derivative(expr, var)


_CONSTRUCTS = {
    "Attribute": "attribute access",
    "Lambda": "lambda",
    "ListComp": "comprehension",
    "SetComp": "comprehension",
    "DictComp": "comprehension",
    "GeneratorExp": "comprehension",
    "JoinedStr": "f-string",
    "FormattedValue": "f-string",
    "NamedExpr": "assignment expression (:=)",
    "Starred": "starred argument",
    "Dict": "dict literal",
    "Set": "set literal",
    "IfExp": "conditional expression",
    "Slice": "slice",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield",
}


def _describe(node):
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every node parse() produces
        text = type(node).__name__
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def _construct(node):
    return _CONSTRUCTS.get(type(node).__name__, f"syntax '{type(node).__name__}'")


def _suggest(name, known):
    close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def _hint(name, known, label):
    """``; did you mean 'x'? The allowed keys are a, b`` (or without the question): what to do."""
    listing = ", ".join(known)
    suggestion = _suggest(name, list(known))
    if suggestion:
        return f"{suggestion} {label[0].upper()}{label[1:]} {listing}"
    return f"; {label} {listing}"
