"""Accuracy of the generated code, in ulps, against an independent mpmath reference.

The reference evaluates the *spec's own* expressions (and SymPy's raw derivatives of them), not
the rewritten forms that the generated code uses, by walking the SymPy tree with mpmath at high
precision. Precision is chosen adaptively: each value is computed at p and 2p bits (p >= 1200) and
p is doubled until the two agree to 2^-70 relative, so cancellation in the naive formulas (1 -
tanh(z)^2 at z = 700, log(1 + exp(z)) at z = -745) cannot fool the reference.

Errors are measured in ulps of the correctly rounded true value. Where the true value is below the
smallest normal number (it underflows), an absolute error up to the smallest normal counts as
exact. Where a derivative is a sum of terms of opposite sign that cancel (SiLU, GELU and Mish near
their minima), the error is also reported in ulps of the largest term ("term-relative"), which is
what floating-point summation can guarantee; not where the value is small because of a zero at the
origin (z - tanh(z), 1 - cos(z) near 0), which a series or rearranged form makes exact.
"""
from __future__ import annotations

import dataclasses
import math
import warnings

import mpmath
import numpy as np
import sympy as sp

from . import model as M
from .primitives import elementary
from .derive import Y_OUT
from .render import input_examples

PREC_START = 1200
PREC_MAX = 40000

EDGES = (0.0, -0.0, 5e-324, -5e-324, 1e-310, -1e-310, 1e-300, -1e-300, 36.0, -36.0, 37.0, -37.0, 709.0, -709.0,
         710.0, -710.0, 745.0, -745.0, 750.0, -750.0, 1000.0, -1000.0)


RANDOM_SEED = 20261205  # fixed: the same spec gives the same report


def grid(n_log=48, n_lin=61, n_huge=36, n_random=600):
    """Inputs over [-750, 750] plus the edges: log-spaced magnitudes, a linear sweep, the edges,
    and log-spaced magnitudes from 750 up to the largest float64 (those beyond a narrower
    format's range are dropped when the grid is cast to it, and its largest value is added);
    and ``n_random`` random off-grid points (a fixed seed): two thirds uniform on [-40, 40], where
    rounding decides the worst case, one third with log-uniform magnitudes from 1e-8 to 1e308 and
    random signs. A fixed grid finds what it was tuned to; these find the rest."""
    rng = np.random.default_rng(RANDOM_SEED)
    n_near = 2 * n_random // 3
    near = rng.uniform(-40.0, 40.0, n_near)
    far = 10.0 ** rng.uniform(-8.0, 308.0, n_random - n_near) * rng.choice([-1.0, 1.0], n_random - n_near)
    huge = np.geomspace(750.0, 1e308, n_huge)[1:]  # the largest float itself is added by measure()
    mags = np.concatenate([np.logspace(-8, np.log10(750.0), n_log), huge])
    lin = np.linspace(-750.0, 750.0, n_lin)
    # where most inputs lie and rounding errors decide the worst case: a step of 0.1
    small = np.linspace(-40.0, 40.0, 801)
    # where exp(z) is subnormal but z exp(z) is not (SiLU's tail), and the overflow threshold
    tails = np.linspace(-716.0, -705.0, 23)
    values = np.concatenate([mags, -mags, lin, small, tails, -tails, np.array(EDGES), near, far])
    return np.unique(values)


# -- the reference ---------------------------------------------------------------------------------

def _erfc(x):
    """mpmath's erfc, with its asymptotic series beyond |x| = 1e6, where mpmath's own check of
    the series overflows a float (exp(-x**2) itself is fine at any size in mpmath)."""
    if x > 10**6:
        if mpmath.mag(x) > _SATURATION_MAG // 2:
            # exp(-x**2) with x**2 beyond 2**4096 (erf(cosh(z)**3) at z = 1e3): below every
            # format by far, where mpmath would compute it to as many bits as x**2 has (a fuzzed
            # activation's measurement sat there for over ten minutes)
            return mpmath.mpf(0)
        t = 1 / (2 * x * x)  # the next term, 15 t**3, is below 1e-36 of the value here
        return mpmath.exp(-x * x) / (x * mpmath.sqrt(mpmath.pi)) * (1 - t + 3 * t * t)
    if x < -10**6:
        return 2 - _erfc(-x)
    return mpmath.erfc(x)


def _erf(x):
    return 1 - _erfc(x) if abs(x) > 10**6 else mpmath.erf(x)


_FUNCS = {
    sp.exp: mpmath.exp, sp.log: mpmath.log, sp.tanh: mpmath.tanh, sp.sinh: mpmath.sinh, sp.cosh: mpmath.cosh,
    sp.atan: mpmath.atan, sp.asinh: mpmath.asinh, sp.sin: mpmath.sin, sp.cos: mpmath.cos, sp.erf: _erf,
    sp.erfc: _erfc, sp.sech: mpmath.sech, sp.Abs: abs, sp.sign: mpmath.sign,
}


class ReferenceError_(Exception):
    """The reference is undefined at this point (log of a negative number, division by zero...)."""


_SATURATION_MAG = 4096
_SATURATED = "saturated"  # set in _eval's env where a saturated value was used (keys are otherwise symbols)
_SATURATING = {
    sp.exp: lambda x: mpmath.inf if x > 0 else mpmath.mpf(0),
    sp.tanh: lambda x: mpmath.mpf(mpmath.sign(x)),
    sp.sinh: lambda x: mpmath.inf if x > 0 else -mpmath.inf,
    sp.cosh: lambda x: mpmath.inf,
}


def _eval(e, env):
    if e.is_Number:
        if e.is_Integer:
            return mpmath.mpf(int(e))
        if e.is_Rational:
            return mpmath.mpf(int(e.p)) / int(e.q)
        return mpmath.mpf(str(e))
    if e.is_Symbol:
        return env[e]
    if e is sp.pi:
        return +mpmath.pi
    if e is sp.E:
        return mpmath.e
    if e.is_Add:
        return mpmath.fsum(_eval(a, env) for a in e.args)
    if e.is_Mul:
        out = mpmath.mpf(1)
        for a in e.args:
            out *= _eval(a, env)
        return out
    if e.is_Pow:
        base, ex = _eval(e.base, env), e.exp
        if ex.is_Integer:
            if base == 0 and ex < 0:
                raise ReferenceError_("division by zero")
            return base ** int(ex)
        if base < 0:
            raise ReferenceError_("fractional power of a negative number")
        if base == 0:
            # 0 to a positive power is 0; to a negative one, the limit from the right (sqrt's
            # derivative at the closed end of its domain [0, oo)), +inf
            return mpmath.mpf(0) if ex > 0 else mpmath.inf
        return base ** _eval(ex, env)
    if isinstance(e, sp.Piecewise):
        for value, cond in e.args:
            if cond is sp.true or _cond(cond, env):
                return _eval(value, env)
        raise ReferenceError_("no Piecewise branch holds")
    if isinstance(e, (sp.Max, sp.Min)):
        vals = [_eval(a, env) for a in e.args]
        return max(vals) if isinstance(e, sp.Max) else min(vals)
    if isinstance(e, sp.DiracDelta):
        # the second derivative of a kink (sign, Abs, a Piecewise edge): actgen's convention is
        # the branch's own derivative there, so the delta contributes nothing
        return mpmath.mpf(0)
    if isinstance(e, sp.Heaviside):
        x = _eval(e.args[0], env)
        return mpmath.mpf(1) if x > 0 else (mpmath.mpf(0) if x < 0 else _eval(e.args[1] if len(e.args) > 1 else sp.Rational(1, 2), env))
    fn = _FUNCS.get(e.func)
    if fn is not None:
        x = _eval(e.args[0], env)
        if e.func is sp.log and x <= 0:
            if x == 0:
                return mpmath.mpf("-inf")
            raise ReferenceError_("log of a negative number")
        if e.func in _SATURATING and mpmath.isfinite(x) and x != 0 and mpmath.mag(x) > _SATURATION_MAG:
            # |x| > 2**4096 arises only from an exponential of an exponential (no float is above
            # 2**1024): exp(x) is beyond every format by far, and mpmath would compute it exactly
            # (tanh(exp(z)) at z = 1e10 asks for an integer of 4e9 digits: a MemoryError, or the
            # machine's memory)
            env[_SATURATED] = True
            return _SATURATING[e.func](x)
        if e.func in (sp.sin, sp.cos) and mpmath.isfinite(x) and mpmath.mag(x) > _SATURATION_MAG:
            # sin of a number beyond 2**4096 (sin(sinh(z)) for z > 2840) needs pi to as many bits
            # as the number has before its binary point: minutes, memory, then a RecursionError in
            # mpmath's binary splitting (found by actgen accuracy --fuzz). No float is that large;
            # the point is skipped
            raise ReferenceError_("a periodic function of a number beyond 2**4096: its value is not resolved")
        return fn(x)
    raise ReferenceError_(f"no mpmath evaluation for {e.func}")


def _cond(c, env):
    if c is sp.true:
        return True
    if c is sp.false:
        return False
    if isinstance(c, sp.And):
        return all(_cond(a, env) for a in c.args)
    if isinstance(c, sp.Or):
        return any(_cond(a, env) for a in c.args)
    if isinstance(c, sp.Not):
        return not _cond(c.args[0], env)
    lhs, rhs = _eval(c.lhs, env), _eval(c.rhs, env)
    return {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs, "==": lhs == rhs, "!=": lhs != rhs}[c.rel_op]


def reference(expr, values: dict):
    """The value of ``expr`` at exact binary ``values`` (floats), to well beyond float64.
    Remembered per expression and point: every backend and dtype is measured at the same points."""
    key = (expr, tuple(sorted((str(s), float(v)) for s, v in values.items())))
    try:
        hit = _REFERENCES.get(key)
    except TypeError:  # an unhashable expression: computed every time
        return _reference(expr, values)
    if hit is None:
        if len(_REFERENCES) > 2_000_000:
            _REFERENCES.clear()
        try:
            hit = _REFERENCES[key] = _reference(expr, values)
        except (ReferenceError_, ZeroDivisionError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
            # OverflowError, MemoryError, RecursionError: mpmath's own limits (an integer of too many
            # digits; sin of a huge number asks for pi to as many bits, whose binary splitting
            # recursed beyond Python's limit in an actgen accuracy --fuzz run); the point is skipped
            hit = _REFERENCES[key] = ReferenceError_(f"mpmath could not evaluate the reference ({type(exc).__name__})") if isinstance(exc, (OverflowError, MemoryError, RecursionError)) else exc
    if isinstance(hit, Exception):
        raise hit
    return hit


_REFERENCES: dict = {}


def _reference(expr, values):
    expr = elementary(expr)
    prec = PREC_START
    while True:
        with mpmath.workprec(prec):
            env = {s: mpmath.mpf(v) for s, v in values.items()}
            a = _eval(expr, env)
        with mpmath.workprec(2 * prec):
            env = {s: mpmath.mpf(v) for s, v in values.items()}
            b = _eval(expr, env)
        if env.get(_SATURATED) and (mpmath.isinf(b) or mpmath.isnan(b)):
            # an exponential of a number beyond 2**4096 (saturated): more bits change nothing, and
            # each step recomputes the exponentials below it at more bits (a fuzzed
            # log(1 + exp(sqrt(1 + exp(3 - z)))) sat there for minutes): inf is the value, beyond
            # every format; NaN (inf - inf of two such terms) is not resolved
            if mpmath.isnan(b):
                raise ReferenceError_("a difference of two exponentials beyond 2**4096: the value is not resolved; the point is skipped")
            return b
        if not (mpmath.isinf(b) or mpmath.isnan(b)) and (abs(b) < mpmath.mpf(2) ** -1100 or abs(a - b) <= abs(b) * mpmath.mpf(2) ** -70):
            return b
        # an infinity or NaN at finite inputs is a cancellation the precision has not resolved
        # (log(1 - 1/(1 + exp(-z))) at z = 6145 needs 8900 bits): more bits, up to PREC_MAX
        prec *= 2
        if prec > PREC_MAX:
            raise ReferenceError_("reference did not converge within PREC_MAX bits (the formula cancels beyond it); the point is skipped")


# -- ulps ------------------------------------------------------------------------------------------


def ulp_error(got: float, true, dtype=np.float64):
    """Error of ``got`` in ulps of the correctly rounded ``true`` value (mpf); 0 for exact."""
    info = np.finfo(dtype)
    tiny = float(info.tiny)
    if mpmath.isnan(true):
        return 0.0 if math.isnan(got) else math.inf
    if mpmath.isinf(true):
        return 0.0 if got == float(true) else math.inf
    # round to nearest overflows from the largest float plus half its spacing on
    largest = mpmath.mpf(float(info.max))
    if abs(true) >= largest + (largest - mpmath.mpf(float(np.nextafter(info.max, dtype(0))))) / 2:
        return 0.0 if got == math.copysign(math.inf, float(mpmath.sign(true))) else math.inf
    if not math.isfinite(got):
        return math.inf
    rounded = dtype(float(true)) if abs(true) <= largest else dtype(math.copysign(float(info.max), float(mpmath.sign(true))))
    err = abs(mpmath.mpf(got) - true)
    if abs(true) < tiny:
        return 0.0 if err <= tiny else float(err / tiny)
    return float(err / _spacing(np.abs(rounded), dtype))


def _spacing(magnitude, dtype):
    """One ulp at a finite ``magnitude`` of ``dtype``; the spacing above the largest float is
    infinite, so there the one below it."""
    info = np.finfo(dtype)
    magnitude = dtype(min(float(magnitude), float(info.max)))
    return float(np.spacing(magnitude) if magnitude < info.max else magnitude - np.nextafter(magnitude, dtype(0)))


@dataclasses.dataclass(frozen=True)
class Measurement:
    name: str
    dtype: str
    max_ulp: float
    worst_input: float
    max_term_ulp: float  # in ulps of the largest term where terms cancel; == max_ulp otherwise
    worst_term_input: float
    points: int
    nonfinite: int  # non-finite results where the true value is finite
    warnings: int
    backend: str = "numpy"  # the target whose package was measured
    skipped: int = 0  # points where the reference could not be resolved (reported, not hidden)


def _terms(expr):
    """The terms of the expanded expression: the summands whose cancellation float sums suffer.
    For a Piecewise, one tuple of terms per branch, with the branch condition."""
    if isinstance(expr, sp.Piecewise):
        return tuple((cond, _terms(value)) for value, cond in expr.args)
    expanded = sp.expand(expr)
    return tuple(elementary(t) for t in expanded.args) if expanded.is_Add else (elementary(expanded),)


def _terms_at(terms, env):
    if terms and isinstance(terms[0], tuple):
        for cond, branch in terms:
            if cond is sp.true or _cond(elementary(cond), env):
                return _terms_at(branch, env)
        return ()
    return terms


def on_domain(x, domain, dtype=np.float64):
    """The points of ``x`` inside an activation's ``domain``, with points approaching each finite
    end of it (the next floats, and 10^-k away for k = 1..15) added."""
    if domain == "real":
        return x
    interval = M.domain_interval(domain)
    lo, hi = float(interval.start), float(interval.end)
    extra = []
    for end, inward in ((lo, 1.0), (hi, -1.0)):
        if math.isfinite(end):
            extra += [end] + [end + inward * 10.0 ** -k for k in range(1, 16)]
            extra.append(float(np.nextafter(dtype(end), dtype(end + inward))))
    with np.errstate(over="ignore"):
        x = np.unique(np.concatenate([x, np.asarray(extra, dtype=dtype)]))
    keep = ((x > lo) | ((x == lo) & (not interval.left_open))) & ((x < hi) | ((x == hi) & (not interval.right_open)))
    return x[keep]


def _cancels_toward_origin(ref_expr, var, defaults, xi, true):
    """Whether the value at ``xi`` is small because of a zero at the origin: value 0 at 0, and at
    xi 2**-j (j = 1..12) the same sign and a smaller magnitude, step by step (sampled), so no other
    zero lies in between. There a series or a rearranged form is exact (z - tanh(z) near 0), so
    the error counts in ulps of the value, not of the largest term (which is left for irrational
    zero crossings, and for zeros that only touch, as 1 - cos(z) at 2 pi k)."""
    if xi == 0 or true == 0:
        return False
    try:
        if reference(ref_expr, {var: 0.0, **defaults}) != 0:
            return False
        previous = true
        for j in range(1, 13):
            value = reference(ref_expr, {var: xi * 2.0**-j, **defaults})
            if mpmath.sign(value) != mpmath.sign(true) or abs(value) >= abs(previous):
                return False
            previous = value
        return True
    except (ReferenceError_, ZeroDivisionError, ValueError, OverflowError):
        return False


def measure(name, fn, ref_expr, var, params=(), dtype=np.float64, inputs=None, kwargs=None, terms_expr=None, domain="real"):
    """Max ulp error of ``fn`` (a generated function) against ``ref_expr`` over ``inputs`` (those
    inside ``domain``, for an activation declared on part of the line)."""
    inputs = grid() if inputs is None else inputs
    with np.errstate(over="ignore"):
        x = np.asarray(inputs, dtype=dtype)
    largest = np.finfo(dtype).max
    x = np.unique(np.concatenate([x[np.isfinite(x)], np.array([largest, -largest], dtype=dtype)]))
    x = on_domain(x, domain, dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = np.asarray(fn(x, **(kwargs or {})))
    defaults = {p.symbol: float(p.default) for p in params}
    worst, worst_at, worst_t, worst_t_at, nonfinite = 0.0, float("nan"), 0.0, float("nan"), 0
    terms = _terms(terms_expr) if terms_expr is not None else None
    skipped = 0
    for xi, gi in zip(x.tolist(), got.tolist()):
        try:
            true = reference(ref_expr, {var: xi, **defaults})
        except (ReferenceError_, ZeroDivisionError, ValueError):
            skipped += 1
            continue
        err = ulp_error(gi, true, dtype)
        if mpmath.isfinite(true) and abs(true) <= largest and not math.isfinite(gi):
            nonfinite += 1  # a true value beyond the format's range overflows, rightly
        if err > worst:
            worst, worst_at = err, xi
        term_err = err
        if terms is not None and err > 0:
            try:
                with mpmath.workprec(PREC_START):
                    env = {var: mpmath.mpf(xi), **{k: mpmath.mpf(v) for k, v in defaults.items()}}
                    active = _terms_at(terms, env)
                    if len(active) < 2:
                        raise ReferenceError_("no cancellation")
                    scale = max(abs(_eval(t, env)) for t in active)
                scale_rounded = abs(float(scale))
                if scale_rounded > abs(float(true)) and 0 < scale_rounded <= float(largest):
                    term_err = float(abs(mpmath.mpf(gi) - true) / _spacing(scale_rounded, dtype))
            except (ReferenceError_, ZeroDivisionError, ValueError, OverflowError):
                pass
        # (looked at only where it would change the worst so far)
        if term_err < err and err > max(TARGET_ULP, worst_t) and _cancels_toward_origin(ref_expr, var, defaults, xi, true):
            term_err = err
        if term_err > worst_t:
            worst_t, worst_t_at = term_err, xi
    return Measurement(name, np.dtype(dtype).name, worst, worst_at, worst_t, worst_t_at, len(x), nonfinite, len(caught), skipped=skipped)


# -- what to measure -------------------------------------------------------------------------------

TARGET_ULP = 4.0


@dataclasses.dataclass(frozen=True)
class Target:
    """One generated function, measured along one input variable with the others fixed."""

    function: str  # name in the generated package
    label: str  # what is shown in the report (function and fixed arguments)
    reference: sp.Expr  # the spec's expression or SymPy's raw derivative of it
    var: sp.Symbol
    params: tuple
    terms: sp.Expr  # the expression whose expanded terms give the cancellation scale
    call: object  # how to call the generated function with the varying input
    domain: str = "real"  # the activation's domain: inputs outside it are not measured
    inputs: object = None  # the points measured (default: the grid)


def _torch_call(fn):
    """A torch function called on NumPy arrays: the array's dtype is the tensor's (so float32 is
    computed in float32), the result back as an array."""
    import torch

    def call(x, *args, **kwargs):
        args = [torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in args]
        return fn(torch.from_numpy(np.ascontiguousarray(x)), *args, **kwargs).detach().cpu().numpy()

    return call


def _jax_call(fn):
    """A JAX function, jitted, called on NumPy arrays: the array's dtype is the JAX array's (float32
    computed in float32; float64 needs ``jax.config.update("jax_enable_x64", True)``, which is the
    caller's to set), the result back as an array."""
    import jax
    import jax.numpy as jnp

    def call(x, *args, **kwargs):
        if np.asarray(x).dtype == np.float64 and not jax.config.jax_enable_x64:
            raise ValueError("measuring a JAX package in float64 needs jax.config.update('jax_enable_x64', True)")
        jitted = jax.jit(lambda x, *a: fn(x, *a, **kwargs))
        return np.asarray(jitted(jnp.asarray(x), *(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)))

    return call


def targets(derived, package, backend="numpy"):
    """Every elementwise activation, gradient, second derivative and parameter gradient; losses
    and heads along their prediction/logit axis for representative targets. ``backend``: the
    target the package was generated for (its argument order and array type)."""
    spec = derived.spec
    wrap = {"torch": _torch_call, "jax": _jax_call}.get(backend, lambda f: f)
    out = []
    for entry in derived.activations:
        act = spec.activation(entry.name)
        if act.split:
            out += _split_targets(entry, act, package, wrap)
            continue
        if act.vector:
            out += _class_axis_targets(entry, act, package, wrap, backend)
            continue
        for d in entry.derivations:
            if d.kind not in ("forward", "grad", "grad2", "grad_param"):
                continue
            ref = act.expr if d.kind == "forward" else d.raw
            fn = wrap(getattr(package, d.name))
            out.append(Target(d.name, d.name, ref, M.Z, act.params, d.expr, fn, act.domain))
        of = entry.get("grad_from_output")
        if of is not None and hasattr(package, of.name):
            # g(y) at the outputs y = f(z) the package itself gives over the grid, against the
            # proved output form evaluated in mpmath (its printed, factored form is what is measured)
            with np.errstate(all="ignore"):
                ys = np.asarray(getattr(package, act.name)(grid()), dtype=np.float64)
            out.append(Target(of.name, of.name, of.expr, Y_OUT, act.params, sp.expand(of.expr), wrap(getattr(package, of.name)), inputs=ys))
    for entry in derived.losses:
        loss = spec.loss(entry.name)
        if loss.class_axis:
            out += _class_axis_loss_targets(entry, loss, package, wrap, backend)
        else:
            out += _loss_targets(entry, loss, package, wrap, backend)
    for entry in derived.heads:
        loss = spec.loss(entry.loss)
        if loss.class_axis:
            continue
        for d in entry.derivations:
            if backend != "numpy" and d.kind != "head":
                continue  # frameworks differentiate the head itself (its backward is measured by the tests)
            ref = d.raw
            fn = wrap(getattr(package, d.name))
            for y in (0.0, 1.0):
                if backend == "numpy":
                    call = (lambda f, y: lambda z: f(np.full_like(z, y), z, reduction="none"))(fn, y)
                else:
                    call = (lambda f, y: lambda z: f(z, np.full_like(z, y), reduction="none"))(fn, y)
                out.append(Target(d.name, f"{d.name}(y={y:g})", ref.xreplace({M.Y: _exact(y)}), M.Z, (), d.expr.xreplace({M.Y: y}), call))
    return out


# representative targets y of an elementwise loss, by the domain of y (the loss is measured along
# y_hat over the grid, restricted to y_hat's domain)
SAMPLE_TARGETS = {"real": (0.0, 1.5), "positive": (0.5, 2.0), "nonnegative": (0.0, 2.0), "[0, 1]": (0.0, 0.3, 1.0),
                  "(0, 1)": (0.3,), "{0, 1}": (0.0, 1.0), "{-1, 1}": (-1.0, 1.0)}
# class-axis functions: K = 3 logits (x, a, b), x over the grid (so it is the dominant one, or a
# negligible one, up to +-1e308), the others fixed: balanced, and one far below the rest
CLASS_OTHERS = ((0.0, 0.0), (2.0, -1e4))
CLASS_G = (1.0, -0.5, 0.25)  # the incoming gradient of a VJP


def _exact(y):
    """A target value as the exact rational its float denotes: a Float would make SymPy evaluate
    exp(y) or y * c to 53 bits when the reference is built, before mpmath sees it (kl_div_log's
    exp(y) (y - y_hat) then misses its zero at y_hat = y by an ulp of exp(y) y)."""
    return sp.Rational(float(y))


def _loss_targets(entry, loss, package, wrap, backend):
    """An elementwise loss (and, for NumPy, its gradient) along y_hat at representative targets."""
    doms = dict(loss.domain)
    y_hat_domain = doms.get("y_hat", "real")
    y_hat_domain = y_hat_domain if y_hat_domain in M.ACTIVATION_DOMAINS else "real"
    out = []
    for d in entry.derivations:
        if d.kind not in ("loss", "loss_grad", "loss_grad_input") or (backend != "numpy" and d.kind != "loss") or not hasattr(package, d.name):
            continue  # the frameworks' loss gradients are their autograd backward, tested against these
        fn = wrap(getattr(package, d.name))
        ref = loss.expr if d.kind == "loss" else d.raw
        # further inputs (a variance) held at a representative value of their domain
        extra = {x: input_examples(loss)[n][1] for n, x in zip(loss.inputs, loss.input_symbols)}
        fixed = {x: _exact(v) for x, v in extra.items()}
        shown = "".join(f", {x}={v:g}" for x, v in extra.items())
        for y in SAMPLE_TARGETS.get(doms.get("y", "real"), (0.0, 1.5)):
            if backend == "numpy":
                call = (lambda f, y: lambda x: f(np.full_like(x, y), x, *(np.full_like(x, v) for v in extra.values()), reduction="none"))(fn, y)
            else:
                call = (lambda f, y: lambda x: f(x, np.full_like(x, y), *(np.full_like(x, v) for v in extra.values()), reduction="none"))(fn, y)
            out.append(Target(d.name, f"{d.name}(y={y:g}{shown})", ref.xreplace({M.Y: _exact(y), **fixed}), M.Y_HAT, loss.params,
                              d.expr.xreplace({M.Y: _exact(y), **fixed}), call, y_hat_domain))
    return out


def _at_classes(expr, values, **indices):
    """A class-axis expression for K = len(values) with its free indices set and the logits (and
    the VJP's incoming gradient) replaced by ``values`` (and CLASS_G); z[1] may stay a symbol."""
    from .derive import G

    e = expr.xreplace({M.K: sp.Integer(len(values)), **{getattr(M, k): sp.Integer(v) for k, v in indices.items()}}).doit()
    e = e.replace(lambda t: isinstance(t, sp.Indexed) and t.base == G, lambda t: _exact(CLASS_G[int(t.indices[0]) - 1]))
    return e.replace(lambda t: isinstance(t, sp.Indexed) and t.base == M.ZV, lambda t: values[int(t.indices[0]) - 1])


# a split activation f(a, b): along b at fixed a, and along a at a fixed b
SPLIT_FIXED = (("b", 1.0), ("b", -2.5), ("a", 0.75))


def _split_targets(entry, act, package, wrap):
    """A split activation and its partial derivatives along one half, the other fixed."""
    out = []
    for d in entry.derivations:
        if d.kind not in ("forward", "grad_half") or not hasattr(package, d.name):
            continue
        fn = wrap(getattr(package, d.name))
        ref = act.expr if d.kind == "forward" else d.raw
        for var, fixed in SPLIT_FIXED:
            varying, other = (M.HALF_B, M.HALF_A) if var == "b" else (M.HALF_A, M.HALF_B)
            if var == "b":
                call = (lambda f, c: lambda x: np.asarray(f(np.concatenate([np.full_like(x, c), x], axis=-1))))(fn, fixed)
            else:
                call = (lambda f, c: lambda x: np.asarray(f(np.concatenate([x, np.full_like(x, c)], axis=-1))))(fn, fixed)
            label = f"{d.name}({other.name}={fixed:g})"
            out.append(Target(d.name, label, ref.xreplace({other: _exact(fixed)}), varying, act.params, d.expr.xreplace({other: _exact(fixed)}), call))
    return out


def _reduction_targets(entry, act, package, wrap):
    """A row reduction (one value per row) and the first two components of its gradient over
    K = 3 values, the first varying over the grid."""
    out = []
    for d in entry.derivations:
        if d.kind not in ("forward", "jacobian") or not hasattr(package, d.name):
            continue
        fn = wrap(getattr(package, d.name))
        for a, b in CLASS_OTHERS:
            values = (M.Z, _exact(a), _exact(b))
            rows = (lambda a, b: lambda x: np.stack([x, np.full_like(x, a), np.full_like(x, b)], axis=-1))(a, b)
            if d.kind == "forward":
                call = (lambda f, rows: lambda x: np.asarray(f(rows(x))))(fn, rows)
                out.append(Target(d.name, f"{d.name}(z, {a:g}, {b:g})", _at_classes(act.expr, values), M.Z, act.params, None, call))
                continue
            for comp in (0, 1):
                call = (lambda f, rows, c: lambda x: np.asarray(f(rows(x)))[..., c])(fn, rows, comp)
                out.append(Target(d.name, f"{d.name}[{comp}](z, {a:g}, {b:g})", _at_classes(d.raw, values, KK=comp + 1), M.Z, act.params, None, call))
    return out


def _class_axis_targets(entry, act, package, wrap, backend):
    """A class-axis activation and its VJP over K = 3 logits, the first varying over the grid."""
    if act.reduces:
        return _reduction_targets(entry, act, package, wrap)
    out = []
    for d in entry.derivations:
        if d.kind not in ("forward", "vjp") or not hasattr(package, d.name):
            continue
        fn = wrap(getattr(package, d.name))
        for a, b in CLASS_OTHERS:
            values = (M.Z, _exact(a), _exact(b))
            for comp in (0, 1):
                if d.kind == "forward":
                    ref = _at_classes(act.expr, values, I=comp + 1)
                    call = (lambda f, a, b, c: lambda x: np.asarray(f(np.stack([x, np.full_like(x, a), np.full_like(x, b)], axis=-1)))[..., c])(fn, a, b, comp)
                else:
                    ref = _at_classes(d.raw, values, KK=comp + 1)
                    call = (lambda f, a, b, c: lambda x: np.asarray(f(np.stack([x, np.full_like(x, a), np.full_like(x, b)], axis=-1),
                                                                      np.broadcast_to(np.asarray(CLASS_G, dtype=x.dtype), x.shape + (3,))))[..., c])(fn, a, b, comp)
                out.append(Target(d.name, f"{d.name}[{comp}](z, {a:g}, {b:g})", ref, M.Z, act.params, None, call))
    return out


# class-axis losses: K = 3 predictions (x, a, b), x over the grid, against one target vector;
# both chosen in the inputs' domains (a one-hot target where the target is a probability)
CLASS_LOSS_Y = {"real": (1.0, -0.5, 2.0), "positive": (1.0, 0.5, 2.0), "nonnegative": (1.0, 0.0, 2.0),
                "[0, 1]": (1.0, 0.0, 0.0), "{0, 1}": (1.0, 0.0, 1.0), "(0, 1)": (0.5, 0.25, 0.25), "{-1, 1}": (1.0, -1.0, 1.0)}
CLASS_LOSS_OTHERS = {"real": (0.5, -1.0), "positive": (0.5, 2.0), "nonnegative": (0.5, 2.0), "[0, 1]": (0.25, 0.5),
                     "(0, 1)": (0.25, 0.5), "{0, 1}": (0.0, 1.0), "{-1, 1}": (-1.0, 1.0)}


def _class_axis_loss_targets(entry, loss, package, wrap, backend):
    """A class-axis loss per sample (reduction "none") and, for NumPy, the first two components of
    its gradient, over K = 3 predictions whose first varies over the grid."""
    doms = dict(loss.domain)
    ys = CLASS_LOSS_Y[doms.get("y", "real")]
    y_hat_domain = doms.get("y_hat", "real")
    a, b = CLASS_LOSS_OTHERS[y_hat_domain]
    x_domain = y_hat_domain if y_hat_domain in M.ACTIVATION_DOMAINS else "real"

    def at(expr, **indices):
        e = expr.xreplace({M.K: sp.Integer(3), **{getattr(M, k): sp.Integer(v) for k, v in indices.items()}}).doit()
        e = e.replace(lambda t: isinstance(t, sp.Indexed) and t.base == M.YV, lambda t: _exact(ys[int(t.indices[0]) - 1]))
        return e.replace(lambda t: isinstance(t, sp.Indexed) and t.base == M.Y_HATV, lambda t: (M.Y_HAT, _exact(a), _exact(b))[int(t.indices[0]) - 1])

    out = []
    for d in entry.derivations:
        if d.kind not in ("loss", "loss_grad") or (backend != "numpy" and d.kind != "loss") or not hasattr(package, d.name):
            continue  # the frameworks' loss gradients are their autograd backward
        fn = wrap(getattr(package, d.name))

        def call(x, f=fn, comp=None):
            y = np.broadcast_to(np.asarray(ys, dtype=x.dtype), x.shape + (3,))
            y_hat = np.stack([x, np.full_like(x, a), np.full_like(x, b)], axis=-1)
            got = np.asarray(f(y, y_hat, reduction="none") if backend == "numpy" else f(y_hat, y, reduction="none"))
            return got if comp is None else got[..., comp]

        label = f"{d.name}[{{}}](y_hat, {a:g}, {b:g}; y={', '.join(f'{v:g}' for v in ys)})"
        if d.kind == "loss":
            out.append(Target(d.name, label.replace("[{}]", ""), at(loss.expr), M.Y_HAT, loss.params, None, call, x_domain))
            continue
        for comp in (0, 1):
            out.append(Target(d.name, label.format(comp), at(d.raw, KK=comp + 1), M.Y_HAT, loss.params, None,
                              (lambda f, c: lambda x: call(x, f, c))(fn, comp), x_domain))
    return out


def measure_all(derived, package, dtypes=(np.float64, np.float32), backend="numpy", progress=None):
    """Every measurement of one package; ``progress(done, total, label, dtype)`` is called before
    each (for a terminal's progress line)."""
    results = []
    todo = [(t, dt) for t in targets(derived, package, backend) for dt in dtypes]
    for done, (t, dt) in enumerate(todo):
        if progress:
            progress(done, len(todo), t.label, np.dtype(dt).name)
        m = measure(t.label, t.call, t.reference, t.var, t.params, dtype=dt, inputs=t.inputs, terms_expr=t.terms, domain=t.domain)
        results.append(dataclasses.replace(m, backend=backend))
    return results


def report_markdown(results, header):
    lines = [header, "", "# Accuracy of the generated functions", "",
             "Measured by `actgen accuracy` against an mpmath reference evaluating the spec's own formulas (and SymPy's raw",
             "derivatives of them) at adaptive precision, over inputs spanning [-750, 750] (a step of 0.1 on [-40, 40]) with the",
             "edges ±0, subnormals, ±1e-300, ±36, ±37, ±705..716, ±745, ±1000, and log-spaced magnitudes up to each format's",
             "largest value (±1.8e308, ±3.4e38), and 600 random off-grid points (a fixed seed; 400 uniform on [-40, 40], 200 of",
             "log-uniform magnitude up to 1e308). A true value beyond the format's range must overflow to infinity. \"Skipped\":",
             "points where the naive formula cancels beyond 40000 bits (log(1 - sigma(z)) at z = 1e8), so the reference cannot",
             "be resolved. Errors are in ulps of the correctly rounded true",
             "value. The NumPy package computes float32 inputs of its activations in float32, except where a body needs a",
             "float64-only primitive (double-double, erfcx, SciPy's special functions; the docstring says which), and",
             "float32 inputs of its losses and class-axis functions in float64, rounded once; the torch package (rows marked",
             "torch) computes float32 tensors in float32, so its float32 rows measure float32 arithmetic. A true value below the",
             "smallest normal number counts as exact when the error is below it. \"Term ulp\" measures the error in ulps of the",
             "largest term of the expanded expression, which is what floating-point summation can guarantee where terms of",
             "opposite sign cancel near a zero crossing; not near a zero at the origin (f(0) = 0 and no sign change on the way",
             f"to it, sampled), where a series makes the value exact and the error counts in ulps of the value. Target: at most {TARGET_ULP:g} ulp.", "",
             "| Function | package | dtype | max ulp | at input | term ulp | at input | non-finite | warnings | skipped |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in results:
        lines.append(f"| `{m.name}` | {m.backend} | {m.dtype} | {m.max_ulp:.3g} | {m.worst_input:.6g} | {m.max_term_ulp:.3g} | {m.worst_term_input:.6g} | {m.nonfinite} | {m.warnings} | {m.skipped} |")
    return "\n".join(lines) + "\n"


def report_json(results):
    import json

    rows = [dataclasses.asdict(m) for m in results]
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = str(v)
    return json.dumps(rows, indent=1, sort_keys=True) + "\n"
