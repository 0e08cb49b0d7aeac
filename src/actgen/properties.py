"""Stage 7: mathematical properties derived by SymPy (never typed into the spec).

Each property is a :class:`Property` with a value (True/False or a formula), and a reason when
SymPy could not decide it ("unknown" is reported, never guessed).
"""
from __future__ import annotations

import dataclasses

import sympy as sp

from . import model as M
from .derive import _piecewise_form
from .primitives import elementary
from .symbolic import TimeBudgetExceeded, time_budget

_ERRORS = (TimeBudgetExceeded, NotImplementedError, TypeError, ValueError, RecursionError, AttributeError)


@dataclasses.dataclass(frozen=True)
class Property:
    name: str
    value: object  # True / False / a string such as "(0, 1)"; None when unknown
    reason: str = ""

    @property
    def known(self):
        return self.value is not None


@dataclasses.dataclass(frozen=True)
class Range:
    low: sp.Expr
    high: sp.Expr
    low_closed: bool
    high_closed: bool

    def text(self, unicode=True):
        inf = "∞" if unicode else "oo"

        def show(v):
            if v is sp.oo:
                return inf
            if v is sp.S.NegativeInfinity:
                return "-" + inf
            return sp.sstr(sp.nsimplify(v) if v.is_Float else v)

        return f"{'[' if self.low_closed else '('}{show(self.low)}, {show(self.high)}{']' if self.high_closed else ')'}"


def _with_defaults(expr, params):
    return expr.xreplace({p.symbol: p.default for p in params})


def _limit(expr, point, seconds=4.0):
    with time_budget(seconds):
        return sp.limit(expr, M.Z, point)


def kinks(expr):
    """Finite points where a Piecewise/Max/Min/Abs/sign/Heaviside of z switches."""
    expr = _piecewise_form(expr)
    points = set()
    for rel in expr.atoms(sp.core.relational.Relational):
        if rel.has(M.Z):
            try:
                with time_budget(2.0):
                    sol = sp.solve(sp.Eq(rel.lhs, rel.rhs), M.Z)
            except _ERRORS:
                continue
            points.update(s for s in sol if s.is_real)
    for f in expr.atoms(sp.Abs, sp.sign, sp.Heaviside):
        try:
            with time_budget(2.0):
                sol = sp.solve(sp.Eq(f.args[0], 0), M.Z)
        except _ERRORS:
            continue
        points.update(s for s in sol if s.is_real)
    return sorted(points, key=lambda v: float(v))


def output_range(f, fprime, params=()) -> Property:
    """Infimum and supremum of f over the reals, from the limits at ±∞ and the values at critical
    points and kinks; an endpoint is closed when some finite z attains it."""
    f = _with_defaults(f, params)
    fprime = _with_defaults(fprime, params)
    try:
        ends = [_limit(elementary(f), sp.S.NegativeInfinity), _limit(elementary(f), sp.oo)]
    except _ERRORS:
        return Property("range", None, "SymPy could not find the limits of f at ±∞")
    if any(isinstance(e, sp.AccumBounds) or e.has(sp.nan) or not (e.is_real or e.is_infinite) for e in ends):
        return Property("range", None, "f has no limit at ±∞ (it oscillates or SymPy could not decide)")
    candidates = list(kinks(f))
    try:
        with time_budget(4.0):
            crit = sp.solve(sp.Eq(elementary(_piecewise_form(fprime)), 0), M.Z)
    except _ERRORS:
        return Property("range", None, "SymPy could not solve f'(z) = 0 for the critical points")
    if isinstance(crit, (list, tuple)):
        candidates += [c for c in crit if c.is_real]
    values = []
    for c in candidates:
        try:
            values.append(sp.nsimplify(f.xreplace({M.Z: c})) if not f.xreplace({M.Z: c}).is_Float else f.xreplace({M.Z: c}))
        except _ERRORS:
            return Property("range", None, f"could not evaluate f at z = {c}")
    constant_pieces = []
    if isinstance(_piecewise_form(f), sp.Piecewise):
        for value, cond in _piecewise_form(f).args:
            if not value.has(M.Z) and cond is not sp.false:
                constant_pieces.append(value)
    attained = values + constant_pieces
    try:
        low = sp.Min(*ends, *attained)
        high = sp.Max(*ends, *attained)
    except _ERRORS:
        return Property("range", None, "SymPy could not compare the candidate extremes")
    if not (low.is_number or low.is_infinite) or not (high.is_number or high.is_infinite):
        return Property("range", None, "the extremes depend on a parameter in a way SymPy could not order")
    low_closed = low.is_finite and any(sp.simplify(v - low) == 0 for v in attained)
    high_closed = high.is_finite and any(sp.simplify(v - high) == 0 for v in attained)
    return Property("range", Range(low, high, bool(low_closed), bool(high_closed)))
