"""Runtime edges of the generated packages: 0-d and empty class axes, parameters at or past the
boundary their derivation assumed, and output forms near the roots where an expanded polynomial
would cancel. NumPy always; the PyTorch and JAX packages where installed."""
from __future__ import annotations

import importlib

import numpy as np
import pytest


def _frameworks():
    out = []
    try:
        torch = importlib.import_module("torch")
        out.append(("torch", lambda x: torch.tensor(x, dtype=torch.float64), lambda t: t.detach().numpy()))
    except ImportError:
        pass
    try:
        jax = importlib.import_module("jax")
        jax.config.update("jax_enable_x64", True)
        jnp = importlib.import_module("jax.numpy")
        out.append(("jax", lambda x: jnp.asarray(x, dtype=jnp.float64), np.asarray))
    except ImportError:
        pass
    return out


@pytest.fixture(scope="module")
def packages(ag):
    """(package, to the package's array, back to NumPy) for every installed target."""
    found = [(ag, lambda x: np.asarray(x, dtype=np.float64), np.asarray)]
    for name, to, back in _frameworks():
        found.append((importlib.import_module(f"actgen_{name}"), to, back))
    return found


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_a_scalar_is_one_class(packages, fn):
    """softmax of a 0-d input is one class (1, log 1 = 0), at any magnitude (no TypeError past the
    unshifted bound), as torch.softmax(tensor(1000.), -1)."""
    for pkg, to, back in packages:
        for v in (0.5, 1000.0, -1e308):
            assert float(back(getattr(pkg, fn)(to(v)))) == (1.0 if fn == "softmax" else 0.0), (pkg.__name__, v)


def test_a_scalar_vjp_is_zero(ag):
    for fn in ("softmax_vjp", "log_softmax_vjp"):
        assert float(getattr(ag, fn)(np.array(1000.0), np.array(1.0))) == 0.0


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_an_empty_class_axis_gives_an_empty_result(packages, fn):
    for pkg, to, back in packages:
        for shape in ((0,), (3, 0), (0, 4)):
            got = back(getattr(pkg, fn)(to(np.zeros(shape))))
            assert got.shape == shape, (pkg.__name__, shape)


def test_smooth_l1_at_beta_zero_is_the_l1_loss(packages):
    """beta -> 0 leaves only the linear branch: plain L1 (as PyTorch's smooth_l1_loss with
    beta=0), with no ZeroDivisionError from the quadratic branch that is not selected."""
    y, p = np.array([0.0, 1.0, -2.0]), np.array([0.5, 3.0, -2.0])
    expected = np.mean(np.abs(p - y))
    for pkg, to, back in packages:
        args = (to(y), to(p)) if pkg.__name__ == "actgen_numpy" else (to(p), to(y))
        assert float(back(pkg.smooth_l1(*args, beta=0))) == pytest.approx(expected, rel=4e-16), pkg.__name__  # summation order


def test_smooth_l1_at_beta_zero_matches_torch(ag):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    y, p = np.linspace(-3, 3, 13), np.linspace(2, -1, 13)
    ref = torch.nn.functional.smooth_l1_loss(torch.tensor(p), torch.tensor(y), beta=0.0).item()
    assert ag.smooth_l1(y, p, beta=0) == pytest.approx(ref, rel=1e-15)
    np.testing.assert_array_equal(ag.smooth_l1_grad(y, p, beta=0, reduction="none"), np.sign(p - y))


@pytest.mark.parametrize("call", [
    lambda pkg, to, np_order: pkg.huber(*np_order(to([0.0]), to([3.0])), delta=-2.0),
    lambda pkg, to, np_order: pkg.smooth_l1(*np_order(to([0.0]), to([3.0])), beta=-1.0),
])
def test_a_negative_loss_parameter_is_refused(packages, call):
    """A parameter whose derivation assumed it positive (its default is) is refused below 0 with a
    message naming the function, the parameter and the value (PyTorch refuses these too)."""
    for pkg, to, _ in packages:
        np_order = (lambda a, b: (a, b)) if pkg.__name__ == "actgen_numpy" else (lambda a, b: (b, a))
        with pytest.raises(ValueError, match=r"must be >= 0 .*derived and proved for \w+ > 0.*got -"):
            call(pkg, to, np_order)


def test_an_output_form_refuses_a_negative_parameter(ag):
    """elu's derivative from its output, y + alpha for y < 0, was proved for alpha > 0 (the output
    then tells the branch); with alpha = -1 it would be silently wrong, so it is refused."""
    with pytest.raises(ValueError, match="elu_grad_from_output: alpha must be >= 0"):
        ag.elu_grad_from_output(np.array([-0.5, 1.0]), alpha=-1)
    z = np.array([-2.0, -0.1, 0.3])
    np.testing.assert_allclose(ag.elu_grad_from_output(ag.elu(z, alpha=0.5), alpha=0.5), ag.elu_grad(z, alpha=0.5), rtol=1e-15)


def test_output_forms_keep_their_accuracy_near_one(ag):
    """sigmoid's y(1 - y) and tanh's (1 - y)(1 + y): exact factors near y = 1, where y - y**2 and
    1 - y**2 cancel (checked here against exact rational arithmetic at the float inputs)."""
    from fractions import Fraction

    for y in (1 - 2.0**-30, 1 - 3 * 2.0**-40, 0.5 + 2.0**-20, 2.0**-30):
        exact = Fraction(y) * (1 - Fraction(y))
        got = float(ag.sigmoid_grad_from_output(np.array(y)))
        assert abs(Fraction(got) - exact) <= Fraction(np.spacing(float(exact))), y
        exact = (1 - Fraction(y)) * (1 + Fraction(y))
        got = float(ag.tanh_grad_from_output(np.array(y)))
        assert abs(Fraction(got) - exact) <= Fraction(np.spacing(float(exact))), y


def _softmax_reference(z, g):
    """softmax, log_softmax and softmax's VJP of one row, in 800-digit mpmath (z - log sum exp z
    cancels to exp(-800) at z = (800, ...))."""
    import mpmath

    with mpmath.workdps(800):
        zs = [mpmath.mpf(v) for v in z]
        total = mpmath.fsum(mpmath.exp(v) for v in zs)
        s = [mpmath.exp(v) / total for v in zs]
        dot = mpmath.fsum(si * gi for si, gi in zip(s, g))
        return ([float(v - mpmath.log(total)) for v in zs], [float(si * (gi - dot)) for si, gi in zip(s, g)])


@pytest.mark.parametrize("z", [[40.0, 0.0, 0.0], [0.0, -37.5, 3.0], [700.0, 0.0, -5.0], [1e-3, 800.0, 790.0]])
def test_a_dominant_logit_keeps_the_others(packages, z):
    """Where one logit dominates, log_softmax's largest component is -(the others), about
    -exp(-40), not 0, and softmax's VJP at it is a small number, not the cancellation of two
    O(1) terms (dominant_term: the class sums with their largest term taken out)."""
    g = [1.0, -0.5, 0.25]
    log_true, vjp_true = _softmax_reference(z, g)
    for pkg, to, back in packages:
        log_got = back(pkg.log_softmax(to(z)))
        vjp_got = back(pkg.softmax_vjp(to(z), to(g)))
        np.testing.assert_array_max_ulp(log_got, np.array(log_true), maxulp=4)
        np.testing.assert_array_max_ulp(vjp_got, np.array(vjp_true), maxulp=8)


def test_a_nan_input_gives_nan(packages, catalog):
    """Every activation (elementwise and class-axis) and every loss is NaN at a NaN input, in every
    backend: a Piecewise whose otherwise-branch is a constant (hard and soft shrink, threshold,
    the NaN outside a domain) is reordered so that a NaN input, false in every comparison, takes
    a branch that holds it (rules.NAN_OTHERWISE); as NumPy's own functions and
    torch.nn.functional.hardshrink, softshrink and threshold do."""
    wrong = []
    for pkg, to, back in packages:
        for act in catalog["activations"]:
            inside = {"real": [0.25, -0.75], "negative": [-0.25, -0.75]}.get(act["domain"], [0.25, 0.75])
            z = np.array([np.nan, *inside] + ([0.5] if act["split"] else []))  # a split activation halves an even axis
            got = back(getattr(pkg, act["name"])(to(z)))
            got = np.ravel(got)  # a row reduction gives one value for the row
            if not np.isnan(got[0]) or (not act["vector"] and np.isnan(got[1:]).any()):
                wrong.append((pkg.__name__, act["name"], got.tolist()))
        for loss in catalog["losses"]:
            if loss["class_axis"] or not hasattr(pkg, loss["name"]):
                continue
            y = np.array([1.0, 0.0, 1.0])
            y_hat = np.array([np.nan, 0.25, 0.75])
            others = [to(np.full(3, 1.0)) for _ in loss["inputs"]]  # further inputs (a variance): 1 is in every domain
            got = back(getattr(pkg, loss["name"])(to(y), to(y_hat), *others, reduction="none"))
            if not np.isnan(got[0]):
                wrong.append((pkg.__name__, loss["name"], got.tolist()))
    assert not wrong


def test_the_cosine_loss_is_right_at_any_scale(packages):
    """The cosine loss is homogeneous of degree 0 in y_hat and in y: its sums of squares are taken
    of y_hat / max|y_hat| and y / max|y| (rules.scale_free), so it neither overflows past 1.3e154
    (where it gave 1) nor underflows below 1e-154; its gradient (degree -1 in y_hat) scales."""
    y = np.array([[1.0, -0.5, 2.0], [0.0, 1.0, 0.0]])
    p = np.array([[3.0, 0.5, -1.0], [0.2, 0.7, 0.1]])
    for pkg, to, back in packages:
        args = (lambda a, b: (to(a), to(b))) if pkg.__name__ == "actgen_numpy" else (lambda a, b: (to(b), to(a)))
        want = back(pkg.cosine(*args(y, p), reduction="none"))
        for s in (1e-300, 1e-200, 1e200, 1e300):
            np.testing.assert_allclose(back(pkg.cosine(*args(y, p * s), reduction="none")), want, rtol=1e-15, atol=1e-15, err_msg=f"{pkg.__name__} y_hat*{s}")
            np.testing.assert_allclose(back(pkg.cosine(*args(y * s, p), reduction="none")), want, rtol=1e-15, atol=1e-15, err_msg=f"{pkg.__name__} y*{s}")
    g = __import__("actgen_numpy").cosine_grad(y, p, reduction="none")
    np.testing.assert_allclose(__import__("actgen_numpy").cosine_grad(y, p * 1e300, reduction="none") * 1e300, g, rtol=1e-15)


def test_kl_div_near_its_zero_and_past_the_ratio_range(ag):
    """y log(y/y_hat) (rule log_ratio): next to its zero at y_hat = y the rounded ratio cost its
    value's accuracy (log1p of the exact difference is used there), and at a subnormal y_hat the
    ratio overflowed to inf (log y - log y_hat is used there). In ulps against mpmath."""
    import mpmath

    from actgen.accuracy import ulp_error

    y = np.array([0.5, 0.5, 2.0, 2.0, 0.5, 3.0, 1e-300])
    y_hat = np.array([0.5000000001, 0.49999999999999, 1.9999999, 5e-324, 1e300, 0.9, 1e-5])
    got = ag.kl_div(y, y_hat, reduction="none")
    with mpmath.workprec(400):
        worst = max(ulp_error(float(g), mpmath.mpf(float(a)) * mpmath.log(mpmath.mpf(float(a)) / mpmath.mpf(float(b)))) for g, a, b in zip(got, y, y_hat))
    assert worst <= 4.0, worst


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kl_div_where_the_quotient_leaves_the_format(packages, dtype):
    """log_ratio's far branch is chosen by the working format's own limits: a quotient y/y_hat past
    float32's largest number (1e10/1e-30) or below its smallest normal one (1e-30/1e10) took
    log(inf) = inf and a log of a rounded subnormal in the float32 bodies of the torch and JAX
    packages while the thresholds were float64's; and the quotient is one division, so a subnormal
    y_hat whose reciprocal overflows (1e-300/1e-310) keeps its moderate ratio. In ulps of the
    input's format against mpmath (subnormal inputs only in float64 and not for JAX, whose XLA
    flushes them to zero)."""
    import mpmath

    from actgen.accuracy import ulp_error

    np_dtype, info = np.dtype(dtype), np.finfo(dtype)
    pairs = [(1e10, 1e-30), (1e-30, 1e10), (0.5, 1e-20), (3e38, 1e-3), (1e-300, 1e-310)]
    for pkg, to, back in packages:
        name = pkg.__name__.rsplit("_", 1)[-1]
        normal = lambda v: info.tiny <= v <= info.max  # noqa: E731
        cases = [(p, q) for p, q in pairs if normal(p) and (normal(q) or (q > 0 and dtype == "float64" and name != "jax"))]
        a, b = (np.array([c[i] for c in cases], dtype=dtype) for i in (0, 1))
        if name == "numpy":
            got = pkg.kl_div(a, b, reduction="none")
        else:
            cast = (lambda x: to(x).to(getattr(__import__("torch"), dtype))) if name == "torch" else (lambda x: to(x).astype(dtype))
            got = back(pkg.kl_div(cast(b), cast(a), reduction="none"))
        assert np.asarray(got).dtype == np_dtype, (name, np.asarray(got).dtype)
        with mpmath.workprec(400):
            errors = [ulp_error(float(g), mpmath.mpf(float(p)) * mpmath.log(mpmath.mpf(float(p)) / mpmath.mpf(float(q))), dtype=np_dtype.type)
                      for g, p, q in zip(got, a, b)]
        assert max(errors) <= 4.0, (name, dtype, list(zip(a, b, got, errors)))
