"""Stage 6: what every backend's printer shares, and the LaTeX printer.

A backend (:mod:`actgen.backends`) owns a printer for its array library, a subclass of SymPy's
printer for it, strict: a node it cannot print is an error, never partial code. This module holds
the steps before any library is named: class-axis expressions as whole-array expressions
(:func:`to_array`), lowering with :func:`actgen.rules.lower` and common-subexpression elimination
(:func:`emit`, printing with the printer it is given), the record of a printed body
(:class:`Emitted`), the predicates printers use to choose a form, and LaTeX for docs.
"""
from __future__ import annotations

import dataclasses
import math

import sympy as sp
from sympy.printing.latex import LatexPrinter

from .model import K
from .primitives import axis_max, axis_sum, class_count, format_max
from .rules import apply_rules, lower

TOP = "top"  # a class-axis reduction used outside any sum of a Jacobian
ROW = "row"  # index roles in Jacobians: the output component (rows) and the input one (columns)
COL = "col"


def to_array(expr, free=None, count_of="z"):
    """Class-axis expression -> array expression.

    ``z[i]`` with a free index becomes the array symbol ``z`` (or ``z__row``/``z__col`` in a
    Jacobian, given ``free = {i: ROW, k: COL}``), ``Sum(t, (j, 1, K))`` becomes ``axis_sum(t)``
    with the bound index's components as whole arrays, ``z_max`` becomes ``axis_max(z)``, and
    ``K`` outside a sum ``class_count`` of an input (the length of its class axis), and ``x_scale``
    (rules.scale_free) ``axis_max(|x|)``.
    """
    free = free or {}
    # K outside a sum (a mean over the classes) is the length of the class axis of an input
    bases = sorted({str(t.base.label) for t in expr.atoms(sp.Indexed)})
    # (an expression without components, such as the gradient 1/K of a mean, counts ``count_of``)
    count = class_count(sp.Symbol(bases[0] if bases else count_of, real=True))

    def convert(e, bound):
        if isinstance(e, sp.Indexed):
            (idx,) = e.indices
            name = str(e.base.label)
            if idx in bound:
                return sp.Symbol(name, real=True)
            if idx in free:
                role = free[idx]
                return sp.Symbol(f"{name}__{role}" if role else name, real=True)
            raise ValueError(f"index {idx} of {e} is neither bound by a sum nor free")
        if isinstance(e, sp.Sum):
            (j, lo, hi), = e.limits
            return axis_sum(convert(e.function, bound | {j}))
        if e in (Z_MAX, Z_MIN):
            # in a Jacobian the max outside a sum broadcasts over both class axes: a distinct
            # symbol keeps CSE from sharing it with the max inside sums
            top = not bound and any(role in (ROW, COL) for role in free.values())
            z = sp.Symbol("z__" + TOP if top else "z", real=True)
            return axis_max(z) if e == Z_MAX else -axis_max(-z)  # min z = -max(-z)
        if isinstance(e, sp.KroneckerDelta):
            return e
        if e == K:
            return count
        if isinstance(e, sp.Symbol) and e.name.endswith(SCALE_SUFFIX) and e.name[: -len(SCALE_SUFFIX)] in bases:
            # the identity holds for every S > 0: S = 1 where max |x| = 0, an all-zero vector, whose
            # value is then computed as written (a norm's 0, not 0 * (0/0)); S = max |x| / 4 where
            # max |x| is above a quarter of the largest number, so that 1/S is a normal number
            # (XLA rewrites x / S, S one value per row, into x * (1/S), and on CPU flushes a
            # subnormal 1/S to 0: the cosine loss at y_hat = 1e308 was 0/0)
            top = axis_max(sp.Abs(sp.Symbol(e.name[: -len(SCALE_SUFFIX)], real=True)))
            return sp.Piecewise((top / 4, top > format_max() / 4), (top, top > 0), (sp.Integer(1), True))
        if not e.args:
            return e
        return e.func(*[convert(a, bound) for a in e.args])

    return convert(expr, frozenset())


SCALE_SUFFIX = "_scale"


def scale_of(base):
    """The symbol of max |x| over the class axis for the IndexedBase ``base`` (see rules.scale_free):
    to_array prints it as axis_max(|x|)."""
    return sp.Symbol(f"{base.label}{SCALE_SUFFIX}", positive=True)


Z_MAX = sp.Symbol("z_max", real=True)
Z_MIN = sp.Symbol("z_min", real=True)


@dataclasses.dataclass(frozen=True)
class Emitted:
    """Printed code for one function body: assignments (name, code) and the result's code."""

    assignments: tuple[tuple[str, str], ...]
    result: str
    rules: tuple[str, ...]
    workspace: int = 0  # float buffers _w[0], _w[1], ... the body writes into (see emit_inplace)
    result_slot: int | None = None  # the workspace buffer that holds the result, if one does


def _late_symbols(replacements):
    late = set()
    for sym, value in replacements:
        if _late(value, frozenset(late)):
            late.add(sym)
    return frozenset(late)


def _protect_dd(expr, printer):
    """Hide the arguments of double-double exponentials from CSE (their float subexpressions would
    be computed and never used): each becomes an opaque call, expanded again by ``printer._dd``."""
    from .primitives import cos_dd, exp_dd, mul_exp_dd, sin_dd

    hidden, keys = {}, {}

    def hide(t):
        if t not in keys:
            keys[t] = sp.Function(f"_dd_argument_{len(hidden)}")(*sorted(t.free_symbols, key=str))
            hidden[keys[t]] = t
        return keys[t]

    expr = expr.replace(lambda e: isinstance(e, (exp_dd, sin_dd, cos_dd)), lambda e: type(e)(hide(e.args[0])))
    expr = expr.replace(lambda e: isinstance(e, mul_exp_dd), lambda e: mul_exp_dd(e.args[0], hide(e.args[1])))
    printer.definitions = dict(hidden)
    printer.dd_names, printer.pending = {}, []
    return expr


def _lowered_cse(expr, printer, fired, after=()):
    """The steps every body shares: lower, hide double-double arguments from CSE, eliminate common
    subexpressions, and tell the printer which temporaries hold exponentials and what each is.
    ``after``: rules a backend applies to the lowered expression (forms only its printer profits
    from)."""
    lowered = lower(expr, fired)
    if after:
        lowered = apply_rules(lowered, after, fired)
    lowered = _protect_dd(lowered, printer)
    replacements, (reduced,) = sp.cse([lowered], symbols=sp.numbered_symbols("_t"), order="canonical")
    # a hidden argument used by two double-double calls is no float value to compute: inline it
    hidden = {sym: value for sym, value in replacements if value in printer.definitions}
    if hidden:
        replacements = [(sym, value.xreplace(hidden)) for sym, value in replacements if sym not in hidden]
        reduced = reduced.xreplace(hidden)
    printer.late = _late_symbols(replacements)
    printer.definitions.update(replacements)
    return replacements, reduced


def emit(expr, printer, fired=None) -> Emitted:
    """Lower ``expr``, eliminate common subexpressions and print each assignment with ``printer``
    (a backend's printer: straight-line code, one statement per common subexpression)."""
    fired = [] if fired is None else fired
    replacements, reduced = _lowered_cse(expr, printer, fired)
    lines = []
    for sym, value in replacements:
        code = printer.doprint(value)
        lines.extend(printer.pending)
        printer.pending = []
        lines.append((str(sym), code))
    result = printer.doprint(reduced)
    lines.extend(printer.pending)
    printer.pending = []
    return Emitted(tuple(lines), result, tuple(fired))


class ActgenLatexPrinter(LatexPrinter):
    """LaTeX for docs and docstrings (see :func:`latex` for long exact constants)."""

    def _print_Symbol(self, expr, style="plain"):
        if expr.name == "y_hat":
            return r"\hat{y}"
        if expr.name in ("z_max", "z_min"):
            return r"z_{\%s}" % expr.name[2:]
        if expr.name.isalpha() and len(expr.name) > 1 and expr.name not in _GREEK:
            return r"\mathrm{%s}" % expr.name  # a word (a loss's input var): upright, not a product of letters
        return super()._print_Symbol(expr, style)

    def _print_Abs(self, expr, exp=None):
        # \lvert/\rvert, not |: a bare | would split the cells of Markdown tables
        body = r"\lvert %s \rvert" % self._print(expr.args[0])
        return body if exp is None else r"%s^{%s}" % (body, exp)

    def _print_IndexedBase(self, expr):
        return r"\hat{y}" if str(expr.label) == "y_hat" else super()._print_IndexedBase(expr)

    def _print_Indexed(self, expr):
        base = self._print(expr.base)
        return f"{base}_{{{','.join(self._print(i) for i in expr.indices)}}}"


_GREEK = frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "lamda", "mu", "nu", "xi",
                    "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"})


def latex(expr) -> str:
    """LaTeX of ``expr``; exact constants with long denominators (SELU's) shown as decimals."""
    if isinstance(expr, sp.Basic):
        # the shortest decimal that rounds to the same double: 0.044715, not 0.044714999999999998
        expr = expr.xreplace({r: sp.Float(repr(float(r))) for r in expr.atoms(sp.Rational) if abs(r.q) > 1000})
    return ActgenLatexPrinter({"mul_symbol": None, "fold_short_frac": False}).doprint(expr)




def _late(term, late_symbols=frozenset()) -> bool:
    """Terms holding exponentials (possibly tiny), directly or through a common subexpression,
    are added after the others."""
    # an indicator (a Piecewise, which SymPy counts as a Function) holds no exponential
    functions = [f for f in term.atoms(sp.Function) if not isinstance(f, sp.Piecewise)]
    return term.has(sp.exp) or bool(functions) or bool(term.free_symbols & late_symbols)


def _indicator(e) -> bool:
    """A Piecewise of two numbers a (where its condition holds) and b, printed as the arithmetic
    b + (a - b) h with the condition's 0/1 indicator h: exact when b + (a - b) rounds to a in
    float64 (0 and 1, 0 and c, 1/6 and 0: checked here), and cheaper than any selection."""
    if len(e.args) != 2 or e.args[1][1] is not sp.true or not all(v.is_number for v, _ in e.args):
        return False
    (a, _), (b, _) = e.args
    return float(b) + float(a - b) == float(a) and math.isfinite(float(a)) and math.isfinite(float(b))


def _indicator_parts(e):
    """(negated, scale, offset) of a two-number Piecewise (see _indicator): the value is
    offset + scale h, h the 0/1 indicator of its condition (of its negation where the first
    number is 0: then b h' exactly, without the sum)."""
    (a, _), (b, _) = e.args
    return (True, b, 0) if a == 0 else (False, a - b, b)


def _bounded(e, arrays) -> bool:
    """``e`` is finite wherever its inputs are (so 0 * e = 0): numbers, scalar parameters,
    exponentials of nonpositive arguments, tanh/atan/erf, and sums and products of these."""
    if e.is_number:
        return bool(e.is_finite)
    if e.is_Symbol:
        return e not in arrays
    if isinstance(e, sp.exp):
        return e.args[0].is_nonpositive is True and _bounded_argument(e.args[0], arrays)
    if isinstance(e, (sp.tanh, sp.atan, sp.erf)):
        return True
    if isinstance(e, (sp.Add, sp.Mul)):
        return all(_bounded(a, arrays) for a in e.args)
    return False


def _unit_interval(e) -> bool:
    """``e`` lies in [0, 1] (never -0.0) wherever its inputs are finite: exponentials of
    nonpositive arguments and their products."""
    if isinstance(e, sp.exp):
        return e.args[0].is_nonpositive is True
    return e.is_Mul and all(_unit_interval(a) for a in e.args)


def _bounded_argument(e, arrays) -> bool:
    """An argument built from the inputs by +, *, |.|, min and max (finite for finite inputs)."""
    if e.is_number or e.is_Symbol:
        return True
    return isinstance(e, (sp.Add, sp.Mul, sp.Abs, sp.Min, sp.Max)) and all(_bounded_argument(a, arrays) for a in e.args)
