"""Numerically stable primitives as SymPy functions.

Each primitive is an ordinary function of analysis with a name, a derivative, a LaTeX form and a
rewrite back to elementary functions (used by proofs). Rules in :mod:`actgen.rules` recognise the
elementary forms and replace them by these; printers know how to evaluate each one stably.
Because each primitive carries its own derivative, differentiating a rewritten function yields a
derivative that is already written in stable primitives (softplus' = logistic, logistic' =
logistic(u) logistic(-u)).
"""
from __future__ import annotations

import dataclasses
import functools

import sympy as sp


def _latex_call(printer, name, arg, exp=None):
    """name(arg), raised to ``exp`` when SymPy's printer passes one."""
    body = r"%s\left(%s\right)" % (name, printer._print(arg))
    return body if exp is None else r"%s^{%s}" % (body, exp)


def _latex_exp(printer, t, exp=None):
    """e^{t}, raised to ``exp`` when given (the exponentials printed as exp: exp_dd, exp_damped)."""
    body = r"e^{%s}" % printer._print(t)
    return body if exp is None else r"\left(%s\right)^{%s}" % (body, exp)


def _latex_product(printer, factor, rest, exp=None):
    """factor * rest (rest already LaTeX), raised to ``exp`` when given."""
    body = r"%s %s" % (printer.parenthesize(factor, 50), rest)
    return body if exp is None else r"\left(%s\right)^{%s}" % (body, exp)


class logistic(sp.Function):  # noqa: N801 - SymPy function classes are lower-case by convention
    r"""The logistic sigmoid :math:`\sigma(u) = 1/(1 + e^{-u})`."""

    nargs = 1

    def fdiff(self, argindex=1):
        u = self.args[0]
        return logistic(u) * logistic(-u)

    @classmethod
    def eval(cls, u):
        if u.is_zero:
            return sp.Rational(1, 2)
        if u is sp.oo:
            return sp.Integer(1)
        if u is sp.S.NegativeInfinity:
            return sp.Integer(0)
        return None

    def _eval_rewrite_as_exp(self, u, **kwargs):
        return 1 / (1 + sp.exp(-u))

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None

    def _latex(self, printer, exp=None):
        return _latex_call(printer, r"\sigma", self.args[0], exp)


class softplus(sp.Function):  # noqa: N801
    r"""Softplus :math:`\log(1 + e^{u})`."""

    nargs = 1

    def fdiff(self, argindex=1):
        return logistic(self.args[0])

    @classmethod
    def eval(cls, u):
        if u.is_zero:
            return sp.log(2)
        return None

    def _eval_rewrite_as_exp(self, u, **kwargs):
        return sp.log(1 + sp.exp(u))

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None

    def _latex(self, printer, exp=None):
        return _latex_call(printer, r"\operatorname{softplus}", self.args[0], exp)


class normal_cdf(sp.Function):  # noqa: N801
    r"""The standard normal CDF :math:`\Phi(u) = (1 + \operatorname{erf}(u/\sqrt{2}))/2`.

    Evaluated without the cancellation of 1 + erf(u) for u << 0 (SciPy's ``ndtr``)."""

    nargs = 1

    def fdiff(self, argindex=1):
        u = self.args[0]
        return sp.exp(-u**2 / 2) / sp.sqrt(2 * sp.pi)

    @classmethod
    def eval(cls, u):
        if u.is_zero:
            return sp.Rational(1, 2)
        return None

    def _eval_rewrite_as_erf(self, u, **kwargs):
        return (1 + sp.erf(u / sp.sqrt(2))) / 2

    _eval_rewrite_as_elementary = _eval_rewrite_as_erf

    def _eval_is_real(self):
        return self.args[0].is_real

    def _latex(self, printer, exp=None):
        return _latex_call(printer, r"\Phi", self.args[0], exp)


class xlogy(sp.Function):  # noqa: N801
    r"""x log(y), continued by 0 where x = 0 (the limit that cross-entropy needs at y = 0)."""

    nargs = 2

    def fdiff(self, argindex=1):
        x, y = self.args
        return sp.log(y) if argindex == 1 else x / y

    def _eval_rewrite_as_exp(self, x, y, **kwargs):
        return x * sp.log(y)

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _latex(self, printer, exp=None):
        x, y = self.args
        return _latex_product(printer, x, r"\log\left(%s\right)" % printer._print(y), exp)


class xlog1py(sp.Function):  # noqa: N801
    r"""x log(1 + y), continued by 0 where x = 0 (SciPy's ``xlog1py``): cross-entropy's
    (1 - y) log(1 - y_hat) without rounding 1 - y_hat to 1 where y_hat is tiny."""

    nargs = 2

    def fdiff(self, argindex=1):
        x, y = self.args
        return sp.log(1 + y) if argindex == 1 else x / (1 + y)

    def _eval_rewrite_as_exp(self, x, y, **kwargs):
        return x * sp.log(1 + y)

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _latex(self, printer, exp=None):
        x, y = self.args
        return _latex_product(printer, x, r"\log\left(1 + %s\right)" % printer._print(y), exp)


class erfcx(sp.Function):  # noqa: N801
    r"""The scaled complementary error function :math:`e^{u^2}\operatorname{erfc}(u)` (SciPy's ``erfcx``)."""

    nargs = 1

    def fdiff(self, argindex=1):
        u = self.args[0]
        return 2 * u * erfcx(u) - 2 / sp.sqrt(sp.pi)

    def _eval_rewrite_as_erfc(self, u, **kwargs):
        return sp.exp(u**2) * sp.erfc(u)

    _eval_rewrite_as_elementary = _eval_rewrite_as_erfc


@dataclasses.dataclass(frozen=True)
class PolynomialTable:
    """A function as polynomials in h = x - node about evenly spaced nodes, for the generated
    runtime: on segment i, nodes start + (k + 1/2) step; ``coeffs[n][j]`` is the coefficient of
    h**n at node j, ``low`` the rounding error of the 0-th (so the value at a node is exact to
    ~1e-32)."""

    segments: tuple  # ((start, stop, step), ...), every number an exact float
    nodes: tuple
    coeffs: tuple  # (degree + 1) rows
    low: tuple


# erfcx on [0.25, 32): the steps keep every polynomial at degree 9 (ten coefficient rows, each
# one gather and one multiply-add per element in the runtimes); SciPy's, torch's or JAX's own erfcx
# outside, where it is accurate
ERFCX_SEGMENTS = ((0.25, 2.0, 1 / 16), (2.0, 8.0, 1 / 8), (8.0, 32.0, 1 / 2))
ERFCX_DEGREE = 9
TAYLOR_TERMS = 40  # the Taylor expansion economized at each node (its last term: below 2**-120 of the value)
FIT_ERROR = 2.0 ** -56  # largest sampled relative error of a node's rounded polynomial accepted


@functools.lru_cache(maxsize=4)
def erfcx_table(segments=ERFCX_SEGMENTS, degree=ERFCX_DEGREE) -> PolynomialTable:
    """The erfcx table the runtimes evaluate (computed once per actgen version: cached)."""
    from . import cache

    return cache.cached("erfcx_table", lambda: _erfcx_table(segments, degree), segments, degree)


def _erfcx_table(segments, degree, digits=40):
    """erfcx about each node, from its exact derivatives: y' = 2x y - 2/sqrt(pi) and
    y^(n+1) = 2x y^(n) + 2n y^(n-1) (n >= 1), at ``digits`` decimal digits with mpmath: the Taylor
    expansion to TAYLOR_TERMS terms (its remainder bounded by its last term on the half-step
    radius, checked), economized to ``degree`` by interpolation at the Chebyshev points of the
    radius, which spreads the error over the interval where truncating the Taylor series puts it
    at the ends: degree 9 where the Taylor polynomial needed 14 for the same 2**-58. Each node's
    polynomial, with its coefficients rounded to float64, is sampled against the Taylor expansion
    (evidence, not proof: FIT_ERROR). SciPy's erfcx is 3-5.5 ulp off on [0.3, 1.2] (measured
    against mpmath); the runtimes' is within about an ulp (tests/test_accuracy.py)."""
    import mpmath

    with mpmath.workdps(digits):
        two_over_sqrt_pi = 2 / mpmath.sqrt(mpmath.pi)
        points = [mpmath.cos(mpmath.pi * (k + mpmath.mpf(1) / 2) / (degree + 1)) for k in range(degree + 1)]
        vandermonde = mpmath.matrix([[p**n for n in range(degree + 1)] for p in points])
        nodes, rows, low = [], [], []
        for start, stop, step in segments:
            radius = mpmath.mpf(step) / 2
            for k in range(int(round((stop - start) / step))):
                x0 = mpmath.mpf(start) + (k + mpmath.mpf(1) / 2) * mpmath.mpf(step)
                y = [mpmath.exp(x0**2) * mpmath.erfc(x0)]
                y.append(2 * x0 * y[0] - two_over_sqrt_pi)
                for m in range(1, TAYLOR_TERMS):
                    y.append(2 * x0 * y[m] + 2 * m * y[m - 1])
                taylor = [y[n] / mpmath.factorial(n) * radius**n for n in range(TAYLOR_TERMS + 1)]  # in u = h / radius
                if abs(taylor[-1]) > abs(y[0]) * mpmath.mpf(2) ** -120:
                    raise ValueError(f"the Taylor expansion of erfcx about {x0} has not converged at the radius {radius}")
                values = mpmath.matrix([mpmath.polyval(taylor[::-1], p) for p in points])
                scaled = mpmath.lu_solve(vandermonde, values)
                c = [scaled[n] / radius**n for n in range(degree + 1)]  # in h
                rounded = [c[0]] + [mpmath.mpf(float(v)) for v in c[1:]]
                worst = max(abs(mpmath.polyval(rounded[::-1], u * radius) - mpmath.polyval(taylor[::-1], u)) / abs(y[0])
                            for u in mpmath.linspace(-1.01, 1.01, 41))
                if worst > FIT_ERROR:
                    raise ValueError(f"erfcx about {x0}: degree {degree} is {mpmath.nstr(worst, 3)} off; lower the step or raise the degree")
                nodes.append(float(x0))
                rows.append(c)
                low.append(float(c[0] - mpmath.mpf(float(c[0]))))
        coeffs = tuple(tuple(float(c[n]) for c in rows) for n in range(degree + 1))
    return PolynomialTable(tuple(segments), tuple(nodes), coeffs, tuple(low))


class exp_square(sp.Function):  # noqa: N801
    r"""exp(c u^2) for a constant c, evaluated with u^2 split exactly into two floats, so that the
    rounding of u^2 (relative error ~u^2 eps in exp) does not spoil the result."""

    nargs = 2

    def fdiff(self, argindex=1):
        u, c = self.args
        return 2 * c * u * exp_square(u, c)

    def _eval_rewrite_as_exp(self, u, c, **kwargs):
        return sp.exp(c * u**2)

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp


class _TimesExp(sp.Function):
    """u exp(t): the value, the rewrite and the LaTeX shared by the split products below (each
    evaluates it differently; a printer tells them apart by class)."""

    nargs = 2

    def _eval_rewrite_as_exp(self, u, t, **kwargs):
        return u * sp.exp(t)

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _latex(self, printer, exp=None):
        u, t = self.args
        return _latex_product(printer, u, r"e^{%s}" % printer._print(t), exp)


class mul_exp(_TimesExp):  # noqa: N801
    r"""u exp(t) for t <= 0, evaluated as (u exp(t/2)) exp(t/2) wherever exp(t) alone would be
    subnormal (and lose precision) while the product can be a normal number."""


class sign_select(sp.Function):  # noqa: N801
    r"""``a`` where t >= 0, ``b`` elsewhere: Piecewise((a, t >= 0), (b, True)) kept as one node, so
    that SymPy does not fold its powers and products into the branches (the printer chooses how
    the selection is computed)."""

    nargs = 3

    def _eval_rewrite_as_Piecewise(self, t, a, b, **kwargs):
        return sp.Piecewise((a, t >= 0), (b, True))

    _eval_rewrite_as_elementary = _eval_rewrite_as_Piecewise

    def _latex(self, printer, exp=None):
        t, a, b = self.args
        body = r"\begin{cases} %s & %s \geq 0 \\ %s & \text{otherwise} \end{cases}" % (printer._print(a), printer._print(t), printer._print(b))
        return r"\left(%s\right)^{%s}" % (body, printer._print(exp)) if exp is not None else body


class mul_exp_shared(sp.Function):  # noqa: N801
    r"""u exp(s) with s = a min(t, 0) + b max(t, 0) (integers a >= 0 >= b), given x = exp(s)
    computed from an exponential shared with other factors (rules.SHARED_EXPONENTIAL): evaluated as
    u x, and where exp(s) is subnormal, as (u exp(s/2)) exp(s/2) (as :class:`mul_exp`)."""

    nargs = 5

    def _eval_rewrite_as_exp(self, u, x, t, a, b, **kwargs):
        return u * sp.exp(a * sp.Min(t, 0) + b * sp.Max(t, 0))

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _latex(self, printer, exp=None):
        u, _x, t, a, b = self.args
        return _latex_product(printer, u, r"e^{%s}" % printer._print(a * sp.Min(t, 0) + b * sp.Max(t, 0)), exp)


class mul_exp_square(sp.Function):  # noqa: N801
    r"""u exp(c t^2) for a constant c < 0: :class:`exp_square` without a subnormal intermediate
    where exp(c t^2) alone is subnormal but the product is not (as :class:`mul_exp`)."""

    nargs = 3

    def _eval_rewrite_as_exp(self, u, t, c, **kwargs):
        return u * sp.exp(c * t**2)

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _latex(self, printer, exp=None):
        u, t, c = self.args
        return _latex_product(printer, u, r"e^{%s}" % printer._print(c * t**2), exp)


class _CircularDD(sp.Function):
    """sin or cos of t + a (t exact, a a shift) with the argument evaluated in double-double: t + a
    = high + low, and sin(high + low) = sin(high) cos(low) + cos(high) sin(low) (cos likewise),
    exact for every low. Rounding t + a to a float is an absolute error that sin and cos keep (|z|
    ulps of the result, and without bound next to their zeros); with the low part the value is
    within an ulp, next to the zeros too. A printer tells sin_dd and cos_dd apart by class."""

    nargs = 1
    _plain = None

    def _eval_rewrite_as_elementary(self, t, **kwargs):
        return self._plain(t)

    def _latex(self, printer, exp=None):
        return printer._print(self._plain(self.args[0]) if exp is None else self._plain(self.args[0]) ** exp)


class sin_dd(_CircularDD):  # noqa: N801
    _plain = sp.sin

    def _eval_rewrite_as_sin(self, t, **kwargs):
        return sp.sin(t)


class cos_dd(_CircularDD):  # noqa: N801
    _plain = sp.cos

    def _eval_rewrite_as_cos(self, t, **kwargs):
        return sp.cos(t)


class exp_dd(sp.Function):  # noqa: N801
    r"""exp(t) with t evaluated in double-double arithmetic (a float and its rounding error): exp
    multiplies the absolute error of its argument into its relative error, so an argument such as
    gelu_tanh's 2 sqrt(2/pi) (z + 0.044715 z**3), worth -600 at z = -20, must be exact to ~1e-16
    absolutely. Evaluated as exp(hi) (1 + lo)."""

    nargs = 1

    def _eval_rewrite_as_exp(self, t, **kwargs):
        return sp.exp(t)

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _latex(self, printer, exp=None):
        return _latex_exp(printer, self.args[0], exp)


class exp_damped(sp.Function):  # noqa: N801
    r"""exp(t) for t <= 0 that enters only a sum c + k exp(t) with numbers c >= k > 0 (the
    denominator 1 + exp(-|t|) of a stable logistic): evaluated as a plain exp, never in
    double-double, because the sum damps the rounding of t. A relative error d of t changes the
    sum by a relative k exp(t) |t| d / (c + k exp(t)) <= x exp(-x) / (1 + exp(-x)) |d| <= 0.279 |d|
    (x = |t|, largest at x = 1.28), where exp(t) alone would carry |t| d (rules.DAMPED_EXPONENT).
    Its own node (not a subclass of exp, which SymPy's products fold back into exp): printed as exp."""

    nargs = 1

    def _eval_rewrite_as_exp(self, t, **kwargs):
        return sp.exp(t)

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_positive(self):
        return self.args[0].is_real  # a finite real t (exp(-oo) = 0)

    def _eval_is_finite(self):
        return True if self.args[0].is_extended_nonpositive else None

    def _latex(self, printer, exp=None):
        return _latex_exp(printer, self.args[0], exp)


class mul_exp_dd(_TimesExp):  # noqa: N801
    r"""u exp(t) for t <= 0 (as :class:`mul_exp`) with t evaluated in double-double arithmetic (as
    :class:`exp_dd`)."""


class axis_sum(sp.Function):  # noqa: N801
    """Sum of an array expression over the class axis (keeping that axis with length 1)."""

    nargs = 1


class class_count(sp.Function):  # noqa: N801
    """K, the number of classes, outside any sum (a mean over the classes): the length of the class
    axis of its argument, an array of the function. A count, not a function of the array's values,
    so it has no free symbols: printers and the common-subexpression pass treat it as a scalar
    (NumPy then never runs the body block by block on flattened arrays, which would lose the axis)."""

    nargs = 1
    is_integer = True
    is_positive = True

    @property
    def free_symbols(self):
        return set()


class axis_max(sp.Function):  # noqa: N801
    """Maximum of an array over the class axis (keeping that axis with length 1)."""

    nargs = 1


class exp_shifted(sp.Function):  # noqa: N801
    """exp(z - M) for an array z, M its maximum over the class axis (the max shift, proved for any
    M): evaluated with M = 0 where every |z| is small enough that the body cannot overflow or
    underflow (see render.UNSHIFTED_BOUND), which needs neither the max nor the rounding of z - M.
    With a second argument c (a weight, 1/T for a temperature): exp(c (z - M)), always shifted."""

    nargs = (1, 2)

    def _eval_rewrite_as_exp(self, z, c=1, **kwargs):
        return sp.exp(c * (z - axis_max(z)))


class at_max(sp.Function):  # noqa: N801
    """x at the (first) position of the largest e over the class axis (that axis kept with length 1):
    at_max(e, e) is max e."""

    nargs = 2


class centered(sp.Function):  # noqa: N801
    """sum_j e_j (x_j - x_k) for each class k, evaluated as e_m (x_m - x_k) + sum_j r_j x_j -
    x_k sum_j r_j with m the (first) largest e_j and r = drop_max(e): one function node, so that
    x_m - x_k, exactly 0 at k = m, is formed before anything is added to it."""

    nargs = 2

    def _eval_rewrite_as_axis_sum(self, e, x, **kwargs):
        return axis_sum(e * x) - x * axis_sum(e)


class drop_max(sp.Function):  # noqa: N801
    """e with its (first) largest component over the class axis set to 0: sum_j e_j x_j =
    at_max(e, e) at_max(e, x) + sum_j drop_max(e)_j x_j, for every x (one term taken out)."""

    nargs = 1


class ratio(sp.Function):  # noqa: N801
    """a / b as one division, kept apart from the factors around it: t / (c + |t|)**2 evaluated as
    ratio(t, c + |t|) / (c + |t|), so that no intermediate power of a large |t| overflows (SymPy
    would merge the two factors back into t (c + |t|)**-2)."""

    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return 1 / b if argindex == 1 else -a / b**2

    def _eval_rewrite_as_exp(self, a, b, **kwargs):
        return a / b

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def _latex(self, printer, exp=None):
        a, b = self.args
        body = r"\frac{%s}{%s}" % (printer._print(a), printer._print(b))
        return r"\left(%s\right)^{%s}" % (body, printer._print(exp)) if exp is not None else body


class add_exact_constant(sp.Function):  # noqa: N801
    """x + c for a rational c that float64 cannot hold: printed as (x + c_hi) + c_lo with c_hi the
    float nearest c and c_lo = c - c_hi, so that next to x = -c, where x + c_hi is exact (Sterbenz),
    the constant's own rounding does not become the whole result (tanh(z + 4.702) at z = -4.7 was
    98 ulp off: |c| 2**-53 is 1e-13 of a result near 0.002)."""

    nargs = 2

    def _eval_rewrite_as_exp(self, x, c, **kwargs):
        return x + c

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp

    def parts(self):
        c = self.args[1]
        hi = float(c)
        return hi, float(c - sp.Rational(hi))

    def _latex(self, printer, exp=None):
        body = printer._print(self.args[0] + self.args[1])
        return r"\left(%s\right)^{%s}" % (body, printer._print(exp)) if exp is not None else body


class _FormatLimit(sp.Function):
    """A limit of the floating-point format a body computes in, which each printer prints for its
    working dtype (float64's value in SymPy's own evaluation). Only conditions use these: they
    choose between forms proven equal, so no proof depends on the value."""

    nargs = 0
    is_real = is_positive = is_finite = True
    is_number = False  # a value per format, not one number: kept symbolic until printed
    float64 = 0.0

    def _eval_evalf(self, prec):
        return sp.Float(self.float64, 17)._eval_evalf(prec)

    def _latex(self, printer, exp=None):
        body = r"\operatorname{%s}" % type(self).__name__.replace("_", r"\_")
        return body if exp is None else r"%s^{%s}" % (body, printer._print(exp))


class format_tiny(_FormatLimit):  # noqa: N801
    """The smallest positive normal number of the working format (float64 2**-1022, float32
    2**-126): below it a rounded quotient keeps fewer significant bits than the format has."""

    float64 = 2.0**-1022


class format_max(_FormatLimit):  # noqa: N801
    """The largest finite number of the working format (a rounded result at or above it overflowed
    or is within an ulp of overflowing)."""

    float64 = float.fromhex("0x1.fffffffffffffp+1023")


class polynomial(sp.Function):  # noqa: N801
    """sum_k c_k s**k for polynomial(s, c_0, ..., c_n): one node while expressions are lowered (no
    rule factors or redistributes it), evaluated by Horner's scheme (see :mod:`actgen.series`)."""

    def _eval_rewrite_as_exp(self, s, *coeffs, **kwargs):
        from .series import horner

        return horner(coeffs, s)

    _eval_rewrite_as_elementary = _eval_rewrite_as_exp


PRIMITIVES = (logistic, softplus, normal_cdf, xlogy, xlog1py, erfcx, exp_square, mul_exp, mul_exp_shared, mul_exp_square, exp_dd, mul_exp_dd, exp_damped, sign_select, ratio, polynomial, add_exact_constant, sin_dd, cos_dd)


def elementary(expr):
    """Rewrite every primitive back to elementary functions (for proofs and references)."""
    return expr.replace(lambda e: isinstance(e, PRIMITIVES), lambda e: e.rewrite("elementary"))
