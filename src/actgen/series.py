"""Polynomials for sums that cancel near a zero at the origin (the ``cancellation_polynomial`` rule).

A sum e(x) = t_1(x) + ... + t_n(x) whose value vanishes at x = 0 to a higher order than its
largest term (z - tanh(z) ~ z**3/3 while its terms are ~z; 1 - cos(z) ~ z**2/2 while its terms
are ~1) loses a relative accuracy of about sum|t_i| / |e| wherever it is evaluated as a sum: all
of it at z = 1e-8. Written as e(x) = x**m h(x), with m the order of the zero, h is smooth and far
from 0 near the origin, and a polynomial evaluates it to the last bit.

:func:`fit` finds, from the expression alone:

* m and the orders of the terms, from SymPy's series at 0 (symbolic);
* the radius where the sum itself is accurate again (sum|t_i| <= ``AMPLIFICATION`` |e|, its
  rounding then at most a few ulps), scanned outward from 0 on each side with mpmath;
* h's parity, so that an even or odd e is fitted in w = x**2 (half the degree);
* the polynomial: a Chebyshev fit of h (``mpmath.chebyfit``) on the radius in a variable
  centred on the interval (its terms then decay: no cancellation in Horner's scheme), of the
  lowest degree whose error, measured against h on 478 points with the coefficients rounded to
  float64, is below ``TOLERANCE`` ulps of h (coefficients rounded to float64 alone cost about half
  an ulp).

That last measurement is numerical evidence, not a proof: the identity e = x**m h(x) and the order
m are symbolic facts, the polynomial is an approximation whose error is sampled at build time and
measured in ulps against mpmath by ``actgen accuracy``.
"""
from __future__ import annotations

import dataclasses
import functools

import mpmath
import sympy as sp

AMPLIFICATION = 4  # the sum is used where sum|t_i| <= 4 |e| (measured: within 2 ulp there)
TOLERANCE = 0.75  # largest error of the rounded polynomial against h, in ulps of h, sampled
MAX_DEGREE = 48
MAX_RADIUS = 64.0
PRECISION = 400  # bits for evaluating the sum near its zero (terms cancel to ~x**(m-k))
_SAMPLES = 400


@dataclasses.dataclass(frozen=True)
class Fit:
    """e(x) = x**order * p(s) for -left < x < right, with s = w - centre, w = x**2 when ``even``
    (h even) else w = x, and p(s) = sum_k coeffs[k] s**k."""

    order: int
    even: bool
    left: float
    right: float
    centre: float
    coeffs: tuple
    error: float  # the largest error of p against h on the samples, in ulps of h (evidence)


def _order(series, v):
    """The lowest power of ``v`` in a truncated series (a polynomial), or None if it is 0."""
    poly = sp.Poly(series, v)
    powers = [m[0] for m, c in zip(poly.monoms(), poly.coeffs()) if c != 0]
    return min(powers) if powers else None


def _series_orders(expr, terms, v, n=12):
    """(m, lead): the order of expr's zero at 0, above the lowest order among its terms, and its
    leading coefficient; None where a series is not a plain power series (a log or a fractional
    power), expr has no zero there or a term vanishes as fast."""
    try:
        whole = sp.series(expr, v, 0, n).removeO()
        if whole.has(sp.log, sp.Order) or not whole.is_polynomial(v):
            return None
        whole = sp.expand(whole)
        m = _order(whole, v)
        if m is None:
            return None  # zero to the order looked at: identically 0, or beyond it
        k = None
        for t in terms:
            s = sp.series(t, v, 0, m + 1).removeO()
            if s.has(sp.log, sp.Order) or not s.is_polynomial(v):
                return None
            o = _order(sp.expand(s), v)
            if o is not None:
                k = o if k is None else min(k, o)
    except (NotImplementedError, ValueError, TypeError, ZeroDivisionError, AttributeError, sp.PolynomialError):
        return None
    if k is None or m <= k:
        return None
    return m, whole.coeff(v, m)


def _mp(expr, v):
    return sp.lambdify(v, expr, modules="mpmath")


def _radius(f, terms, sign):
    """The smallest x = 2**(j/8) such that the sum is accurate (sum|t_i| <= AMPLIFICATION |e|)
    at sign*x and on to 2x; None when there is no such point below MAX_RADIUS."""
    with mpmath.workprec(PRECISION):
        def ok(x):
            xs = mpmath.mpf(sign) * x
            value = abs(f(xs))
            return value > 0 and sum(abs(t(xs)) for t in terms) <= AMPLIFICATION * value

        j = -48
        while 2.0 ** (j / 8) <= MAX_RADIUS:
            x = mpmath.mpf(2) ** (mpmath.mpf(j) / 8)
            if ok(x) and all(ok(x * mpmath.mpf(2) ** (mpmath.mpf(i) / 8)) for i in range(1, 9)):
                return float(x)
            j += 1
    return None


SHRINK_STEPS = 4  # halvings of the fit's interval tried before giving up (a bound on the work)


def _ulp(value):
    """The spacing of float64 numbers at |value| (a normal number)."""
    return mpmath.mpf(2) ** (int(mpmath.floor(mpmath.log(abs(value), 2))) - 52)


def _dyadic_up(x):
    """x rounded up to a multiple of 1/16 (so the interval ends are exact floats)."""
    return float(mpmath.ceil(mpmath.mpf(x) * 16) / 16)


def _chebyshev(g, lo, hi, degrees):
    """(centre, coeffs, worst) for the first degree whose Chebyshev fit of g on [lo, hi] (mpmath,
    in s = w - centre), with its coefficients rounded to float64, is within TOLERANCE ulps of g on
    478 sampled points (evidence); None if no degree is, or g vanishes or changes sign there."""
    centre = float((lo + hi) / 2)
    half = (hi - lo) / 2
    samples = [lo + (hi - lo) * mpmath.mpf(i) / (_SAMPLES - 1) for i in range(_SAMPLES)]
    # and close to the ends, where a fit is worst
    samples += [lo + half * mpmath.mpf(2) ** -i for i in range(1, 40)] + [hi - half * mpmath.mpf(2) ** -i for i in range(1, 40)]
    exact = [(s, g(s)) for s in samples]
    if any(value == 0 for _s, value in exact) or len({mpmath.sign(value) for _s, value in exact}) > 1:
        return None  # no relative fit
    for degree in degrees:
        poly = mpmath.chebyfit(lambda s: g(s + centre), [-half, half], degree + 1)
        if any(isinstance(c, mpmath.mpc) for c in poly):
            return None  # g left the reals inside the interval: no real polynomial to fit
        coeffs = tuple(float(c) for c in reversed(poly))
        rounded = [mpmath.mpf(c) for c in reversed(coeffs)]
        worst = max(abs(mpmath.polyval(rounded, s - centre) - value) / _ulp(value) for s, value in exact)
        if worst <= TOLERANCE:
            return centre, coeffs, float(worst)
    return None


@functools.lru_cache(maxsize=256)
def fit(expr, v, side=0):
    """The polynomial evaluation of ``expr`` (an Add in the one input ``v``) near 0, or None
    where its terms do not cancel there or no polynomial of degree <= MAX_DEGREE is accurate.
    ``side`` -1 or 1: ``v`` takes values of that sign only (a clamped branch; a one-sided fit)."""
    from .primitives import elementary
    from sympy.codegen import cfunctions

    expr_el = elementary(expr).replace(lambda e: isinstance(e, cfunctions.expm1), lambda e: sp.exp(e.args[0]) - 1)
    terms = [t for t in sp.Add.make_args(expr_el)]
    if len(terms) < 2:
        return None
    orders = _series_orders(expr_el, terms, v)
    if orders is None:
        return None
    m, lead = orders
    with mpmath.workprec(PRECISION):
        f = _mp(expr_el, v)
        ts = [_mp(t, v) for t in terms]
        h0 = mpmath.mpf(sp.Float(lead, 120))
        right = _radius(f, ts, 1) if side >= 0 else 0.0
        left = _radius(f, ts, -1) if side <= 0 else 0.0
        if right is None or left is None:
            return None
        probe = [mpmath.mpf(p) / 7 for p in (1, 2, 3, 5)]
        even = not side and all(abs(f(-x) - (-1) ** m * f(x)) <= abs(f(x)) * mpmath.mpf(2) ** -300 for x in probe)

        def h(x):
            return h0 if x == 0 else f(x) / x**m

        if even:
            left = right = _dyadic_up(max(left, right))
            g = lambda w: h(mpmath.sqrt(w) if w > 0 else mpmath.mpf(0))  # noqa: E731 (a node rounded below 0 is 0)
        else:
            left, right = _dyadic_up(left), _dyadic_up(right)
            g = h
        # where h changes sign on the interval (another zero of the sum, tanh(sin(t)) - t/(1 + t**2)
        # at t = 1.9) or no polynomial fits it, a smaller one: the zero at the origin is what the
        # fit is for (a zero elsewhere is an irrational crossing, which the term ulp measures)
        for _ in range(SHRINK_STEPS + 1):
            lo, hi = (mpmath.mpf(0), mpmath.mpf(right) ** 2) if even else (-mpmath.mpf(left), mpmath.mpf(right))
            found = _chebyshev(g, lo, hi, range(4, MAX_DEGREE + 1, 2))
            if found is not None:
                centre, coeffs, worst = found
                return Fit(m, even, left, right, centre, coeffs, worst)
            left, right = _dyadic_up(left / 2), _dyadic_up(right / 2)
    return None


def horner(coeffs, s):
    """sum_k coeffs[k] s**k as nested products and sums (SymPy keeps them nested)."""
    p = sp.Float(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        p = sp.Add(sp.Float(c), sp.Mul(s, p))
    return p


@functools.lru_cache(maxsize=8)
def odd_fit(name, radius):
    """(centre, coeffs) with f(x) = x p(x**2 - centre), p(s) = sum_k coeffs[k] s**k, for the odd
    mpmath function ``name`` ("tanh") on |x| <= radius: the same fit and the same sampled 0.75 ulp
    bound as :func:`fit` (evidence, not proof), for a runtime helper that a backend's own function
    does not evaluate accurately near 0."""
    f = getattr(mpmath, name)
    with mpmath.workprec(PRECISION):
        slope = mpmath.diff(f, 0)  # f(x)/x at x = 0

        def g(w):
            return slope if w == 0 else f(mpmath.sqrt(w)) / mpmath.sqrt(w)

        found = _chebyshev(g, mpmath.mpf(0), mpmath.mpf(radius) ** 2, range(2, MAX_DEGREE + 1))
        if found is not None:
            return found[:2]
    raise ValueError(f"no polynomial of degree <= {MAX_DEGREE} fits {name} on |x| <= {radius}")
