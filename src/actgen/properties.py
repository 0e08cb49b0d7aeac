"""Stage 7: mathematical properties derived by SymPy (never typed into the spec).

Each property is a :class:`Property` with a value and a reason: for a decided property the reason
says how it was decided, for an undecided one (value ``None``, shown as "unknown") why SymPy could
not decide it. Nothing is guessed, and numerical sampling never decides a property.

The method: f (with parameters at their spec defaults) is cut at its kinks into *pieces*, open
intervals on which f is one elementary expression, plus its values at the kinks. On each piece
the expression is proved smooth (every log argument positive, every fractional power's base
positive, every denominator non-zero), so the limits at the ends of a piece exist or SymPy says
they do not, and the sign of a derivative on a piece is decided by assumptions, by the complete
zero set that ``solveset`` returns, or, when ``solveset`` cannot solve, by isolating the zeros
with the next derivative (a function that is strictly monotone between consecutive zeros of its
derivative has at most one zero there). A zero so isolated but not solved in closed form is
located by ``nsolve`` inside its proven bracket and its value is labelled as computed.

Signs of exact constants (f'(1), f(2) + f(-2), ...) are decided with SymPy's assumptions or with
``evalf(strict=True)``, which raises rather than return digits it cannot guarantee.
"""
from __future__ import annotations

import dataclasses
import functools

import sympy as sp

from . import model as M
from .derive import _piecewise_form
from .primitives import elementary
import contextlib

_ERRORS = (NotImplementedError, TypeError, ValueError, RecursionError, AttributeError, IndexError, KeyError, ZeroDivisionError)

class TooLarge(ValueError):
    """A SymPy step refused because its input exceeds the operation count allowed for it."""


# The work of each SymPy step is bounded by the size of its input (sp.count_ops), never by a clock,
# so the same spec gives the same properties on any machine, however loaded (issue 16). The limits
# sit well above the largest input each step meets in the bundled spec (measured with
# ACTGEN_EFFORT_LOG=1), and a step refused is reported as "unknown" with its size.
EFFORT_OPS = {
    "solve": 40, "subs": 2000, "limit": 300, "as_set": 40, "solveset": 40, "nsolve": 2000,
    "simplify": 150, "analysis": 2000,
}


# SymPy's solvers rewrite exp(a z), exp(b z) in one generator X = exp(z/L) (L the lcm of the
# denominators of a, b) and factor a polynomial of degree max(|a|, |b|) L: exp(50 z) or exp(0.637 z)
# = X**637 (X = exp(z/1000)) keep its factorisation busy for minutes, a small expression all the same
MAX_EXP_DEGREE = 24
_SOLVER_STEPS = ("solve", "solveset", "as_set")


def _exp_degree(expr):
    """The degree of ``expr`` in the common exponential generator the solvers would use (0 without
    exponentials of a rational multiple of z)."""
    rates = []
    for e in elementary(expr).atoms(sp.exp):
        rate = sp.diff(e.args[0], Z)
        if rate.is_number and rate != 0:
            rates.append(sp.nsimplify(rate, rational=True) if rate.is_Float else rate)
    rates = [r for r in rates if r.is_Rational]
    if not rates:
        return 0
    common = functools.reduce(sp.ilcm, [r.q for r in rates], 1)
    return max(abs(r) * common for r in rates)


@contextlib.contextmanager
def _effort(step, expr):
    n = sp.count_ops(expr)
    if _EFFORT_LOG is not None:
        _EFFORT_LOG.setdefault(step, []).append(n)
    if n > EFFORT_OPS[step]:
        raise TooLarge(f"{_short(expr, 60)} has {n} operations, more than the {EFFORT_OPS[step]} allowed for SymPy's {step}")
    if step in _SOLVER_STEPS:
        degree = _exp_degree(expr)
        if degree > MAX_EXP_DEGREE:
            raise TooLarge(f"{_short(expr, 60)} is a polynomial of degree {degree} in an exponential, more than the {MAX_EXP_DEGREE} allowed for SymPy's {step}")
        constant = _transcendental_constant(expr)
        if constant is not None:
            raise TooLarge(f"{_short(expr, 60)} written in exponentials has the transcendental coefficient {sp.sstr(constant)}, "
                           f"with which SymPy's {step} has no bound on its work")
    yield


def _transcendental_constant(expr):
    """A transcendental number that ``expr``, written in exponentials, carries as a coefficient
    (sin(1/2), exp(2) from cosh(z - 2), exp(I) from sin(z + 1)), or None. SymPy's solvers turn such
    an equation into a polynomial in exp(z) (or clear its radicals) whose roots they then seek in
    radicals of that constant: two fuzzed activations, sin(1/2)/(1 + z**2) + sqrt(1 + z**2) and
    sinh(2 - z)/(1 + tanh(z)**2), each spent minutes in solveset (profiled: _solve_radical and
    _solve_trig expanding and evaluating radicals of sin(1/2) and exp(2)). A rule on the input,
    not a clock: the step is refused and the property is decided another way or reported unknown."""
    e = elementary(expr)
    for form in (e, e.rewrite(sp.exp)):  # the constant as written first, then those of shifts
        for f in sorted(form.atoms(sp.Function), key=sp.default_sort_key):
            if f.is_number:
                return f
            if isinstance(f, sp.exp):
                shift = sp.expand(f.args[0]).as_independent(Z, as_Add=True)[0]
                if shift != 0 and not (isinstance(shift, sp.log) and shift.args[0].is_Rational):
                    return sp.exp(shift, evaluate=False)
    return None


_EFFORT_LOG = {} if __import__("os").environ.get("ACTGEN_EFFORT_LOG") else None

Z = M.Z
OO, NOO = sp.oo, sp.S.NegativeInfinity
MAX_ORDER = 4  # continuity is checked up to C^MAX_ORDER at each kink, then C^inf by identity

# the order of the properties in Entry.properties, the tables and the catalog
NAMES = (
    "range", "bounded_below", "bounded_above", "monotonic", "derivative_monotonic", "derivative_range", "convexity",
    "zero_at_origin", "zero_centred", "mean", "second_moment", "gain",
    "saturating", "continuity", "identity_near_origin", "odd", "even",
)
TITLES = {
    "range": "Range", "bounded_below": "Bounded below", "bounded_above": "Bounded above",
    "monotonic": "Monotonic", "derivative_monotonic": "f′ monotonic", "derivative_range": "Range of f′",
    "convexity": "Convexity", "zero_at_origin": "f(0) = 0", "zero_centred": "Zero-centred (E f(Z) = 0)",
    "mean": "E f(Z)", "second_moment": "E f(Z)²", "gain": "Gain 1/√E f(Z)²",
    "saturating": "Saturating (f′ → 0)", "continuity": "Smoothness", "identity_near_origin": "≈ identity near 0",
    "odd": "Odd", "even": "Even", "sums_to_one": "Sums to 1",
}
VECTOR_NAMES = ("range", "sums_to_one")


@dataclasses.dataclass(frozen=True)
class Property:
    name: str
    value: object  # True / False / a string such as "C^1" / a Range; None when unknown
    reason: str = ""  # how it was decided, or why it could not be
    # for a function with parameters: the property derived with them as symbols ("(-alpha, ∞) for
    # every alpha > 0", "C^0 for every alpha > 0 other than 1; C^1 at alpha = 1", "convex for
    # 0 < alpha < 1 or alpha = 1; neither for alpha > 1"), where SymPy decides it; "" if not
    general: str = ""
    general_reason: str = ""

    @property
    def known(self):
        return self.value is not None

    def text(self):
        """Short display form: yes / no / the value / unknown."""
        if self.value is None:
            return "unknown"
        if self.value is True:
            return "yes"
        if self.value is False:
            return "no"
        return self.value.text() if hasattr(self.value, "text") else str(self.value)


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
            text = _show(v)
            return text if unicode else text.replace("≈", "~")

        return f"{'[' if self.low_closed else '('}{show(self.low)}, {show(self.high)}{']' if self.high_closed else ')'}"


class Undecided(Exception):
    """SymPy could not decide; the message is the reason."""


def _with_defaults(expr, params):
    return expr.xreplace({p.symbol: p.default for p in params})


def _defaults_note(params):
    if not params:
        return ""
    return " (parameters at their spec defaults: " + ", ".join(f"{p.name} = {sp.sstr(p.default)}" for p in params) + ")"


def _show(v):
    """A short display of a value: exact when short, else rounded and marked with ≈."""
    if v is OO:
        return "∞"
    if v is NOO:
        return "-∞"
    text = sp.sstr(v)
    if v.is_Float or (len(text) > 16 and v.is_number):
        return "≈" + sp.sstr(sp.Float(elementary(v).evalf(6), 6))
    return text


def _short(e, limit=120):
    text = sp.sstr(e)
    return text if len(text) <= limit else text[:limit] + " …"


def kinks(expr):
    """Finite points where a Piecewise/Max/Min/Abs/sign/Heaviside of z switches."""
    expr = _piecewise_form(expr)
    points = set()
    for rel in expr.atoms(sp.core.relational.Relational):
        if rel.has(M.Z):
            try:
                with _effort("solve", rel.lhs - rel.rhs):
                    sol = sp.solve(sp.Eq(rel.lhs, rel.rhs), M.Z)
            except _ERRORS:
                continue
            points.update(s for s in sol if s.is_real)
    for f in expr.atoms(sp.Abs, sp.sign, sp.Heaviside):
        try:
            with _effort("solve", f.args[0]):
                sol = sp.solve(sp.Eq(f.args[0], 0), M.Z)
        except _ERRORS:
            continue
        points.update(s for s in sol if s.is_real)
    return sorted(points, key=lambda v: float(v))


# -- exact constants -------------------------------------------------------------------------------


def _sign(v):
    """Sign (1, 0, -1) of an exact constant or ±oo; None when SymPy cannot decide it."""
    if v is OO:
        return 1
    if v is NOO:
        return -1
    v = elementary(v)
    if v.has(sp.nan, sp.zoo, sp.AccumBounds) or Z in v.free_symbols:
        return None
    if v.free_symbols:  # an expression in the parameters: by their assumptions only
        s = 0 if v.is_zero else 1 if v.is_positive else -1 if v.is_negative else None
        if s is None and _UNDECIDED_SIGNS is not None:
            _UNDECIDED_SIGNS.append(v)  # for the case split of general_properties
        return s
    if v.is_zero:
        return 0
    if v.is_positive:
        return 1
    if v.is_negative:
        return -1
    try:
        n = v.evalf(30, strict=True)  # raises instead of returning digits it cannot guarantee
    except _ERRORS + (sp.core.evalf.PrecisionExhausted,):
        n = None
    if n is not None and n.is_Float:
        return 1 if n > 0 else -1
    try:
        if sp.simplify(v) == 0:
            return 0
    except _ERRORS:
        pass
    return None


def _cmp(a, b):
    if a == b:
        return 0
    if a.is_infinite or b.is_infinite:
        return _sign(a - b) if not (a.is_infinite and b.is_infinite) else (1 if a is OO else -1)
    return _sign(a - b)


def _finite_real(v):
    if v.has(sp.nan, sp.zoo, sp.AccumBounds, sp.oo, sp.S.NegativeInfinity):
        return False
    if v.is_number:
        return v.is_real is not False
    # an expression in the parameters (the general analysis): finite and real by their assumptions
    return not v.has(Z) and v.is_finite is True and v.is_real is True


# -- limits ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _lim(g, point, side="+"):
    """lim g(z) as z -> point (from ``side`` at a finite point), or raise Undecided."""
    ge = elementary(g)
    try:
        # at a finite point of a smooth piece, or at ±oo when every operation has a determinate
        # extended-real value (SymPy returns nan for 0*oo, oo - oo, 1**oo, ...): substitution
        with _effort("subs", ge):
            v = ge.subs(Z, point)
        if v.is_number and not v.has(sp.nan, sp.zoo, sp.AccumBounds, sp.I) and (v.is_infinite or v.is_real):
            return v
    except _ERRORS:
        pass
    try:
        with _effort("limit", ge):
            form = sp.together(ge) if sp.count_ops(ge) < 60 else ge  # one fraction: faster for gruntz
            v = sp.limit(form, Z, point, side) if point.is_finite else sp.limit(form, Z, point)
    except _ERRORS:
        raise Undecided(f"SymPy could not find the limit of {_short(g)} as z → {_show(point)}") from None
    if isinstance(v, sp.AccumBounds) or v.has(sp.nan, sp.zoo) or not (v.is_real or v.is_infinite):
        raise Undecided(f"{_short(g)} has no limit as z → {_show(point)}")
    return v


# -- pieces ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pieces:
    """f on (lo, c1), (c1, c2), ..., (cn, hi) is exprs[0], ..., exprs[n]; f(ci) = values[i-1].
    (lo, hi) is the interior of the function's domain, (-oo, oo) for a function of the whole line;
    ``closed`` holds (end, f(end)) for each finite end the domain includes."""

    points: tuple
    exprs: tuple
    values: tuple
    owners: tuple = ()  # for each point, the index of the piece whose formula holds there
    lo: object = NOO
    hi: object = OO
    closed: tuple = ()

    def interval(self, i):
        return (self.points[i - 1] if i > 0 else self.lo, self.points[i] if i < len(self.points) else self.hi)

    def derivative(self):
        """The pieces of f′ on the interior of the domain (a one-sided derivative at a closed end
        is the limit of f′ there, which the analysis takes from the pieces)."""
        exprs = tuple(sp.diff(g, Z) for g in self.exprs)
        values = []
        for i, c in enumerate(self.points):
            # the convention of the generated code: the branch whose condition holds at c
            owner = self.owners[i]
            values.append(_at(exprs[owner], c))
        return Pieces(self.points, exprs, tuple(values), self.owners, self.lo, self.hi)


def _at(g, c):
    v = elementary(g).subs(Z, c)
    if not _finite_real(v):
        raise Undecided(f"{_short(g)} is not finite at z = {_show(c)}")
    return v


def _expand_nonsmooth(f):
    f = _piecewise_form(f)
    nonsmooth = (sp.Abs, sp.sign, sp.Heaviside)
    if f.has(*nonsmooth):
        f = f.replace(lambda e: isinstance(e, nonsmooth) and e.has(Z), lambda e: e.rewrite(sp.Piecewise))
    return sp.piecewise_fold(f) if f.has(sp.Piecewise) else f


def pieces_of(f, domain=sp.S.Reals) -> Pieces:
    """f cut at its kinks inside ``domain`` (an interval of the line: the function's domain; the
    branches that hold outside it, such as the NaN of a partial function, are never reached)."""
    f = _expand_nonsmooth(f)
    lo, hi = domain.inf, domain.sup
    ends = [e for e in (lo, hi) if e.is_finite and domain.contains(e) is sp.true]
    if not isinstance(f, sp.Piecewise):
        if f.has(sp.Piecewise):
            raise Undecided("a Piecewise inside the expression could not be folded into one")
        return Pieces((), (f,), (), (), lo, hi, tuple((e, _at(f, e)) for e in ends))
    sets, remaining = [], domain
    for value, cond in f.args:
        if cond.free_symbols - {Z}:
            raise Undecided(f"the condition {sp.sstr(cond)} depends on more than z")
        try:
            with _effort("as_set", cond):
                s = sp.Intersection(cond.as_set(), remaining)
                remaining = sp.Complement(remaining, s)
        except _ERRORS:
            raise Undecided(f"SymPy could not solve the condition {sp.sstr(cond)} for z") from None
        if value.has(sp.Piecewise):
            raise Undecided("nested Piecewise")
        sets.append((value, s))
    points = set()
    for _, s in sets:
        parts = s.args if isinstance(s, sp.Union) else (s,)
        for part in parts:
            if isinstance(part, sp.Interval):
                points.update(e for e in (part.start, part.end) if e.is_finite)
            elif isinstance(part, sp.FiniteSet):
                points.update(part.args)
            elif part is not sp.S.EmptySet:
                raise Undecided(f"the branch set {part} is not a union of intervals")
    points = sorted((c for c in points if _cmp(c, lo) == 1 and _cmp(hi, c) == 1), key=lambda v: float(v))

    def owner(x):
        return next((k for k, (_, s) in enumerate(sets) if s.contains(x) is sp.true), None)

    exprs, owners, values = [], [], []
    bounds = [lo] + points + [hi]
    for left, right in zip(bounds, bounds[1:]):
        inside = _point_in(left, right)
        k = owner(inside)
        if k is None:
            raise Undecided(f"SymPy could not tell which branch holds at z = {inside}")
        exprs.append(sets[k][0])
    for c in points:
        k = owner(c)
        if k is None:
            raise Undecided(f"SymPy could not tell which branch holds at z = {_show(c)}")
        g = sets[k][0]
        # the piece (left or right of c) with the same formula, else the point is its own piece
        i = points.index(c)
        owners.append(i if exprs[i] == g else i + 1 if exprs[i + 1] == g else None)
        values.append(_at(g, c))
    if None in owners:
        raise Undecided("a branch holds at a single point only")
    closed = []
    for e in ends:
        k = owner(e)
        if k is None:
            raise Undecided(f"SymPy could not tell which branch holds at the end z = {_show(e)} of the domain")
        closed.append((e, _at(sets[k][0], e)))
    return Pieces(tuple(points), tuple(exprs), tuple(values), tuple(owners), lo, hi, tuple(closed))


def _point_in(lo, hi):
    """An exact rational point inside (lo, hi)."""
    if lo is NOO and hi is OO:
        return sp.Integer(0)
    if lo is NOO:
        return sp.floor(hi) - 1
    if hi is OO:
        return sp.ceiling(lo) + 1
    mid = sp.Rational(str(sp.Float((lo + hi) / 2, 15)))
    if _cmp(mid, lo) == 1 and _cmp(hi, mid) == 1:
        return mid
    return (lo + hi) / 2


def _smooth_on(g, lo, hi):
    """Whether the elementary expression g is C^inf on (lo, hi): every building block is analytic
    there (entire functions; log, fractional powers and quotients with a proven domain)."""
    g = elementary(g)
    entire = (sp.exp, sp.sin, sp.cos, sp.sinh, sp.cosh, sp.tanh, sp.sech, sp.atan, sp.asinh, sp.erf, sp.erfc)
    for node in sp.preorder_traversal(g):
        if not node.has(Z) or node.is_Symbol or node.is_Add or node.is_Mul or isinstance(node, entire):
            continue
        if isinstance(node, (sp.asin, sp.acos, sp.atanh)):  # analytic where |u| < 1
            if _sign_on(1 - node.args[0] ** 2, lo, hi) != 1:
                return False, f"|{sp.sstr(node.args[0])}| < 1 (the argument of {sp.sstr(node)}) is not proven"
            continue
        if isinstance(node, sp.acosh):  # analytic where u > 1
            if _sign_on(node.args[0] - 1, lo, hi) != 1:
                return False, f"the argument of {sp.sstr(node)} is not proven greater than 1"
            continue
        if node.is_Pow:
            base, e = node.args
            if e.has(Z):
                if _sign_on(base, lo, hi) != 1:
                    return False, f"the base of {sp.sstr(node)} is not proven positive"
            elif e.is_Integer and e > 0:
                continue
            elif e.is_Integer:
                if _sign_on(base, lo, hi) not in (1, -1):
                    return False, f"the denominator {sp.sstr(base)} is not proven non-zero"
            elif _sign_on(base, lo, hi) != 1:
                return False, f"the base of {sp.sstr(node)} is not proven positive"
        elif isinstance(node, sp.log):
            if _sign_on(node.args[0], lo, hi) != 1:
                return False, f"the argument of {sp.sstr(node)} is not proven positive"
        else:
            return False, f"{type(node).__name__} is not known to be smooth"
    return True, ""


MONOTONE_SIGN_OPS = 40  # the monotone-with-a-limit argument below is tried on expressions this small


def _sign_on(h, lo, hi, depth=0):
    """1 / -1 when h > 0 / h < 0 on all of (lo, hi), proved; 0 for h == 0; else None.

    By SymPy's assumptions on h with z written as a positive variable mapped onto (lo, hi) (as
    is, as one fraction, and as one fraction with its numerator expanded), and else by monotonicity: h strictly monotone on (lo, hi)
    (its derivative of one sign, by this same function) lies strictly beyond its limit at the end
    it moves away from, so a limit >= 0 there makes it positive (<= 0: negative)."""
    if not h.has(Z):
        return _sign(h)
    t = sp.Dummy("t", positive=True)
    if lo.is_finite:
        sub = lo + t if not hi.is_finite else lo + (hi - lo) * t / (1 + t)
    elif hi.is_finite:
        sub = hi - t
    else:
        sub = None
    small = sp.count_ops(h) < 40
    forms = [h, elementary(h)]
    if small:
        forms.append(sp.factor_terms(sp.together(h)))
    for form in forms:
        e = form if sub is None else form.xreplace({Z: sub})
        if e.is_positive:
            return 1
        if e.is_negative:
            return -1
    if small:
        # one fraction with its numerator expanded (the terms that cancel, cancelled); SymPy's sign
        # of a polynomial finds the roots of its derivative, quick up to degree 2 and a quartic's
        # radicals beyond (minutes with long decimal constants), so only up to degree 2
        x = Z if sub is None else t
        num, den = sp.fraction(sp.together(elementary(h) if sub is None else elementary(h).xreplace({Z: sub})))
        e = sp.expand(num) / den
        if all(not a.is_polynomial(x) or sp.degree(a, x) <= 2 for a in sp.preorder_traversal(e) if a.is_Add and a.has(x)):
            if e.is_positive:
                return 1
            if e.is_negative:
                return -1
    if depth == 0 and sp.count_ops(h) <= MONOTONE_SIGN_OPS:
        slope = _sign_on(sp.diff(h, Z), lo, hi, depth + 1)
        if slope in (1, -1):
            try:
                start, end = _lim(h, lo, "+"), _lim(h, hi, "-")
            except Undecided:
                return None
            low = start if slope == 1 else end  # h lies strictly above its limit at this end
            high = end if slope == 1 else start  # and strictly below this one
            if _sign(low) in (0, 1):
                return 1
            if _sign(high) in (0, -1):
                return -1
    return None


# -- zeros and signs on an interval ----------------------------------------------------------------


def _zeros(h, lo, hi, depth=0):
    """The zeros of the smooth h on (lo, hi), sorted: exact where SymPy solves, else Floats that
    nsolve located inside a bracket proven to hold exactly one zero. Raises Undecided."""
    if _sign_on(h, lo, hi) in (1, -1):
        return []
    interval = sp.Interval.open(lo, hi)
    eq = elementary(h)
    if sp.count_ops(eq) > 80:
        raise Undecided(f"f′ is too large for SymPy's solvers ({sp.count_ops(eq)} operations)")
    try:
        with _effort("solveset", eq):
            sol = sp.solveset(eq, Z, interval)
    except _ERRORS:
        sol = None
    if isinstance(sol, sp.FiniteSet):
        return sorted(sol.args, key=float)
    if sol is sp.S.EmptySet:
        return []
    forms = [h]
    if isinstance(sol, sp.ConditionSet) and isinstance(sol.condition, sp.Eq):
        forms.append(sol.condition.lhs - sol.condition.rhs)  # an equivalent, often simpler, equation
    elif sol is not None:
        raise Undecided(f"{_short(h)} = 0 has infinitely many solutions ({type(sol).__name__})")
    for eq in forms:
        if _sign_on(sp.diff(eq, Z), lo, hi) in (1, -1):
            return _zero_in_monotone(eq, lo, hi)
    if depth >= 2:
        raise Undecided(f"SymPy could not solve {_short(h)} = 0")
    for eq in forms:
        try:
            splits = _zeros(sp.diff(eq, Z), lo, hi, depth + 1)
        except Undecided:
            continue
        out = []
        bounds = [lo] + splits + [hi]
        for a, b in zip(bounds, bounds[1:]):
            out += _zero_in_monotone(eq, a, b)
        out += [p for p in splits if _sign(eq.subs(Z, p)) == 0]
        return sorted(set(out), key=float)
    raise Undecided(f"SymPy could not solve {_short(h)} = 0, nor isolate its zeros with the next derivative")


def _zero_in_monotone(eq, a, b):
    """The zero (at most one) of eq, strictly monotone on (a, b)."""
    la = _lim(eq, a, "+")
    lb = _lim(eq, b, "-")
    sa, sb = _sign(la), _sign(lb)
    if sa is None or sb is None:
        raise Undecided(f"SymPy could not decide the sign of {_short(eq)} at the ends of ({_show(a)}, {_show(b)})")
    if sa * sb >= 0:
        return []
    try:
        with _effort("solve", eq):
            for s in sp.solve(eq, Z):
                if _finite_real(s) and _cmp(s, a) == 1 and _cmp(b, s) == 1:
                    return [s]
    except _ERRORS:
        pass
    for x in sorted(WITNESS_POINTS, key=abs):  # a simple exact zero, before any numerics
        if _cmp(x, a) == 1 and _cmp(b, x) == 1 and _sign(eq.subs(Z, x)) == 0:
            return [x]
    a_num = a if a.is_finite else _bracket_end(eq, b, -1, sa)
    b_num = b if b.is_finite else _bracket_end(eq, a_num, 1, sb)
    try:
        with _effort("nsolve", eq):
            # a bracketing method: the root stays inside the proven bracket
            root = sp.nsolve(elementary(eq), Z, (sp.N(a_num, 20), sp.N(b_num, 20)), solver="illinois", prec=20)
    except _ERRORS + (sp.core.evalf.PrecisionExhausted,):
        root = None
    if root is None or not (_cmp(root, a) == 1 and _cmp(b, root) == 1):
        raise Undecided(f"nsolve could not locate the zero of {_short(eq)} in ({_show(a)}, {_show(b)})")
    return [sp.Float(root, 15)]


def _bracket_end(eq, start, direction, want):
    """A finite point beyond ``start`` where eq has the sign ``want`` (exists by the limit)."""
    x = (sp.Integer(0) if not start.is_finite else sp.floor(start)) + direction
    for _ in range(12):
        if _sign(eq.subs(Z, x)) == want:
            return x
        x = x * 2 if x != 0 else sp.Integer(direction)
    raise Undecided(f"could not bracket the zero of {_short(eq)}")


def _sign_pattern(h, lo, hi):
    """[(a, b, sign)] covering (lo, hi): h has the sign on (a, b); the zeros of h separate them."""
    if not h.has(Z):
        return [(lo, hi, _require(_sign(h), h))]
    s = _sign_on(h, lo, hi)
    if s is not None:
        return [(lo, hi, s)]
    zeros = _zeros(h, lo, hi)
    bounds = [lo] + zeros + [hi]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        s = _sign_on(h, a, b) if not (a.is_Float or b.is_Float) else None
        if s is None:
            s = _require(_sign(h.subs(Z, _point_in(a, b))), h)
        out.append((a, b, s))
    return out


WITNESS_POINTS = tuple(sp.Rational(n, 2) for n in (-8, -4, -3, -2, -1, 1, 2, 3, 4, 8)) + (sp.Integer(0),)


def _witnesses(h, lo, hi):
    """Two exact points of (lo, hi) where h is < 0 and > 0, or None."""
    neg = pos = None
    for x in sorted(WITNESS_POINTS):
        if not (_cmp(x, lo) == 1 and _cmp(hi, x) == 1):
            continue
        v = elementary(h).subs(Z, x)
        s = _sign(v)
        if s == -1 and neg is None:
            neg = (x, v)
        elif s == 1 and pos is None:
            pos = (x, v)
    return (neg, pos) if neg and pos else None


def _require(s, h):
    if s is None:
        raise Undecided(f"SymPy could not decide the sign of {_short(h)}")
    return s


# -- the analysis of one function ------------------------------------------------------------------


class Analysis:
    """Shared, cached facts about f used by several properties."""

    def __init__(self, f, params=(), name="", fprime=None, domain=sp.S.Reals):
        self.params = params
        self.name = name
        self.domain = domain  # an interval: the function's domain (the whole line unless declared)
        self.note = _defaults_note(params)
        self.f = _with_defaults(f, params)
        self.fprime = fprime  # f′ as derived (with parameters), for the range of the derivative
        self.pieces = pieces_of(self.f, domain)
        self._cache = {}

    @property
    def whole_line(self):
        return self.domain == sp.S.Reals

    def contains(self, x):
        """Whether the exact point x lies in the domain."""
        return self.domain.contains(x) is sp.true

    def interior(self, x):
        return _cmp(x, self.pieces.lo) == 1 and _cmp(self.pieces.hi, x) == 1

    def cached(fn):  # noqa: N805 - a decorator for the methods below
        @functools.wraps(fn)
        def wrapper(self, *args):
            key = (fn.__name__,) + args
            if key not in self._cache:
                try:
                    self._cache[key] = ("ok", fn(self, *args))
                except Undecided as exc:
                    self._cache[key] = ("undecided", str(exc))
            kind, value = self._cache[key]
            if kind == "undecided":
                raise Undecided(value)
            return value

        return wrapper

    @cached
    def symmetry(self, name, parity):
        """odd or even, proved once for the properties that ask (odd, even, zero_centred, mean)."""
        return _symmetry(self, name, parity)

    @cached
    def derivative(self, order):
        return self.pieces if order == 0 else self.derivative(order - 1).derivative()

    @cached
    def smooth(self):
        p = self.pieces
        for i, g in enumerate(p.exprs):
            ok, why = _smooth_on(g, *p.interval(i))
            if not ok:
                raise Undecided(f"{why} on ({', '.join(map(_show, p.interval(i)))})")
        return True

    @cached
    def end_limits(self, order):
        """(left limit, right limit) of each piece of f^(order) at its ends."""
        self.smooth()
        p = self.derivative(order)
        return tuple((_lim(g, p.interval(i)[0], "+"), _lim(g, p.interval(i)[1], "-")) for i, g in enumerate(p.exprs))

    @cached
    def pattern(self, order, i):
        """The sign pattern of f^(order+1) on piece i."""
        self.smooth()
        p = self.derivative(order)
        g = p.exprs[i]
        if not g.has(Z):
            lo, hi = p.interval(i)
            return [(lo, hi, 0)]
        return _sign_pattern(sp.diff(g, Z), *p.interval(i))

    @cached
    def moment(self, power):
        """E[f(Z)^power] for a standard normal Z (see _moment)."""
        self.smooth()
        return _moment(self, power)

    @cached
    def continuity(self):
        """(order, reason): the largest k with f in C^k (-1: discontinuous; None: C^inf)."""
        return self.continuity_except(None)

    def continuity_except(self, exceptions):
        """As :meth:`continuity`; with a list ``exceptions``, a comparison at a kink that depends on
        one parameter (alpha against 1) is taken as unequal, and the parameter values where it is
        equal (its complete solution set, by solveset) are appended to the list instead."""
        self.smooth()
        p = self.pieces
        worst, where = None, ""
        for k, c in enumerate(p.points):
            left, right = p.exprs[k], p.exprs[k + 1]
            if sp.expand(left - right) == 0:
                continue
            order = None
            for m in range(MAX_ORDER + 1):
                dl = _lim(sp.diff(left, Z, m), c, "-")
                dr = _lim(sp.diff(right, Z, m), c, "+")
                same = _cmp(dl, dr)
                if same is None and exceptions is not None:
                    values = _parameter_zeros(dl - dr)
                    if values is not None:
                        exceptions.extend(values)
                        same = 1
                if same is None:
                    raise Undecided(f"SymPy could not compare the one-sided limits of f^({m}) at z = {_show(c)}")
                if m == 0 and same == 0:
                    same = _cmp(dl, p.values[k])
                if same != 0:
                    order = m - 1
                    break
            if order is None:
                raise Undecided(f"the branches at z = {_show(c)} agree up to f^({MAX_ORDER}) but SymPy could not prove them equal")
            if worst is None or order < worst:
                worst, where = order, f"at z = {_show(c)} the one-sided {_nth(order + 1)} differ"
        for c, v in p.closed:
            i, side = (0, "+") if c == p.lo else (len(p.exprs) - 1, "-")
            same = _cmp(_lim(p.exprs[i], c, side), v)
            if same is None:
                raise Undecided(f"SymPy could not compare f({_show(c)}) with its limit at that end of the domain")
            if same != 0:
                worst, where = -1, f"f({_show(c)}) = {_show(v)} at the end of the domain is not the limit of f there"
        return worst, where


def _parameter_zeros(e):
    """[(parameter, value), ...]: every zero of e, an expression in one parameter, on the values its
    assumptions allow (solveset's complete finite solution set); None when there is no such set."""
    syms = e.free_symbols
    if len(syms) != 1 or Z in syms:
        return None
    (sym,) = syms
    domain = sp.Interval.open(0, OO) if sym.is_positive else sp.S.Reals
    try:
        with _effort("solveset", e):
            sol = sp.solveset(e, sym, domain)
    except (*_ERRORS, TooLarge):
        return None
    if not isinstance(sol, sp.FiniteSet) and sol is not sp.S.EmptySet:
        return None
    return [(sym, v) for v in sol.args] if isinstance(sol, sp.FiniteSet) else []


def _nth(m):
    return "values" if m == 0 else "derivatives" if m == 1 else f"derivatives of order {m}"


# -- the properties --------------------------------------------------------------------------------


def _undecided(name, fn):
    def run(a, *args):
        try:
            return fn(a, *args)
        except (Undecided, TooLarge) as exc:
            # a reason from a nested analysis (the range of f′) may carry the note already
            return Property(name, None, str(exc) + ("" if str(exc).endswith(a.note) else a.note))
        except _ERRORS as exc:
            return Property(name, None, f"SymPy failed ({type(exc).__name__})" + a.note)

    return run


def _monotonicity(a: Analysis, order):
    """('increasing' | 'non-decreasing' | 'decreasing' | 'non-increasing' | 'constant' | False, reason)
    for f^(order)."""
    p = a.derivative(order)
    for i, g in enumerate(p.exprs):
        # a proof of non-monotonicity needs only two exact points where the derivative has
        # opposite signs; cheaper than the sign analysis below, so tried first
        w = _witnesses(sp.diff(g, Z), *p.interval(i)) if g.has(Z) else None
        if w is not None:
            (x1, v1), (x2, v2) = w
            return False, f"its derivative at z = {x1} is {_show(v1)} < 0 and at z = {x2} is {_show(v2)} > 0 (signs of exact values, decided by SymPy)"
    up = down = None
    flat = False
    for i in range(len(p.exprs)):
        for lo, hi, s in a.pattern(order, i):
            where = f"on ({_show(lo)}, {_show(hi)})"
            if s > 0 and up is None:
                up = f"its derivative is positive {where}"
            elif s < 0 and down is None:
                down = f"its derivative is negative {where}"
            elif s == 0:
                flat = True
    limits = a.end_limits(order)
    for k, c in enumerate(p.points):
        left, value, right = limits[k][1], p.values[k], limits[k + 1][0]
        for x, y in ((left, value), (value, right)):
            s = _cmp(y, x)
            if s is None:
                raise Undecided(f"SymPy could not compare the values on either side of z = {_show(c)}")
            if s > 0 and up is None:
                up = f"it jumps up at z = {_show(c)}"
            elif s < 0 and down is None:
                down = f"it jumps down at z = {_show(c)}"
    for c, v in p.closed:  # an end of the domain that belongs to it (order 0 only)
        x, y = (v, limits[0][0]) if c == p.lo else (limits[-1][1], v)
        s = _cmp(y, x)
        if s is None:
            raise Undecided(f"SymPy could not compare f({_show(c)}) with its limit at that end of the domain")
        if s > 0 and up is None:
            up = f"it jumps up at the end z = {_show(c)}"
        elif s < 0 and down is None:
            down = f"it jumps down at the end z = {_show(c)}"
    if up and down:
        return False, f"{up}, and {down}"
    if not up and not down:
        return "constant", "its derivative is 0 everywhere"
    strict = "" if flat else "strictly "
    word = ("increasing" if not flat else "non-decreasing") if up else ("decreasing" if not flat else "non-increasing")
    sign = "≥ 0" if up else "≤ 0"
    jumps = " and its jumps go the same way" if p.points else ""
    return word, f"{strict}monotone: its derivative is {sign} on every piece (sign analysis per branch){jumps}"


def prop_monotonic(a: Analysis):
    value, reason = _monotonicity(a, 0)
    return Property("monotonic", value, "f: " + reason + a.note)


def prop_derivative_monotonic(a: Analysis):
    value, reason = _monotonicity(a, 1)
    conv = " (at kinks f′ takes the branch value of the generated code)" if a.pieces.points else ""
    return Property("derivative_monotonic", value, "f′: " + reason + conv + a.note)


def _candidates(a: Analysis):
    """(value, attained, note) for every infimum/supremum candidate of f."""
    p = a.pieces
    limits = a.end_limits(0)
    out = [(v, True, "") for v in p.values] + [(v, True, f"f({_show(c)}) at the end of the domain") for c, v in p.closed]
    for i, g in enumerate(p.exprs):
        lo, hi = p.interval(i)
        out.append((limits[i][0], False, ""))
        out.append((limits[i][1], False, ""))
        if not g.has(Z):
            out.append((g, True, ""))
            continue
        for _, b, _ in a.pattern(0, i)[:-1]:  # the critical points inside the piece
            if b.is_Float:
                value = sp.Float(elementary(g).subs(Z, b).evalf(20), 15)
                out.append((value, True, f"f(z*) with z* {_show(b)} the only zero of f′ in its bracket, located by SymPy's nsolve"))
            else:
                v = _at(g, b)
                out.append((v, True, f"f({sp.sstr(b)}) = {sp.sstr(v)}"))
    return out


def _critical_hint(a: Analysis):
    """For an undecided range: the critical points that bracketing and nsolve find (evidence)."""
    hints = []
    for i, g in enumerate(a.pieces.exprs):
        d = sp.diff(g, Z)
        pts = [x for x in sorted(WITNESS_POINTS) if _cmp(x, a.pieces.interval(i)[0]) == 1 and _cmp(a.pieces.interval(i)[1], x) == 1]
        signs = [(x, _sign(elementary(d).subs(Z, x))) for x in pts]
        for (x1, s1), (x2, s2) in zip(signs, signs[1:]):
            if s1 and s2 and s1 != s2:
                try:
                    with _effort("nsolve", d):
                        root = sp.nsolve(elementary(d), Z, (x1, x2), solver="illinois", prec=15)
                except _ERRORS + (sp.core.evalf.PrecisionExhausted,):
                    continue
                value = elementary(g).subs(Z, root).evalf(15)
                hints.append(f"f′ changes sign in ({x1}, {x2}); nsolve puts a critical point at z {_show(sp.Float(root, 6))}, f {_show(sp.Float(value, 6))}")
    if not hints:
        return ""
    return "; evidence, not a proof: " + "; ".join(hints) + " (SymPy could not prove there are no other critical points)"


def _extreme(cands, want):
    best = None
    for c in cands:
        if best is None:
            best = c
            continue
        s = _cmp(c[0], best[0])
        if s is None:
            raise Undecided(f"SymPy could not compare the candidate extremes {sp.sstr(c[0])} and {sp.sstr(best[0])}")
        if s == want or (s == 0 and c[1] and not best[1]):
            best = c
    return best


def prop_range(a: Analysis):
    try:
        cands = _candidates(a)
    except Undecided as exc:
        return Property("range", None, str(exc) + _critical_hint(a) + a.note)
    low, high = _extreme(cands, -1), _extreme(cands, 1)
    notes = [n for _, _, n in (low, high) if n]
    method = ("from the limits at ±∞" if a.whole_line else f"from the limits at the ends of the domain {_domain_text(a.domain)}") + \
        " and at the kinks, the values at the kinks and at the critical points"
    return Property("range", Range(low[0], high[0], bool(low[1] and low[0].is_finite), bool(high[1] and high[0].is_finite)),
                    method + ("; " + "; ".join(notes) if notes else "") + a.note)


def _bounded(a: Analysis, side):
    """From the range when known; else from the limits (f continuous on each piece with limits at
    its ends is bounded on it)."""
    name = "bounded_below" if side < 0 else "bounded_above"
    bad = NOO if side < 0 else OO
    vals = [v for pair in a.end_limits(0) for v in pair]
    hit = next((v for v in vals if v == bad), None)
    if hit is not None:
        return Property(name, False, f"f → {_show(bad)} at an end of a piece" + a.note)
    return Property(name, True, f"every limit of f at the ends of its pieces is finite or {_show(-bad)}, and f is continuous on each piece" + a.note)


def prop_zero_at_origin(a: Analysis):
    if not a.contains(sp.Integer(0)):
        return Property("zero_at_origin", False, f"0 is outside the domain {_domain_text(a.domain)}: f(0) is NaN" + a.note)
    v = _value_at(a, sp.Integer(0))
    s = _sign(v)
    if s is None:
        raise Undecided(f"SymPy could not decide whether f(0) = {_show(v)} is 0")
    if s != 0:
        return Property("zero_at_origin", False, f"f(0) = {_show(v)}" + a.note)
    return Property("zero_at_origin", True, "f(0) = 0" + a.note)


def _domain_text(domain):
    """An interval as the docs write it: (0, 1), [0, ∞), (-∞, 0)."""
    lo, hi = domain.inf, domain.sup
    return f"{'(' if domain.left_open or lo.is_infinite else '['}{_show(lo)}, {_show(hi)}{')' if domain.right_open or hi.is_infinite else ']'}"


def _normal_outside(a: Analysis, name):
    """For a partial function: the Gaussian expectations do not exist (f(Z) is NaN with positive
    probability); the Property that says so, with that probability, or None on the whole line."""
    if a.whole_line:
        return None
    lo, hi = a.domain.inf, a.domain.sup
    outside = sp.simplify(_Phi(lo) + 1 - _Phi(hi))
    text = sp.sstr(outside) if outside.is_Rational else _show(sp.Float(outside.evalf(20), 15))
    return Property(name, "undefined", f"f is defined on {_domain_text(a.domain)} only, and a standard normal Z falls outside it with "
                    f"probability {text}, where f(Z) is NaN: E f(Z) and E f(Z)² do not exist" + a.note)


def _value_at(a: Analysis, x, order=0):
    p = a.derivative(order)
    if not a.contains(x):
        raise Undecided(f"z = {_show(x)} is outside the domain {_domain_text(a.domain)}")
    if order == 0 and x in dict(p.closed):
        return dict(p.closed)[x]
    if x in p.points:
        return p.values[p.points.index(x)]
    i = sum(1 for c in p.points if _cmp(c, x) == -1)
    return _at(p.exprs[i], x)


def prop_saturating(a: Analysis):
    limits = a.end_limits(1)
    left, right = limits[0][0], limits[-1][1]
    p = a.pieces
    ends = [(s, v, e) for s, v, e in (("z → -∞", left, p.lo), ("z → +∞", right, p.hi)) if e.is_infinite]
    if not ends:
        return Property("saturating", False, f"the domain {_domain_text(a.domain)} has no infinite end to saturate towards "
                        f"(lim f′ = {_show(left)} as z → {_show(p.lo)}+ and {_show(right)} as z → {_show(p.hi)}-)" + a.note)
    sides = [s for s, v, _ in ends if v == 0]
    reason = " and ".join(f"lim f′ = {_show(v)} as {s}" for s, v, _ in ends) + a.note
    if not sides:
        return Property("saturating", False, reason)
    return Property("saturating", "both sides" if len(sides) == 2 else sides[0], reason)


def prop_continuity(a: Analysis):
    order, where = a.continuity()
    if order is None:
        how = ("smooth on every piece and the branches agree at the kinks" if a.pieces.points
               else "built from functions smooth on the reals" if a.whole_line else f"smooth on the interior of the domain {_domain_text(a.domain)}")
        return Property("continuity", "C^inf", how + a.note)
    if order < 0:
        return Property("continuity", "discontinuous", where + a.note)
    return Property("continuity", f"C^{order}", f"smooth on every piece; {where}" + a.note)


def prop_identity_near_origin(a: Analysis, exceptions=None):
    """f(0) = 0, f′(0) = 1 and f′ continuous at 0. With a list ``exceptions`` (the analysis with
    parameters as symbols), f′(0) = 1 undecided as an equation in one parameter is taken as false
    and its solutions are appended to the list (see Analysis.continuity_except)."""
    zero = sp.Integer(0)
    if not a.interior(zero):
        return Property("identity_near_origin", False, f"0 is not inside the domain {_domain_text(a.domain)}, so f is not defined on both sides of it" + a.note)
    f0 = _value_at(a, zero)
    if _require(_sign(f0), f0) != 0:
        return Property("identity_near_origin", False, f"f(0) = {_show(f0)} ≠ 0" + a.note)
    d = a.derivative(1)
    i = sum(1 for c in d.points if _cmp(c, zero) == -1)
    if zero in d.points:
        k = d.points.index(zero)
        left = _lim(d.exprs[k], zero, "-")
        right = _lim(d.exprs[k + 1], zero, "+")
        f_left = _lim(a.pieces.exprs[k], zero, "-")
        f_right = _lim(a.pieces.exprs[k + 1], zero, "+")
        if _require(_sign(f_left), f_left) != 0 or _require(_sign(f_right), f_right) != 0:
            return Property("identity_near_origin", False, "f is not continuous at 0" + a.note)
    else:
        left = right = _at(d.exprs[i], zero)
    for side, v in (("left", left), ("right", right)):
        s = _sign(v - 1)
        if s is None and exceptions is not None:
            values = _parameter_zeros(v - 1)
            if values is not None:
                exceptions.extend(values)
                s = 1
        if s is None:
            raise Undecided(f"SymPy could not decide whether f′(0) from the {side} = {_show(v)} is 1")
        if s != 0:
            return Property("identity_near_origin", False, f"f′(0{'-' if side == 'left' else '+'}) = {_show(v)} ≠ 1" + a.note)
    return Property("identity_near_origin", True, "f(0) = 0 and f′ → 1 from both sides of 0 (f′ continuous at 0, f′(0) = 1)" + a.note)


def _symmetry(a: Analysis, name, parity):
    """odd (parity -1): f(-z) = -f(z); even (parity 1): f(-z) = f(z)."""
    what = "f(-z) = -f(z)" if parity < 0 else "f(-z) = f(z)"
    reflected = sp.Interval(-a.domain.sup, -a.domain.inf, a.domain.right_open, a.domain.left_open)
    if a.domain != reflected:
        return Property(name, False, f"the domain {_domain_text(a.domain)} is not symmetric about 0: f(-z) is NaN where f(z) is defined" + a.note)
    # a counterexample at exact points proves the property false
    for x in (sp.Integer(1), sp.Integer(2), sp.Rational(1, 2)):
        if not a.interior(x):
            continue
        d = _value_at(a, -x) - parity * _value_at(a, x)
        s = _sign(d)
        if s not in (0, None):
            return Property(name, False, f"f(-{x}) {'+' if parity < 0 else '-'} f({x}) = {sp.sstr(sp.Float(elementary(d).evalf(6), 6))} ≠ 0" + a.note)
    p = a.pieces
    if [(-c) for c in reversed(p.points)] != list(p.points):
        raise Undecided("the kinks are not symmetric about 0, and no counterexample was found at z = ±1, ±2, ±1/2")
    n = len(p.exprs)
    for k, c in enumerate(p.points):
        if _sign(p.values[k] - parity * p.values[n - 2 - k]) != 0:
            return Property(name, False, f"f({_show(-c)}) and f({_show(c)}) break {what}" + a.note)
    for i, g in enumerate(p.exprs):
        mirror = p.exprs[n - 1 - i].xreplace({Z: -Z})
        d = sp.expand(elementary(mirror - parity * g))
        if d != 0:
            try:
                with _effort("simplify", d):
                    d = sp.simplify(d)
            except _ERRORS:
                pass
        if d != 0:
            raise Undecided(f"SymPy could not reduce {sp.sstr(mirror)} {'+' if parity < 0 else '-'} ({_short(g)}) to 0")
    return Property(name, True, f"{what} proved by simplification" + (", branch by branch" if p.points else "") + a.note)


def prop_odd(a):
    return a.symmetry("odd", -1)


def prop_even(a):
    return a.symmetry("even", 1)


# -- moments under a standard normal input ---------------------------------------------------------
#
# E[f(Z)] and E[f(Z)^2] for Z ~ N(0, 1), piece by piece. A piece whose integrand is a sum of terms
# c z^n exp(q z^2 + k z) (q < 1/2: polynomials, exponentials, Gaussians, and their squares) is
# integrated exactly by the moment recurrence of the normal density below: a fixed number of
# operations per term, no search. Any other piece (sigmoid, tanh, erf, ...) is integrated
# numerically by mpmath, and the value is labelled as numerical. Either way the work depends on the
# expression alone, never on a clock.

_PHI = lambda x: sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)  # noqa: E731 - the standard normal density


def _Phi(x):
    if x is OO:
        return sp.Integer(1)
    if x is NOO:
        return sp.Integer(0)
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def _normal_moments(n, lo, hi):
    """[M_0, ..., M_n] with M_j = integral of u^j phi(u) over (lo, hi): M_0 = Phi(hi) - Phi(lo),
    M_1 = phi(lo) - phi(hi), M_j = lo^(j-1) phi(lo) - hi^(j-1) phi(hi) + (j - 1) M_(j-2)."""
    def edge(x, j):  # x^j phi(x), 0 at ±oo
        return sp.Integer(0) if x.is_infinite else x**j * _PHI(x)

    m = [_Phi(hi) - _Phi(lo)]
    if n >= 1:
        m.append(edge(lo, 0) - edge(hi, 0))
    for j in range(2, n + 1):
        m.append(edge(lo, j - 1) - edge(hi, j - 1) + (j - 1) * m[j - 2])
    return m


MAX_MOMENT_TERMS = 64  # terms of an expanded integrand the exact integrator accepts
MAX_MOMENT_DEGREE = 12


def _gaussian_terms(g):
    """[(c, n, q, k)] with g = sum c z^n exp(q z^2 + k z), or None when g is not of that form."""
    g = sp.expand(sp.powsimp(sp.expand(elementary(g)), combine="exp"))
    terms = sp.Add.make_args(g)
    if len(terms) > MAX_MOMENT_TERMS:
        return None
    out = []
    for term in terms:
        if not term.has(Z):
            out.append((term, 0, sp.Integer(0), sp.Integer(0)))
            continue
        c, rest = term.as_independent(Z, as_Add=False)
        n, arg = 0, sp.Integer(0)
        for f in sp.Mul.make_args(rest):
            base, e = f.as_base_exp()
            if base == Z and e.is_Integer and e >= 0:
                n += int(e)
            elif isinstance(f, sp.exp) or (isinstance(base, sp.exp) and e.is_number):
                arg += f.args[0] if isinstance(f, sp.exp) else base.args[0] * e
            elif f == 1:
                continue
            else:
                return None
        if arg.has(Z) and not arg.is_polynomial(Z):
            return None
        poly = sp.Poly(sp.expand(arg), Z) if arg.has(Z) else None
        if poly is not None and (poly.degree() > 2 or not all(co.is_number for co in poly.all_coeffs())):
            return None
        coeffs = dict(zip(range(poly.degree(), -1, -1), poly.all_coeffs())) if poly is not None else {0: arg}
        q, k, c0 = coeffs.get(2, 0), coeffs.get(1, 0), coeffs.get(0, 0)
        if n > MAX_MOMENT_DEGREE or _sign(sp.Rational(1, 2) - q) != 1:
            return None
        out.append((c * sp.exp(c0), n, sp.sympify(q), sp.sympify(k)))
    return out


def _exact_gaussian_integral(terms, lo, hi):
    """Integral of sum c z^n exp(q z^2 + k z) phi(z) over (lo, hi), in closed form: with s = sqrt(1 - 2q)
    and u = s z, exp(q z^2 + k z) phi(z) = exp(k^2/(2 s^2)) phi(u - k/s) / s, and the shifted powers
    are binomial sums of the moments M_j."""
    total = sp.Integer(0)
    for c, n, q, k in terms:
        s = sp.sqrt(1 - 2 * q)
        shift = k / s
        a = lo if lo.is_infinite else s * lo - shift
        b = hi if hi.is_infinite else s * hi - shift
        m = _normal_moments(n, a, b)
        # z^n = ((v + shift)/s)^n with v = u - shift
        inner = sum(sp.binomial(n, j) * shift ** (n - j) * m[j] for j in range(n + 1))
        total += c * sp.exp(k**2 / (2 * s**2)) * inner / s ** (n + 1)
    return total


MOMENT_DIGITS = 30  # working precision of the numerical quadrature
MOMENT_TOLERANCE = 1e-15  # relative (absolute below 1) agreement the two quadratures must reach


# functions whose mpmath value at x needs a constant (pi; log 2 for the exponentials) to as many
# bits as x has before its binary point
_GUARDED = ("sin", "cos", "tan", "sec", "csc", "cot", "exp", "sinh", "cosh")
HUGE_MAG = 4096  # arguments beyond 2**4096 are refused (no float is above 2**1024)


def _magnitude_guard(name):
    """mpmath's ``name`` refusing an argument beyond 2**HUGE_MAG with an OverflowError: its
    reduction modulo pi (log 2 for the exponentials) needs that constant to as many bits as the
    argument has before its binary point, which took 480 s of a cos(sinh(z**2)) build at the
    quadrature's far nodes (profiled: mpmath's binary splitting for pi), and then a RecursionError;
    log(1 + exp(sqrt(1 + exp(3 - z)))) there asks for exp of e**(5e39), which ran past any budget.
    A bound on the work, not a clock (exp(2**4096) takes a millisecond)."""
    import mpmath

    base = getattr(mpmath, name)

    def guarded(x):
        if mpmath.isfinite(x) and x != 0 and mpmath.mag(x) > HUGE_MAG:
            raise OverflowError(f"{name} of a number beyond 2**{HUGE_MAG}")
        return base(x)

    return guarded


def _numerical_gaussian_integral(g, lo, hi):
    """(value, error bound) of the integral of g phi over (lo, hi) by mpmath's tanh-sinh quadrature,
    at two working precisions and degrees; the bound is the larger of the difference and the
    error estimates."""
    import mpmath

    fn = sp.lambdify(Z, elementary(g), modules=[{name: _magnitude_guard(name) for name in _GUARDED}, "mpmath"])
    results = []
    for extra in (0, 15):
        with mpmath.workdps(MOMENT_DIGITS + extra):
            def f(x):
                return fn(x) * mpmath.npdf(x)

            ends = [mpmath.mpf(float(v)) if v.is_finite else (mpmath.inf if v is OO else -mpmath.inf) for v in (lo, hi)]
            try:
                value, err = mpmath.quad(f, ends, error=True, maxdegree=8 + extra // 5)
            except (MemoryError, OverflowError) as exc:
                # tanh(cosh(z) - z) at the far quadrature nodes (|z| ~ 1e20): cosh's exponent alone
                # needs more memory than there is, and cos(sinh(z**2)) there needs pi to more bits
                # than sinh(z**2) has digits (_magnitude_guard); the moment is then not answered
                raise Undecided(f"the integrand {_short(g)} φ cannot be evaluated at the quadrature's far nodes over "
                                f"({_show(lo)}, {_show(hi)}) ({type(exc).__name__})") from None
            results.append((value, err))
    (v1, e1), (v2, e2) = results
    bound = max(abs(v1 - v2), e1, e2)
    if not bound <= MOMENT_TOLERANCE * max(1, abs(v2)):
        raise Undecided(f"the numerical quadrature of {_short(g)} φ over ({_show(lo)}, {_show(hi)}) did not converge (error estimate {float(bound):.2g})")
    return v2, bound


@dataclasses.dataclass(frozen=True)
class Moment:
    """A Gaussian expectation: exact (a SymPy expression) or numerical (a value and an error bound)."""

    exact: object  # sp.Expr or None
    value: float
    error: float = 0.0

    def text(self):
        if self.exact is not None:
            text = sp.sstr(self.exact)
            decimal = f"{self.value:.6g}"
            return text if len(text) <= 24 and self.exact.is_Rational else (f"{text} ≈ {decimal}" if len(text) <= 24 else f"≈{decimal}")
        return f"≈{self.value:.6g} (numerical)"


MAX_SIMPLIFY_OPS = 80  # exact moments are simplified only below this size (a fixed bound, not a clock)


def _tidy(v):
    if sp.count_ops(v) <= MAX_SIMPLIFY_OPS:
        v = sp.simplify(v)
    return v


def _moment(a: Analysis, power):
    """E[f(Z)^power] as a Moment, with how it was computed."""
    p = a.pieces
    exact, value, error, numerical = sp.Integer(0), 0.0, 0.0, []
    for i, g in enumerate(p.exprs):
        lo, hi = p.interval(i)
        terms = _gaussian_terms(g**power)
        if terms is not None:
            part = _exact_gaussian_integral(terms, lo, hi)
            if exact is not None:
                exact += part
            value += float(elementary(part).evalf(20))
        else:
            v, e = _numerical_gaussian_integral(g**power, lo, hi)
            exact = None
            value += float(v)
            error += float(e)
            numerical.append(f"({_show(lo)}, {_show(hi)})")
    if exact is not None:
        exact = _tidy(exact)
        value = float(elementary(exact).evalf(20))
        return Moment(exact, value), f"exact, {_short(exact)}: each piece's integrand is a sum of c zⁿ exp(q z² + k z), integrated by the moment recurrence of the normal density"
    how = (f"numerical: mpmath tanh-sinh quadrature at {MOMENT_DIGITS} and {MOMENT_DIGITS + 15} digits on "
           f"{', '.join(numerical)}, agreeing within {max(error, 1e-30):.1g}; the other pieces exact")
    if len(numerical) == len(p.exprs):
        how = f"numerical: mpmath tanh-sinh quadrature at {MOMENT_DIGITS} and {MOMENT_DIGITS + 15} digits, agreeing within {max(error, 1e-30):.1g} (no closed form of this kind)"
    return Moment(None, value, error), how


def prop_mean(a: Analysis):
    partial = _normal_outside(a, "mean")
    if partial is not None:
        return partial
    try:
        odd = a.symmetry("odd", -1).value is True
    except Undecided:
        odd = False  # the moment decides
    if odd:
        return Property("mean", Moment(sp.Integer(0), 0.0), "E[f(Z)] for a standard normal Z; exact, 0: f is odd (proved) and Z is symmetric" + a.note)
    m, how = a.moment(1)
    return Property("mean", m, f"E[f(Z)] for a standard normal Z; {how}" + a.note)


def prop_second_moment(a: Analysis):
    partial = _normal_outside(a, "second_moment")
    if partial is not None:
        return partial
    m, how = a.moment(2)
    return Property("second_moment", m, f"E[f(Z)²] for a standard normal Z; {how}" + a.note)


# torch.nn.init.calculate_gain for the nonlinearity of the same name (PyTorch's documented values;
# compared with PyTorch itself in tests/test_torch.py). leaky_relu's depends on its slope.
TORCH_GAINS = {
    "linear": lambda ps: sp.Integer(1), "identity": lambda ps: sp.Integer(1), "sigmoid": lambda ps: sp.Integer(1),
    "tanh": lambda ps: sp.Rational(5, 3), "relu": lambda ps: sp.sqrt(2), "selu": lambda ps: sp.Rational(3, 4),
    "leaky_relu": lambda ps: sp.sqrt(2 / (1 + ps.get("alpha", sp.Rational(1, 100)) ** 2)),
}


@dataclasses.dataclass(frozen=True)
class Gain:
    moment: Moment  # 1/sqrt(E f^2)
    torch: object = None  # PyTorch's calculate_gain, where it has one

    def text(self):
        own = self.moment.text()
        if self.torch is None:
            return own
        return f"{own}; PyTorch: {sp.sstr(self.torch)}" + ("" if len(sp.sstr(self.torch)) < 6 else f" ≈ {float(self.torch):.6g}")


def prop_gain(a: Analysis):
    partial = _normal_outside(a, "gain")
    if partial is not None:
        return partial
    m, how = a.moment(2)
    if m.value <= 0:
        raise Undecided("E[f(Z)²] is 0: no gain preserves the variance")
    if m.exact is not None:
        g = _tidy(1 / sp.sqrt(m.exact))
        gain = Moment(g, float(elementary(g).evalf(20)))
    else:
        gain = Moment(None, m.value ** -0.5, m.error / (2 * m.value ** 1.5))
    torch = TORCH_GAINS.get(a.name, lambda ps: None)({p.name: p.default for p in a.params})
    reason = (f"1/sqrt(E[f(Z)²]), the weight scale that keeps E[x²] across a layer with unit-variance inputs ({how})")
    if torch is not None:
        same = abs(float(torch) - gain.value) <= 1e-12 * gain.value
        reason += (f"; torch.nn.init.calculate_gain gives {sp.sstr(torch)}"
                   + (", the same" if same else ", a different convention (PyTorch's values are chosen per function and are not all this second-moment gain: "
                      "tanh's 5/3 and sigmoid's 1 are heuristics, selu's 3/4 trades variance for self-normalisation)"))
    return Property("gain", Gain(gain, torch), reason + a.note)


def _decimal_digits(f):
    """The fewest significant digits among f's decimal constants (Floats, or rationals over a power
    of ten beyond 10^9, as the spec's long decimals are read), or None when f has none."""
    digits = [c._prec * 0.30103 for c in f.atoms(sp.Float)]
    for r in f.atoms(sp.Rational):
        q = int(r.q)
        if q >= 10**10 and 10 ** (len(str(q)) - 1) == q:
            digits.append(len(str(abs(int(r.p)))))
    return min(digits) if digits else None


def prop_zero_centred(a: Analysis):
    """E[f(Z)] = 0 (what 'zero-centred' means in the literature), not f(0) = 0."""
    partial = _normal_outside(a, "zero_centred")
    if partial is not None:
        return partial
    m, how = a.moment(1)
    decimals = _decimal_digits(a.f)
    if m.exact is not None and decimals is not None:
        # decimal constants (SELU's 32 digits): the mean is exact in them, so zero only to their precision
        digits = decimals
        if abs(m.value) < 10 ** -(digits - 2):
            return Property("zero_centred", True, f"E[f(Z)] = {m.value:.3g}, zero to the {digits:.0f} digits of the decimal constants in f ({how})" + a.note)
        return Property("zero_centred", False, f"E[f(Z)] = {m.text()} for a standard normal Z ({how})" + a.note)
    if m.exact is not None:
        s = _sign(m.exact)
        if s is None:
            raise Undecided(f"SymPy could not decide the sign of E[f(Z)] = {_short(m.exact)}")
        return Property("zero_centred", s == 0, f"E[f(Z)] = {m.text()} for a standard normal Z ({how})" + a.note)
    odd = a.symmetry("odd", -1)
    if odd.value is True:
        return Property("zero_centred", True, "f is odd, so E[f(Z)] = 0 for the symmetric standard normal Z" + a.note)
    if abs(m.value) > 2 * m.error:
        return Property("zero_centred", False, f"E[f(Z)] = {m.text()} ≠ 0, beyond the quadrature's error bound {max(m.error, 1e-30):.1g}" + a.note)
    raise Undecided(f"E[f(Z)] = {m.text()} is within the quadrature's error bound of 0")


def prop_derivative_range(a: Analysis):
    """The range of f′ (its supremum |f′| bounds how much a layer can amplify a gradient)."""
    d = a.fprime
    if d is None:
        raise Undecided("no derivative")
    r = output_range(d, None, a.params, a.domain.interior if not a.whole_line else a.domain)
    if not r.known:
        raise Undecided(r.reason)
    where = "" if a.whole_line else f" on the interior of the domain {_domain_text(a.domain)}"
    return Property("derivative_range", r.value, f"the range of f′{where} (at kinks the branch value of the generated code), " + r.reason)


def prop_convexity(a: Analysis):
    """Convex exactly when f is continuous and f′ is non-decreasing (its jumps at kinks included)."""
    order, where = a.continuity()
    if order is not None and order < 0:
        return Property("convexity", "neither", f"f is discontinuous ({where})" + a.note)
    mono, reason = _monotonicity(a, 1)
    value = {"increasing": "strictly convex", "non-decreasing": "convex", "decreasing": "strictly concave",
             "non-increasing": "concave", "constant": "affine (convex and concave)"}.get(mono, "neither")
    return Property("convexity", value, "f is continuous and f′ " + (f"is {mono}" if mono else "is not monotone") + ": " + reason + a.note)


_PROPERTIES = {
    "range": prop_range,
    "bounded_below": lambda a: _bounded(a, -1),
    "bounded_above": lambda a: _bounded(a, 1),
    "monotonic": prop_monotonic,
    "derivative_monotonic": prop_derivative_monotonic,
    "derivative_range": prop_derivative_range,
    "convexity": prop_convexity,
    "zero_at_origin": prop_zero_at_origin,
    "zero_centred": prop_zero_centred,
    "mean": prop_mean,
    "second_moment": prop_second_moment,
    "gain": prop_gain,
    "saturating": prop_saturating,
    "continuity": prop_continuity,
    "identity_near_origin": prop_identity_near_origin,
    "odd": prop_odd,
    "even": prop_even,
}


# cheap properties first (the order does not change any value: no property depends on a clock)
COST_ORDER = ("zero_at_origin", "odd", "even", "continuity", "identity_near_origin", "bounded_below", "bounded_above",
              "saturating", "monotonic", "range", "derivative_monotonic", "convexity", "derivative_range",
              "mean", "second_moment", "gain", "zero_centred")


# the properties that are also derived with the parameters kept as symbols (Property.general)
GENERAL_NAMES = ("range", "bounded_below", "bounded_above", "monotonic", "derivative_monotonic", "convexity",
                 "zero_at_origin", "saturating", "continuity", "identity_near_origin", "odd", "even")


def _parameters_text(params):
    """'alpha > 0, real beta': what the parameters' assumptions allow (a positive default makes a
    parameter positive, as in the derivation)."""
    return ", ".join(f"{p.name} > 0" if p.symbol.is_positive else f"real {p.name}" for p in params)


def _same_at_defaults(general, default, params):
    """Whether the general value, its parameters at their defaults, is the default analysis's."""
    at = {p.symbol: p.default for p in params}
    if isinstance(general, Range) and isinstance(default, Range):
        return (general.low_closed, general.high_closed) == (default.low_closed, default.high_closed) and all(
            _cmp(g.xreplace(at), d) == 0 for g, d in ((general.low, default.low), (general.high, default.high)))
    return general == default


def _general_continuity(a: Analysis, cond, defaults):
    """(text, reason, value at the defaults): smoothness for every parameter value, the generic order and the order at
    each parameter value where the branches at a kink agree further (elu: C^0 for alpha > 0 other
    than 1; C^1 at alpha = 1)."""
    exceptions = []
    order, where = a.continuity_except(exceptions)
    reason = prop_continuity(a).reason if not exceptions else where
    if not exceptions:
        return f"{_order_text(order)} for every {cond}", reason, _order_text(order)
    special, values, at_defaults = [], sorted(set(exceptions), key=lambda e: (e[0].name, float(e[1]))), _order_text(order)
    for sym, v in values:
        b = Analysis(a.f.xreplace({sym: v}), (), a.name, None, a.domain)
        text = _order_text(b.continuity()[0])
        special.append(f"{text} at {sym.name} = {sp.sstr(v)}")
        if defaults.get(sym) == v:
            at_defaults = text
    other = " other than " + ", ".join(sp.sstr(v) for _, v in values)
    return (f"{_order_text(order)} for every {cond}{other}; " + "; ".join(special),
            f"{where} unless the parameter solves the equation that makes them agree (solved by solveset, whose solution set is complete); "
            "at those values the analysis is repeated", at_defaults)


def _order_text(order):
    return "C^inf" if order is None else "discontinuous" if order < 0 else f"C^{order}"


# the analysis with the parameters as symbols is tried on expressions of at most this many
# operations (the bundled ones have at most 7; a bound on the work, not a clock)
GENERAL_OPS = 40

# the parameter expressions whose sign _sign could not decide, while general_properties listens
_UNDECIDED_SIGNS = None


def _regions(e):
    """For an expression e in one parameter p: [(description, substitution for p), ...] covering
    p's allowed values (p > 0 where it is positive, else the line) by the zeros c1 < ... < cn of
    e (solveset's complete finite set): each open interval between them as p = a + (b - a)/(1 + s)
    or a + s with s > 0 (a symbol), and each zero itself; None where e is not of that kind."""
    zeros = _parameter_zeros(e)
    if not zeros:
        return None
    (sym,) = e.free_symbols
    s = sp.Symbol("s", positive=True)
    values = sorted({v for _, v in zeros}, key=float)
    lo = sp.Integer(0) if sym.is_positive else NOO
    bounds = [lo] + values + [OO]
    out = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        if a is NOO:
            sub, text = b - s, f"{sym.name} < {sp.sstr(b)}"
        elif b is OO:
            sub, text = a + s, f"{sym.name} > {sp.sstr(a)}"
        else:
            sub, text = a + (b - a) / (1 + s), f"{sp.sstr(a)} < {sym.name} < {sp.sstr(b)}"
        out.append((text, {sym: sub}))
        if k < len(values):
            out.append((f"{sym.name} = {sp.sstr(b)}", {sym: b}))
    return out


def _listening(fn):
    """(fn(), the parameter expressions whose sign _sign left undecided while it ran)."""
    global _UNDECIDED_SIGNS
    _UNDECIDED_SIGNS = []
    try:
        return fn(), list(_UNDECIDED_SIGNS)
    finally:
        _UNDECIDED_SIGNS = None


def _split_on_a_parameter(a: Analysis, n, d, params, pending):
    """(text, reason) of property n, undecided with the parameters as symbols, decided region by
    region: the sign SymPy could not decide is an expression in one parameter; between its zeros
    the parameter is written as a positive symbol mapped onto the region (a proof for the whole
    region), and at each zero the analysis is repeated. None where any region stays undecided or
    the value at the defaults disagrees with the default analysis."""
    if not pending:
        return None
    regions = _regions(pending[0])
    if regions is None:
        return None
    defaults = {p.symbol: p.default for p in params}
    parts, at_defaults = [], None
    for text, sub in regions:
        try:
            with _effort("analysis", a.f):
                b = Analysis(a.f.xreplace(sub), (), a.name, None, a.domain)
        except (Undecided, *_ERRORS):
            return None
        h = _undecided(n, _PROPERTIES[n])(b)
        if not h.known:
            return None
        ((sym, value),) = sub.items()
        here = _cmp(defaults[sym], value) == 0 if value.is_number else _in_region(defaults[sym], text, sym)
        if here:
            at_defaults = h.value
        if parts and parts[-1][1] == h.text():
            parts[-1] = (parts[-1][0] + [text], h.text())
        else:
            parts.append(([text], h.text()))
    if at_defaults is None or not _same_at_defaults(at_defaults, d.value, params):
        return None
    shown = "; ".join(f"{value} for {' or '.join(texts)}" for texts, value in parts)
    return shown, (f"undecided for every value at once (the sign of {sp.sstr(pending[0])}); decided on each side of its zeros, "
                   "with the parameter written as a positive symbol mapped onto the region, and at each zero")


def _in_region(value, text, sym):
    """Whether the number ``value`` satisfies the region ``text`` written by _regions."""
    name = sym.name
    if text.startswith(f"{name} < "):
        return _cmp(value, sp.sympify(text.split(" < ")[1])) == -1
    if text.startswith(f"{name} > "):
        return _cmp(value, sp.sympify(text.split(" > ")[1])) == 1
    if " < " in text:
        a, _, b = text.split(" < ")
        return _cmp(value, sp.sympify(a)) == 1 and _cmp(value, sp.sympify(b)) == -1
    return False


def general_properties(f, params, name, domain, defaults):
    """{name: text}: each property of :data:`GENERAL_NAMES` derived with the parameters as symbols
    (positive where the default is, else real), where SymPy decides it and it agrees with the
    default analysis at the defaults; the text says for which values it holds."""
    if sp.count_ops(f) > GENERAL_OPS:
        return {}  # SymPy's limits and solvers with symbols cost much more than with numbers
    try:
        with _effort("analysis", f):
            a = Analysis(f, (), name, None, domain)
    except (Undecided, *_ERRORS):
        return {}
    cond = _parameters_text(params)
    out = {}
    for n in GENERAL_NAMES:
        d = defaults.get(n)
        if d is None or not d.known:
            continue
        if n == "continuity":
            try:
                text, reason, at_defaults = _general_continuity(a, cond, {p.symbol: p.default for p in params})
            except (Undecided, TooLarge, *_ERRORS):
                continue
            if at_defaults == d.value:
                out[n] = (text, reason)
            continue
        if n == "identity_near_origin":
            found = _general_identity(a, cond, {p.symbol: p.default for p in params})
            if found is not None and found[2] == d.value:
                out[n] = found[:2]
            continue
        g, pending = _listening(lambda: _undecided(n, _PROPERTIES[n])(a))
        if not g.known:
            split = _split_on_a_parameter(a, n, d, params, pending)
            if split is not None:
                out[n] = split
            continue
        if not _same_at_defaults(g.value, d.value, params):
            continue
        out[n] = (f"{g.text()} for every {cond}", g.reason)
    return out


def _general_identity(a: Analysis, cond, defaults):
    """(text, reason, value at the defaults) of 'identity near 0' for every parameter value, or
    None: generically, and at the parameter values where f′(0) = 1 (elu: at alpha = 1 only)."""
    exceptions = []
    try:
        g = prop_identity_near_origin(a, exceptions)
    except (Undecided, TooLarge, *_ERRORS):
        return None
    if not exceptions:
        return f"{g.text()} for every {cond}", g.reason, g.value
    values = sorted(set(exceptions), key=lambda e: (e[0].name, float(e[1])))
    special, at_defaults = [], g.value
    for sym, v in values:
        try:
            h = prop_identity_near_origin(Analysis(a.f.xreplace({sym: v}), (), a.name, None, a.domain))
        except (Undecided, TooLarge, *_ERRORS):
            return None
        special.append(f"{h.text()} at {sym.name} = {sp.sstr(v)}")
        if defaults.get(sym) == v:
            at_defaults = h.value
    other = " other than " + ", ".join(sp.sstr(v) for _, v in values)
    return (f"{g.text()} for every {cond}{other}; " + "; ".join(special),
            "f′(0) = 1 is an equation in the parameter, solved by solveset (its solution set is complete); at its solutions the analysis is repeated",
            at_defaults)


def derive_properties(act: M.Activation, derivations=None) -> tuple[Property, ...]:
    """Every property of an activation, in the order of :data:`NAMES` (vector functions:
    :data:`VECTOR_NAMES`). ``derivations`` (from :mod:`actgen.derive`) supplies f in stable
    primitives; without it the spec expression is used."""
    if act.split:
        return ()  # a function of two halves: the properties below are of functions of one input
    if act.reduces:
        return reduction_properties(act)
    if act.vector:
        return vector_properties(act)
    f = derivations[0].expr if derivations else act.expr
    grads = [d.expr for d in derivations or () if d.kind == "grad"]
    fprime = grads[0] if grads else sp.diff(act.expr, Z)
    try:
        with _effort("analysis", f):
            a = Analysis(f, act.params, act.name, fprime, M.domain_interval(act.domain))
    except (Undecided, *_ERRORS) as exc:
        why = str(exc) if isinstance(exc, (Undecided, TooLarge)) else f"SymPy failed to split f at its kinks ({type(exc).__name__})"
        return tuple(Property(n, None, why) for n in NAMES)
    done = {}
    for n in COST_ORDER:
        done[n] = _undecided(n, _PROPERTIES[n])(a)
    if act.params:
        for n, (text, reason) in general_properties(f, act.params, act.name, a.domain, done).items():
            done[n] = dataclasses.replace(done[n], general=text, general_reason=reason)
    return tuple(done[n] for n in NAMES)


def output_range(f, fprime=None, params=(), domain=sp.S.Reals) -> Property:
    """The range of f over ``domain`` (the reals; ``fprime`` is accepted for compatibility and not
    needed)."""
    try:
        a = Analysis(f, params, domain=domain)
    except (Undecided, *_ERRORS) as exc:
        return Property("range", None, str(exc))
    return _undecided("range", prop_range)(a)


# -- vector (class-axis) functions -----------------------------------------------------------------


def reduction_properties(act: M.Activation) -> tuple[Property, ...]:
    """Range and 'sums to 1' of a row reduction f(z_1, ..., z_K) (one value per row).

    On the diagonal z = (t, ..., t) every sum over the classes becomes K times its term at t, so
    f is an elementwise function of t with K a positive integer; the diagonal is a subset of the
    rows, so f's range contains the diagonal's. Where that is the whole real line it is f's range;
    otherwise the range is left unknown (the diagonal gives only a lower bound on it)."""
    f = _with_defaults(act.expr, act.params)
    diagonal = f.replace(lambda e: isinstance(e, sp.Indexed) and e.base == M.ZV, lambda e: Z).doit()
    rng = Property("range", None, "a row reduction: the range over its diagonal z = (t, ..., t) was not decided")
    if not diagonal.has(sp.Sum) and diagonal.free_symbols <= {Z, M.K}:
        try:
            with _effort("analysis", diagonal):
                r = output_range(diagonal, None, ())
            if r.known and r.value.low == -sp.oo and r.value.high == sp.oo:
                on_diagonal = sp.sstr(diagonal.xreplace({Z: sp.Symbol("t", real=True)}))
                rng = Property("range", r.value, f"every real number: on the diagonal z = (t, ..., t), f = {on_diagonal} takes them all, for every K")
            elif r.known:
                rng = Property("range", None, f"contains {r.value.text()} (f on the diagonal z = (t, ..., t)); the other rows were not analysed")
        except (Undecided, *_ERRORS):
            pass
    return (rng, Property("sums_to_one", False, "a row reduction gives one value per row, not a distribution over the classes"))


def vector_properties(act: M.Activation) -> tuple[Property, ...]:
    """Component range and 'sums to 1' for a K-vector function f_i(z).

    Writing S = Sum(exp(z_j), j) as exp(z_i) + s, where s > 0 is the sum over the other K - 1 >= 1
    classes and can take any positive value, f_i becomes a function of t = z_i and s; its range
    over t is derived as for an elementwise function and must not depend on s."""
    f = _with_defaults(act.expr, act.params)
    sums = list(f.atoms(sp.Sum))
    note = " (for K ≥ 2 classes)"
    rng = Property("range", None, "the component is not a function of z_i and one Sum(T(z_j), (j, 1, K)) whose term T takes every positive value")
    if len(sums) == 1 and len(sums[0].limits) == 1:
        total = sums[0]
        j = total.limits[0][0]
        term = total.function.xreplace({M.ZV[j]: Z})
        # the other K - 1 >= 1 classes contribute s = the sum of T over them, any positive number
        # when T takes every positive value (exp(z), exp(-z), exp(z / T), ...): proved as T's range
        onto_positive = False
        if term.free_symbols <= {Z} and term.has(Z):
            try:
                with _effort("analysis", term):
                    t_range = output_range(term, None, ())
                onto_positive = t_range.known and t_range.value.low == 0 and t_range.value.high is OO and not t_range.value.low_closed
            except (Undecided, *_ERRORS):
                onto_positive = False
        if onto_positive:
            s = sp.Symbol("s", positive=True)
            g = f.xreplace({total: term + s}).xreplace({M.ZV[M.I]: Z})
            shown = sp.sstr(term.xreplace({Z: M.ZV[j]}))
            if g.free_symbols <= {Z, s}:
                try:
                    with _effort("analysis", g):
                        r = output_range(g, None, ())
                        if r.known and not r.value.low.has(s) and not r.value.high.has(s):
                            rng = Property("range", r.value, f"component i with the sum of {shown} over the classes = {sp.sstr(term.xreplace({Z: M.ZV[M.I]}))} + s, "
                                           f"s > 0 the other classes (any positive number: the term's range is (0, ∞)); " + r.reason + " (the same for every s > 0)" + note)
                        elif r.known:
                            rng = Property("range", None, "the range over z_i depends on the other classes" + note)
                        else:
                            rng = Property("range", None, r.reason + note)
                except _ERRORS:
                    rng = Property("range", None, "SymPy did not decide the component range (a step failed or exceeded its operation-count bound)")
    total = sp.Sum(f, (M.I, 1, M.K))
    s1 = Property("sums_to_one", None, "SymPy could not reduce Sum(f_i, (i, 1, K)) - 1 to 0")
    try:
        with _effort("simplify", f):
            done = total.doit()
            inner = [x for x in done.atoms(sp.Sum)]
            # the sums over i and over j are the same sum under another index
            canon = done.replace(lambda e: isinstance(e, sp.Sum) and len(e.limits) == 1,
                                 lambda e: sp.Sum(e.function.xreplace({e.limits[0][0]: M.L}), (M.L, *e.limits[0][1:])))
            diff = sp.simplify(canon - 1)
            if diff == 0:
                s1 = Property("sums_to_one", True, "Sum(f_i, (i, 1, K)) simplifies to 1")
            elif inner and _sign(diff.xreplace({M.K: 2}).doit().xreplace({M.ZV[1]: 0, M.ZV[2]: 0})) not in (0, None):
                s1 = Property("sums_to_one", False, "for K = 2 and z = (0, 0) the components do not sum to 1")
    except _ERRORS:
        pass
    return (rng, s1)


__all__ = ["NAMES", "Property", "Range", "TITLES", "derive_properties", "kinks", "output_range"]
