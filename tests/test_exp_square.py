"""The runtimes' exp(c t**2) (exp_square, mul_exp_square) for a constant c that is not a power of
two: the rounding of c t**2 (and, in float32, of c itself) is carried, where exp would amplify it by
|c| t**2 (erf(1.5 z)'s derivative exp(-2.25 z**2) was 473-507 ulp off at z = -15.3 in every
package, found by actgen accuracy --fuzz). Measured against mpmath with the float c the generated
code passes."""
from __future__ import annotations

import importlib
import sys

import mpmath
import numpy as np
import pytest

from _reference import GENERATED

C_VALUES = (-2.25, -0.7, -1.0 / 3.0, 0.3)


def _runtime(backend):
    sys.path.insert(0, str(GENERATED))
    try:
        if backend == "numpy":
            module = importlib.import_module("actgen_numpy._runtime")
            return module, (lambda a: a), np.asarray
        if backend == "torch":
            torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
            module = importlib.import_module("actgen_torch._runtime")
            return module, torch.from_numpy, (lambda t: t.numpy())
        jax = pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]'")
        jax.config.update("jax_enable_x64", True)  # as tests/test_jax.py (the package never sets it)
        module = importlib.import_module("actgen_jax._runtime")
        return module, jax.numpy.asarray, np.asarray
    finally:
        sys.path.pop(0)


def _ulps(got, want, dtype, backend):
    # XLA on CPU flushes subnormal results to 0: a correction out * k of a result out below
    # 2**-1022 * 2**60 (float32: 2**-126 * 2**30) can be subnormal and is then lost, as in every JAX
    # function with a compensated exponent (README: Accuracy); above it the loss is < 1/100 ulp
    floor = np.finfo(dtype).tiny * (2.0**60 if dtype == np.float64 else 2.0**30) if backend == "jax" else np.finfo(dtype).tiny
    out = []
    for g, w in zip(got, want):
        f = float(dtype(float(w)))
        if f == 0.0 or not np.isfinite(f) or abs(f) < floor:
            continue
        out.append(float(abs(mpmath.mpf(float(g)) - w)) / float(np.spacing(dtype(abs(f)))))
    return out


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("c", C_VALUES)
def test_exp_square_of_a_constant_that_is_no_power_of_two(backend, dtype, c):
    rt, to_array, to_numpy = _runtime(backend)
    rng = np.random.default_rng(7)
    limit = np.sqrt(-np.log(np.finfo(dtype).tiny) / abs(c)) if c < 0 else np.sqrt(np.log(np.finfo(dtype).max) / c)
    t = np.concatenate([rng.uniform(-limit, limit, 1500), [0.0, 1e-3, -limit * 0.99]]).astype(dtype)
    u = (rng.normal(size=t.size) + 3.0).astype(dtype)
    mpmath.mp.prec = 200
    c_exact = mpmath.mpf(c)  # the float the generated code passes
    want = [mpmath.exp(c_exact * mpmath.mpf(float(x)) ** 2) for x in t]
    with np.errstate(all="ignore"):
        got = to_numpy(rt._exp_square(to_array(t), c))
    # float32: exp's own error is larger; XLA's float64 exp is up to ~1.1 ulp off on CPU
    bound = (2.0 if backend == "jax" else 1.5) if dtype == np.float64 else 2.5
    assert max(_ulps(got, want, dtype, backend)) <= bound
    if c < 0:
        with np.errstate(all="ignore"):
            got = to_numpy(rt._mul_exp_square(to_array(u), to_array(t), c))
        assert max(_ulps(got, [mpmath.mpf(float(a)) * w for a, w in zip(u, want)], dtype, backend)) <= bound + 0.5


def test_a_power_of_two_keeps_the_plain_product():
    """c = -1/2 (GELU's): the product is exact, nothing is carried (the bits of before)."""
    rt, _, _ = _runtime("numpy")
    x = np.array([1.0, 3.5, 1e308, np.inf])
    product, carry = rt._scale_parts(-0.5, x)
    assert carry is None and np.array_equal(product, -0.5 * x)
    product, carry = rt._scale_parts(-2.25, x)
    assert np.array_equal(product, -2.25 * x) and np.array_equal(carry, [0.0, 0.0, 0.0, 0.0])  # exact, or overflowed: 0


# c = -(1.702/1.002)**2 exactly (the spec's decimals are exact rationals): no float holds it, and
# its rounding alone put erf(1.702 z/(1 + 0.044715**2))'s derivative 271 ulp off at z = 15.1 in every
# package (actgen accuracy --fuzz 20 --seed 29); the printer passes (float, remainder)
def _exact_c():
    mpmath.mp.prec = 200
    return -(mpmath.mpf(1702) / 1000 / (1 + (mpmath.mpf(44715) / 10**6) ** 2)) ** 2


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_remainder_of_a_constant_no_float_holds_is_carried(backend, dtype):
    rt, to_array, to_numpy = _runtime(backend)
    EXACT_C = _exact_c()
    high = float(EXACT_C)
    pair = (high, float(EXACT_C - mpmath.mpf(high)))
    limit = float(mpmath.sqrt(mpmath.log(np.finfo(dtype).tiny) / EXACT_C))
    t = np.concatenate([np.random.default_rng(3).uniform(-limit, limit, 1500), [limit * 0.99]]).astype(dtype)
    want = [mpmath.exp(EXACT_C * mpmath.mpf(float(x)) ** 2) for x in t]
    with np.errstate(all="ignore"):
        got = to_numpy(rt._exp_square(to_array(t), pair))
        plain = to_numpy(rt._exp_square(to_array(t), high))
    bound = (2.0 if backend == "jax" else 1.5) if dtype == np.float64 else 2.5
    assert max(_ulps(got, want, dtype, backend)) <= bound
    if dtype == np.float64:  # the float alone is hundreds of ulp off near the end of the range
        assert max(_ulps(plain, want, dtype, backend)) > 50


def test_the_printer_writes_a_constant_no_float_holds_as_a_pair():
    import sympy as sp

    from actgen.backends.numpy.printer import ActgenNumPyPrinter

    printer = ActgenNumPyPrinter()
    c = -(sp.Rational(1702, 1000) / (1 + sp.Rational(44715, 10**6) ** 2)) ** 2
    high, low = eval(printer._square_constant(c))  # noqa: S307 - a literal pair printed here
    assert sp.Rational(high) + sp.Rational(low) - c < sp.Rational(1, 10**30) * abs(c)
    assert printer._square_constant(sp.Rational(-9, 4)) == printer._print(sp.Rational(-9, 4))


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("c", [1.0, 0.3])
def test_exp_square_that_overflows_is_inf_not_nan(backend, dtype, c):
    """exp(c t**2) with c > 0 past the overflow: exp(product) is inf, and inf times a correction of
    0 (t**2 exact, c a power of two) was NaN: 1 + exp(z**2) was NaN for |z| >= 26.7 (fuzz seed 29)."""
    rt, to_array, to_numpy = _runtime(backend)
    t = np.array([27.0 / c ** 0.5, -30.0 / c ** 0.5, 1e10, -1e200, 3.0], dtype=dtype)
    with np.errstate(all="ignore"):
        got = to_numpy(rt._exp_square(to_array(t), c))
    assert np.isposinf(got[:4]).all()
    assert got[4] == pytest.approx(np.exp(c * 9.0), rel=1e-6)
