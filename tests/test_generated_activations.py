"""Numerics of the committed generated package's activations (generated/actgen_numpy).

Functions are discovered from generated/catalog.json, so a new activation in the spec is tested
automatically: gradients against central finite differences away from kinks (located from the
function's own SymPy form), forward values and gradients against the spec's formula evaluated by
mpmath, parameter gradients, the class-axis functions' Jacobians and VJPs, dtype and shape.
"""
from __future__ import annotations

import re
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import ROOT, central_difference, domain_mask, kinks_of, load_catalog, near_kink, parse  # noqa: E402

CATALOG = load_catalog()
ACTIVATIONS = {a["name"]: a for a in CATALOG["activations"]}
ELEMENTWISE = sorted(n for n, a in ACTIVATIONS.items() if not a["vector"] and not a["split"])  # split activations: tests/test_split.py
VECTOR = sorted(n for n, a in ACTIVATIONS.items() if a["vector"] and not a["reduces"])  # row reductions: tests/test_reductions.py
PARAM_GRADS = sorted((n, p["name"]) for n, a in ACTIVATIONS.items() if not a["vector"] for p in a["params"])
FROM_OUTPUT = sorted(n for n, a in ACTIVATIONS.items() if "grad_from_output" in a["functions"])

Z = sp.Symbol("z", real=True)
GRID = np.concatenate([np.linspace(-8.0, 8.0, 81) + 0.0137, [-0.31, 0.29, 1e-3, -1e-3]])


def _defaults(name):
    return {p["name"]: p["default"] for p in ACTIVATIONS[name]["params"]}


def _symbols(name):
    return {"z": Z, **{p: sp.Symbol(p, positive=True) for p in _defaults(name)}}


def _forward_expr(name, with_defaults=True):
    expr = parse(ACTIVATIONS[name]["functions"]["forward"]["sympy"], _symbols(name))
    if with_defaults:
        expr = expr.subs({sp.Symbol(p, positive=True): sp.Float(v) for p, v in _defaults(name).items()})
    return expr


def _smooth_points(name, points=GRID):
    return points[~near_kink(_forward_expr(name), Z, points)]


def test_catalog_and_package_agree(ag):
    """Every catalogued function exists in the package and is exported."""
    for a in CATALOG["activations"] + CATALOG["losses"] + CATALOG["heads"]:
        for fn in a["functions"].values():
            assert fn["name"] in ag.__all__, fn["name"]
            assert callable(getattr(ag, fn["name"]))
    assert {"sigmoid", "tanh", "relu", "leaky_relu", "linear", "softmax"} <= set(ACTIVATIONS)
    assert ELEMENTWISE and VECTOR


def test_aliases_are_the_same_functions(ag):
    for name, a in ACTIVATIONS.items():
        for alias in a["aliases"]:
            for suffix in ("", "_grad", "_grad_from_output"):
                if hasattr(ag, name + suffix):
                    assert getattr(ag, alias + suffix) is getattr(ag, name + suffix) or np.array_equal(
                        getattr(ag, alias + suffix)(GRID), getattr(ag, name + suffix)(GRID)
                    )


# -- gradients against finite differences ---------------------------------------------------------


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_grad_matches_central_differences(ag, name):
    f, grad = getattr(ag, name), getattr(ag, name + "_grad")
    z = _smooth_points(name)
    assert len(z) > 0.8 * len(GRID), "the kink detector removed too much of the grid"
    np.testing.assert_allclose(grad(z), central_difference(f, z), rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("name", ELEMENTWISE)
@settings(max_examples=40, deadline=None)
@given(v=st.floats(-12, 12, allow_nan=False))
def test_grad_matches_central_differences_hypothesis(ag, name, v):
    f, grad = getattr(ag, name), getattr(ag, name + "_grad")
    z = np.array([v])
    if near_kink(_forward_expr(name), Z, z)[0]:
        return
    np.testing.assert_allclose(grad(z), central_difference(f, z), rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("name, param", PARAM_GRADS)
def test_param_grad_matches_central_differences(ag, name, param):
    f, grad = getattr(ag, name), getattr(ag, f"{name}_grad_{param}")
    for value in (_defaults(name)[param], 0.7, 2.5):
        z = _smooth_points(name)
        h = 1e-6 * max(1.0, abs(value))
        fd = (f(z, **{param: value + h}) - f(z, **{param: value - h})) / (2 * h)
        np.testing.assert_allclose(grad(z, **{param: value}), fd, rtol=2e-6, atol=2e-7, err_msg=f"{param}={value}")


@pytest.mark.parametrize("name, param", PARAM_GRADS)
def test_grad_with_non_default_param_matches_central_differences(ag, name, param):
    f, grad = getattr(ag, name), getattr(ag, name + "_grad")
    z = _smooth_points(name)
    value = 0.3
    np.testing.assert_allclose(
        grad(z, **{param: value}), central_difference(lambda t: f(t, **{param: value}), z), rtol=2e-6, atol=2e-7
    )


# -- against the spec's own formula, in high precision --------------------------------------------

SPEC = yaml.safe_load((ROOT / "spec" / "activations.yaml").read_text(encoding="utf-8"))["activations"]
SPEC_ELEMENTWISE = sorted(n for n in ELEMENTWISE if n in SPEC and "[" not in SPEC[n]["expr"])


def _spec_function(name):
    """The spec's formula (not actgen's rewritten one) as an mpmath function of z."""
    symbols = {"z": Z, **{p: sp.Float(v) for p, v in _defaults(name).items()}, "Abs": sp.Abs, "Max": sp.Max, "Min": sp.Min}
    expr = sp.sympify(SPEC[name]["expr"], locals=symbols)
    return expr, sp.lambdify(Z, expr, modules="mpmath")


def _high_precision(name):
    expr, f = _spec_function(name)
    z = np.concatenate([GRID, [-30.0, -15.0, 15.0, 30.0]])
    z = z[~near_kink(expr, Z, z) & domain_mask(ACTIVATIONS[name]["domain"], z)]  # the formula is real on its domain only
    with mpmath.workdps(450):  # enough digits for 1 + erf(-30/sqrt(2)) ~ 1e-197 to survive
        want = np.array([float(f(mpmath.mpf(float(v)))) for v in z])
        dwant = np.array([float(mpmath.diff(f, mpmath.mpf(float(v)))) for v in z])
    return z, want, dwant


@pytest.mark.parametrize("name", SPEC_ELEMENTWISE)
def test_forward_matches_the_spec_formula_in_high_precision(ag, name):
    z, want, _ = _high_precision(name)
    np.testing.assert_allclose(getattr(ag, name)(z), want, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", SPEC_ELEMENTWISE)
def test_grad_matches_the_spec_formula_in_high_precision(ag, name):
    z, _, dwant = _high_precision(name)
    np.testing.assert_allclose(getattr(ag, name + "_grad")(z), dwant, rtol=1e-10, atol=1e-300)


def test_logit_matches_scipy_and_inverts_the_sigmoid(ag):
    import scipy.special

    p = np.concatenate([np.geomspace(1e-300, 0.5, 60), 1 - np.geomspace(1e-16, 0.5, 40)])
    np.testing.assert_allclose(ag.logit(p), scipy.special.logit(p), rtol=1e-14)
    z = np.linspace(-30, 12, 85)  # beyond 12, sigmoid(z) rounds to within 1e-16 of 1 and loses z's digits
    np.testing.assert_allclose(ag.logit(ag.sigmoid(z)), z, rtol=1e-9, atol=1e-12)


def test_log1mexp_is_exact_where_the_naive_formula_fails(ag):
    """Near 0 (1 - exp(z) cancels) and far below (log(1 - exp(z)) rounds to 0)."""
    with mpmath.workdps(400):  # 1 - exp(-700) needs 304 digits; expm1 keeps 1 - exp(-1e-300) exact
        for z in (-1e-300, -1e-20, -1e-8, -0.5, -0.6931, -0.6932, -2.0, -40.0, -700.0, -740.0):
            want = float(mpmath.log(-mpmath.expm1(mpmath.mpf(z))))
            assert float(ag.log1mexp(np.array([z]))[0]) == pytest.approx(want, rel=4e-16, abs=1e-320), z


def test_partial_functions_are_nan_outside_their_domain(ag):
    """Entries declared on part of the line (catalog "domain") give NaN outside it, their
    derivatives too."""
    partial = [n for n in ELEMENTWISE if ACTIVATIONS[n]["domain"] != "real"]
    assert partial, "the bundled spec has partial functions (logit, log1mexp)"
    z = np.array([-1e300, -3.0, -1e-300, 0.0, 1e-300, 0.5, 1.0, 3.0, 1e300])
    for name in partial:
        outside = ~domain_mask(ACTIVATIONS[name]["domain"], z)
        for suffix in ("", "_grad", "_grad2"):
            assert np.isnan(getattr(ag, name + suffix)(z)[outside]).all(), (name + suffix, z[outside])


# -- the seed's numbers ---------------------------------------------------------------------------


def test_seed_numbers(ag):
    assert round(float(ag.sigmoid(2.0)), 3) == 0.881
    np.testing.assert_allclose(ag.sigmoid(2.0), 1 / (1 + np.exp(-2.0)), rtol=1e-15)
    np.testing.assert_allclose(np.round(ag.softmax(np.array([2.0, 1.0])), 3), [0.731, 0.269])
    np.testing.assert_allclose(ag.softmax(np.array([2.0, 1.0])), np.exp([2.0, 1.0]) / np.exp([2.0, 1.0]).sum(), rtol=1e-15)
    # softmax([2, 1])_1 is the sigmoid of the logit difference, not of 2
    assert abs(float(ag.softmax(np.array([2.0, 1.0]))[0]) - float(ag.sigmoid(1.0))) < 1e-15
    assert float(ag.sigmoid(2.0)) != pytest.approx(float(ag.softmax(np.array([2.0, 1.0]))[0]), abs=0.1)
    assert float(ag.tanh(0.5)) == pytest.approx(np.tanh(0.5), rel=1e-15)
    assert float(ag.relu(-3.0)) == 0.0 and float(ag.relu(3.0)) == 3.0
    assert float(ag.leaky_relu(-2.0)) == pytest.approx(-0.02, rel=1e-15)
    assert float(ag.linear(-2.5)) == -2.5 and float(ag.linear_grad(7.0)) == 1.0


@settings(max_examples=60, deadline=None)
@given(z1=st.floats(-30, 30), z2=st.floats(-30, 30))
def test_two_logit_softmax_is_sigmoid_of_difference(ag, z1, z2):
    s = ag.softmax(np.array([z1, z2]))
    assert s[0] == pytest.approx(float(ag.sigmoid(z1 - z2)), rel=1e-12, abs=1e-300)
    assert float(ag.softmax(np.array([z1, 0.0]))[0]) == pytest.approx(float(ag.sigmoid(z1)), rel=1e-12, abs=1e-300)


@settings(max_examples=60, deadline=None)
@given(v=st.floats(-20, 20))
def test_tanh_is_a_rescaled_sigmoid(ag, v):
    assert float(ag.tanh(v)) == pytest.approx(2 * float(ag.sigmoid(2 * v)) - 1, abs=1e-15)


# -- conventions at kinks -------------------------------------------------------------------------


def test_relu_kink(ag):
    assert float(ag.relu_grad(0.0)) == 0.0
    assert float(ag.relu_grad(1e-300)) == 1.0 and float(ag.relu_grad(-1e-300)) == 0.0


def test_leaky_relu_kink_default_and_custom_alpha(ag):
    assert float(ag.leaky_relu_grad(0.0)) == 0.01
    assert float(ag.leaky_relu_grad(0.0, alpha=0.2)) == 0.2
    assert float(ag.leaky_relu_grad(-5.0, alpha=0.2)) == 0.2 and float(ag.leaky_relu_grad(5.0, alpha=0.2)) == 1.0
    assert float(ag.leaky_relu(-5.0, alpha=0.2)) == pytest.approx(-1.0)


def test_prelu_kink(ag):
    assert float(ag.prelu_grad(0.0)) == 0.25
    assert float(ag.prelu_grad(0.0, alpha=0.5)) == 0.5


def test_elu_kink_follows_the_branch_that_holds_there(ag):
    # Piecewise((z, z > 0), (alpha (exp(z) - 1), True)): at 0 the second branch holds, slope alpha
    assert float(ag.elu_grad(0.0)) == 1.0
    assert float(ag.elu_grad(0.0, alpha=2.0)) == 2.0


def test_clipped_activations_at_their_kinks(ag):
    # Max/Min pick the constant at a tie, so the derivative there is 0 (spec/activations.yaml)
    for name, kinks in (("relu6", (0.0, 6.0)), ("hard_tanh", (-1.0, 1.0)), ("hard_sigmoid", (-3.0, 3.0))):
        grad = getattr(ag, name + "_grad")
        assert kinks_of(_forward_expr(name), Z) == list(kinks), name  # the kink finder itself
        for k in kinks:
            assert float(grad(k)) == 0.0, (name, k)
        inside = (kinks[0] + kinks[1]) / 2
        assert float(grad(inside)) == pytest.approx(float(central_difference(getattr(ag, name), inside)))


def _doc_conventions(doc):
    """(point, value) from the docstring's 'Convention at kinks' list."""
    out = []
    if "Convention at kinks" not in doc:
        return out
    section = doc.split("Convention at kinks", 1)[1].split("Args:", 1)[0]
    for line in section.splitlines():
        line = line.strip()
        if line.startswith("- z = ") and "derivative taken as" in line:
            point, value = line[len("- z = ") :].split(": derivative taken as")
            out.append((float(Fraction(point.strip())), float(Fraction(value.strip()))))
    return out


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_kink_conventions_hold_as_documented(ag, name):
    """What the docstring states at each kink is what the function returns, and each kink is found."""
    grad = getattr(ag, name + "_grad")
    stated = _doc_conventions(grad.__doc__)
    kinks = kinks_of(_forward_expr(name), Z)
    for point, value in stated:
        assert float(grad(point)) == pytest.approx(value, rel=1e-4, abs=1e-12), (name, point)
    # a kink where the derivative jumps must have its convention stated
    f = getattr(ag, name)
    for k in kinks:
        h = 1e-7
        left, right = (f(k) - f(k - h)) / h, (f(k + h) - f(k)) / h
        if abs(left - right) > 1e-3:
            assert any(abs(p - k) < 1e-9 for p, _ in stated), f"{name}: no convention stated at z = {k}"
            # the convention is one of the one-sided derivatives
            assert min(abs(grad(k) - left), abs(grad(k) - right)) < 1e-5, (name, k)


# -- gradient from the output ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "sigmoid",
        "tanh",
        "relu",
        "softplus",
        "elu",
        "log_sigmoid",
        "linear",
    ],
)
def test_grad_from_output_exists_where_issue_3_requires(ag, name):
    assert callable(getattr(ag, name + "_grad_from_output", None))


@pytest.mark.parametrize("name", FROM_OUTPUT)
def test_grad_from_output_agrees_with_grad(ag, name):
    f, grad, from_out = getattr(ag, name), getattr(ag, name + "_grad"), getattr(ag, name + "_grad_from_output")
    params = _defaults(name)
    z = np.linspace(-6.0, 6.0, 121)  # includes 0, where relu's output form must give relu_grad(0) = 0
    np.testing.assert_allclose(from_out(f(z), **params) if params else from_out(f(z)), grad(z), rtol=1e-8, atol=1e-12)


def test_sigmoid_output_form_states_its_accuracy_loss(ag):
    doc = ag.sigmoid_grad_from_output.__doc__
    assert "sigmoid_grad" in doc.replace("sigmoid_grad_from_output", "")  # points to the accurate input form
    z = np.array([40.0])
    assert float(ag.sigmoid_grad_from_output(ag.sigmoid(z))[0]) == 0.0  # y rounds to 1.0: the loss it warns about
    assert float(ag.sigmoid_grad(z)[0]) == pytest.approx(np.exp(-40.0), rel=1e-12)


@pytest.mark.parametrize("name", FROM_OUTPUT)
def test_grad_from_output_preserves_dtype_and_shape(ag, name):
    from_out = getattr(ag, name + "_grad_from_output")
    y = getattr(ag, name)(np.array([[0.5, -0.25], [1.0, 2.0]], dtype=np.float32))
    out = from_out(y)
    assert out.dtype == np.float32 and out.shape == (2, 2)


# -- dtype and shape ------------------------------------------------------------------------------


def _elementwise_callables():
    out = []
    for name in ELEMENTWISE:
        a = ACTIVATIONS[name]
        for kind, fn in a["functions"].items():
            if kind != "grad_from_output":
                out.append(fn["name"])
    return sorted(out)


@pytest.mark.parametrize("fname", _elementwise_callables())
def test_dtype_and_shape(ag, fname):
    fn = getattr(ag, fname)
    x32 = np.array([[-1.5, 0.25, 2.0], [0.5, -0.75, 3.0]], dtype=np.float32)
    out = fn(x32)
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(out, fn(x32.astype(np.float64)), rtol=2e-6, atol=1e-6)
    out = fn(np.float32(0.5))
    assert np.asarray(out).dtype == np.float32 and np.shape(out) == ()
    out = fn(np.array(0.5))
    assert out.dtype == np.float64 and out.shape == ()
    out = fn(0.5)
    assert np.asarray(out).dtype == np.float64 and np.shape(out) == ()
    out = fn(np.array([-2, 0, 3]))
    assert out.dtype == np.float64 and out.shape == (3,)
    np.testing.assert_array_equal(out, fn(np.array([-2.0, 0.0, 3.0])))
    out = fn([-1.0, 1.0])
    assert out.shape == (2,)
    out = fn(np.zeros((0, 3)))
    assert out.shape == (0, 3)


@pytest.mark.parametrize("fname", _elementwise_callables())
def test_float32_is_computed_in_float32(ag, fname):
    """A float32 input is computed in float32 (double-double terms in float64), as the docstring
    says: close to the float64 result here (the mpmath measurement in tests/test_accuracy.py holds
    it to 4 float32 ulps); float16 is computed in float32 and rounded to float16."""
    fn = getattr(ag, fname)
    assert "float32 in, float32 out, computed in float32" in fn.__doc__
    x32 = np.linspace(-30, 30, 241, dtype=np.float32)
    wide = fn(x32.astype(np.float64))
    out = fn(x32)
    assert out.dtype == np.float32
    # 8 float32 ulps of the value, or of the function's scale at a zero crossing
    scale = float(np.nanmax(np.abs(np.where(np.isfinite(wide), wide, np.nan))))
    np.testing.assert_allclose(out, wide, rtol=2 ** -20, atol=2 ** -20 * scale)
    half = fn(x32.astype(np.float16))
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, out.astype(np.float16), rtol=2 ** -9, atol=2 ** -9 * scale)


def test_wide_values_stand_in_for_double_double_in_float32(ag):
    """The double-double helpers on float32 data compute in float64 ("wide" values): exp of a
    float32 polynomial exponent is then right to float32's precision where float32 arithmetic
    would amplify the exponent's rounding by |t| (gelu_tanh at z = -9: t = -15.2)."""
    import importlib

    rt = importlib.import_module(ag.__name__ + "._runtime")
    z = np.array([-9.0, -3.0, 2.5], dtype=np.float32)
    t = rt._dd_mul((1.5957691216057308, -9.96930880911092e-17), rt._dd_add((z, 0.0), rt._dd_mul((0.044715, 2.1960211427085595e-18), rt._dd_pow((z, 0.0), 3))))
    assert t[1] is rt._WIDE and t[0].dtype == np.float64
    z64 = z.astype(np.float64)
    np.testing.assert_allclose(t[0], 1.5957691216057308 * (z64 + 0.044715 * z64 ** 3), rtol=1e-15)
    # a power of z that overflowed float32 times an underflowed exponential is 0, not inf * 0
    with np.errstate(all="ignore"):  # as in the generated bodies
        assert rt._mul_exp_dd(np.array([-np.inf], dtype=np.float32), (np.array([-1e300]), rt._WIDE))[0] == 0.0


def test_double_double_arithmetic_is_exact_to_about_1e_32(ag):
    """The runtime's double-double operations (used by compensated_exponent) against exact
    rational arithmetic: relative error below 2**-100 for products, sums and powers."""
    import importlib

    rt = importlib.import_module("actgen_numpy._runtime")
    rng = np.random.default_rng(7)
    xs = rng.normal(size=200) * 10.0 ** rng.integers(-5, 5, size=200)
    ys = rng.normal(size=200) * 10.0 ** rng.integers(-5, 5, size=200)
    c = (1.5957691216057308, -9.96930880911092e-17)
    for x, y in zip(xs, ys):
        exact_c = Fraction(c[0]) + Fraction(c[1])
        for (hi, lo), exact in (
            (rt._dd_mul(c, (x, 0.0)), exact_c * Fraction(x)),
            (rt._dd_add(rt._dd_mul(c, (x, 0.0)), (y, 0.0)), exact_c * Fraction(x) + Fraction(y)),
            (rt._dd_pow((x, 0.0), 3), Fraction(x) ** 3),
            (rt._dd_abs(rt._dd_mul((x, 0.0), (y, 0.0))), abs(Fraction(x) * Fraction(y))),
        ):
            got = Fraction(float(hi)) + Fraction(float(lo))
            assert abs(got - exact) <= abs(exact) * Fraction(1, 2**100)


def test_blockwise_evaluation_is_bitwise_the_whole_array_evaluation(ag):
    """Bodies of many passes run block by block (_blockwise); the result is the same bits as one
    evaluation over the whole array, for any layout, and array-valued parameters still broadcast."""
    import importlib

    rt = importlib.import_module("actgen_numpy._runtime")
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(70, 301)) * 8).T  # not contiguous, 21070 elements
    blocked = [n for n in dir(importlib.import_module("actgen_numpy.activations")) if n.startswith("_") and n.endswith("_block")]
    assert {"_silu_grad_block", "_mish_grad_block", "_gelu_tanh_grad_block"} <= set(blocked)
    acts = importlib.import_module("actgen_numpy.activations")
    saved = rt._BLOCK, acts._HELPER_BLOCK
    try:
        # the bodies with runtime helpers (double-double arithmetic, the erfcx table) run on the
        # smaller _HELPER_BLOCK, the others on _BLOCK
        import inspect

        assert "_HELPER_BLOCK)" in inspect.getsource(ag.gelu) and "_HELPER_BLOCK)" in inspect.getsource(ag.gelu_tanh_grad)
        assert "_HELPER_BLOCK" not in inspect.getsource(ag.silu_grad)
        rt._BLOCK = acts._HELPER_BLOCK = 10**9
        whole = {name: getattr(ag, name)(z) for name in ("silu_grad", "mish_grad", "gelu", "gelu_grad", "gelu_tanh_grad")}
        rt._BLOCK = acts._HELPER_BLOCK = 1000
        for name, value in whole.items():
            got = getattr(ag, name)(z)
            assert got.shape == z.shape and np.array_equal(got, value), name
        # the kernel writing its result straight into the output's block, or into a workspace
        # buffer copied there: the same bits
        flat = np.ascontiguousarray(z).reshape(-1)
        call = re.search(r"_blockwise\(_silu_grad_block, \(z,\), \(\), (\d+), (\d+)\)", inspect.getsource(ag.silu_grad))
        slots = int(call.group(1))
        probe = [np.empty(10) for _ in range(slots)]
        value = acts._silu_grad_block(flat[:10], probe)
        slot = next(i for i, w in enumerate(probe) if w is value)  # where the kernel leaves its result
        assert int(call.group(2)) == slot
        for result in (None, slot):
            got = rt._blockwise(acts._silu_grad_block, (flat,), (), slots, result)
            assert np.array_equal(got, whole["silu_grad"].reshape(-1)), result
        alpha = np.linspace(0.5, 2.0, 70)  # one alpha per column: not a scalar, so no blocks
        np.testing.assert_array_equal(ag.celu_grad_alpha(z, alpha=alpha), np.stack([ag.celu_grad_alpha(z[:, j], alpha=a) for j, a in enumerate(alpha)], axis=1))
    finally:
        rt._BLOCK, acts._HELPER_BLOCK = saved


def test_double_double_operations_in_place_give_the_bits_of_the_plain_formulas(ag):
    """The runtime's double-double products, sums and splits reuse their own temporaries (out=):
    against the plain formulas (Dekker's product, Knuth's two-sum, the renormalisation dropping an
    error term that overflowed), the same bits, on arrays with signed zeros, subnormals, huge and
    non-finite values, against constants, 0-d arrays and broadcast shapes."""
    import importlib

    rt = importlib.import_module("actgen_numpy._runtime")

    def split(a):
        scaled = 134217729.0 * a
        high = scaled - (scaled - a)
        return high, a - high

    def norm(s, e):
        e = np.where(np.isfinite(e), e, 0.0)
        high = s + e
        low = e - (high - s)
        return high, np.where(np.isfinite(low), low, 0.0)

    def mul(x, y):
        p = x[0] * y[0]
        ah, al = split(x[0])
        bh, bl = split(y[0])
        e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
        return norm(p, e + (x[0] * y[1] + x[1] * y[0]))

    def add(x, y):
        s = x[0] + y[0]
        v = s - x[0]
        e = (x[0] - (s - v)) + (y[0] - v)
        return norm(s, e + (x[1] + y[1]))

    def same(got, want):
        return all(np.array_equal(np.asarray(g), np.asarray(w), equal_nan=True) and np.array_equal(np.signbit(g), np.signbit(w)) for g, w in zip(got, want))

    rng = np.random.default_rng(11)
    a = np.concatenate([rng.normal(size=300) * 10.0 ** rng.integers(-300, 300, 300), [0.0, -0.0, 5e-324, -2e-308, 1e308, -1e300, np.inf, -np.inf, np.nan]])
    b = rng.permutation(a)
    low = a * 1e-17
    pairs = [((a, 0.0), (b, 0.0)), ((a, low), (b, 0.0)), ((a, 0.0), (b, b * 1e-17)), ((a, low), (b, low)),
             ((0.7071067811865476, 4.833646656726457e-17), (b, 0.0)), ((a, low), (-1.5957691216057308, 9.96930880911092e-17)),
             ((np.asarray(2.5), 0.0), (np.asarray(-3.0), 0.0)), ((a[:, None], 0.0), (b[None, :40], 0.0)),
             ((a, 0.0), (a, 0.0)), ((a, low), (a, low))]  # squares: the same array twice
    with np.errstate(all="ignore"):  # as in the generated bodies
        for x, y in pairs:
            assert same(rt._dd_mul(x, y), mul(x, y)), (x, y)
            assert same(rt._dd_add(x, y), add(x, y)), (x, y)
        assert same(rt._dd_split(a), split(a))
        assert same(rt._dd_pow((a, low), 3), mul(mul((a, low), (a, low)), (a, low)))
        assert same(rt._dd_pow((a, 0.0), 2), mul((a, 0.0), (a, 0.0)))
        # an error term that is not finite, with a low part that is not finite elsewhere
        s_, e_ = np.array([1.0, -0.0, 1e308, np.inf, 3.0]), np.array([np.inf, np.nan, 1e300, 1.0, -np.inf])
        assert same(rt._dd_norm(s_.copy(), e_.copy()), norm(s_, e_))


def test_filled_constants_are_shared_read_only_and_fall_back_to_the_scalar(ag):
    """The runtime's _filled (constant operands of minimum/maximum as arrays, for NumPy's SIMD
    loops): the value in the operand's shape, never writable, and the plain scalar for 0-d or
    large operands, so a body gives the same values either way."""
    import importlib

    rt = importlib.import_module("actgen_numpy._runtime")
    like = np.zeros((3, 5))
    six = rt._filled(6, like)
    assert six.shape == (3, 5) and six.dtype == np.float64 and np.all(six == 6.0) and not six.flags.writeable
    assert rt._filled(6, np.float64(2.0)) == 6 and rt._filled(0, np.zeros(rt._FILLED_SIZE + 1)) == 0
    z = np.array([-np.inf, -7.0, -0.0, 0.0, 3.0, 6.0, 9.0, np.inf, np.nan])
    for name in ("relu6", "hard_tanh", "hard_sigmoid", "silu_grad", "mish_grad", "elu"):
        fn = getattr(ag, name)
        with_arrays = fn(z)
        saved = rt._FILLED_SIZE
        try:
            rt._FILLED_SIZE = 0  # every constant operand a scalar
            np.testing.assert_array_equal(fn(z), with_arrays)
        finally:
            rt._FILLED_SIZE = saved


def test_select_copies_the_bits_of_the_chosen_branch(ag):
    """The runtime's _select (Piecewise branches chosen by bit masks instead of np.where): the
    same bits as np.where for every float64 value (NaN payloads, infinities, signed zeros,
    subnormals), scalar or array values, any layout, with or without a scratch buffer."""
    import importlib

    rt = importlib.import_module("actgen_numpy._runtime")
    rng = np.random.default_rng(11)
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, 1.0])
    payload = np.array([0x7FF8_0000_0000_1234], dtype=np.int64).view(np.float64)
    a = np.concatenate([special, payload, rng.normal(size=53)]).reshape(8, 8)
    b = np.concatenate([rng.normal(size=53), payload, special[::-1]]).reshape(8, 8)
    cond = rng.random((8, 8)) < 0.5
    for value in (a, a.T, -0.0, np.nan, np.float64(3.5)):
        for scratch in (None, np.empty((8, 8))):
            expect = np.where(cond, value, b)
            out = b.copy()
            got = rt._select(cond, value, out, scratch)
            assert got is out
            np.testing.assert_array_equal(got.view(np.int64), expect.view(np.int64))
    strided = b.copy().T  # not contiguous
    rt._select(cond, a, strided)
    np.testing.assert_array_equal(strided.view(np.int64), np.where(cond, a, b.T).view(np.int64))
    zero_d = np.asarray(2.0)
    assert rt._select(np.True_, -0.0, zero_d).view(np.int64) == np.float64(-0.0).view(np.int64)


@pytest.mark.parametrize("name", ["elu", "selu", "celu", "leaky_relu", "prelu", "elu_grad", "relu6_grad", "hard_sigmoid_grad", "gelu"])
def test_branch_selection_keeps_every_special_value(ag, name):
    """Functions whose branches are chosen by _select: the value at NaN, infinities, signed zeros
    and subnormals is the chosen branch's value, bit for bit, as np.where would give."""
    fn = getattr(ag, name)
    z = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, -5e-324, 2.0, -2.0, 1e300, -1e300])
    got = fn(z)
    each = np.array([fn(np.array([v]))[0] for v in z])  # one element at a time: no neighbour matters
    np.testing.assert_array_equal(got.view(np.int64), each.view(np.int64))
    assert not np.isnan(got[1:]).any()
    if not name.endswith("_grad"):
        # f(-0.0) = -0.0 and f(0.0) = 0.0 for these forwards: the zero's sign comes through the choice
        assert np.isnan(got[0]) and got[1] == np.inf and np.signbit(got[4]) and not np.signbit(got[3])


@pytest.mark.parametrize("a, b", [(1, 0), (0, -1), (1, -2), (2, -1)])
def test_mul_exp_shared_repairs_the_subnormal_tail(ag, a, b):
    """The runtime's _mul_exp_shared (u exp(s) from a shared x = exp(s), s = a min(t, 0) +
    b max(t, 0)): the same bits as _mul_exp(u, s) everywhere, subnormal tails, infinities and NaN
    included, written into ``out`` (x's own buffer) or a new array."""
    import importlib

    rt = importlib.import_module("actgen_numpy._runtime")
    t = np.concatenate([np.linspace(-760.0, 760.0, 4001), [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324]])
    u = t.copy()
    s = (a * np.minimum(t, 0.0) if a else 0.0) + (b * np.maximum(t, 0.0) if b else 0.0)
    with np.errstate(all="ignore"):
        expect = rt._mul_exp(u, s)
        x = np.exp(s)
        got_new = rt._mul_exp_shared(u, x.copy(), t, a, b)
        got_out = rt._mul_exp_shared(u, x, t, a, b, out=x)
    assert got_out is x
    for got in (got_new, got_out):
        np.testing.assert_array_equal(got.view(np.int64), expect.view(np.int64))
    assert rt._mul_exp_shared(np.zeros(0), np.zeros(0), np.zeros(0), a, b).shape == (0,)


def test_the_identity_map_returns_a_new_array(ag):
    x = np.array([1.0, -2.0])
    out = ag.linear(x)
    assert out is not x and not np.shares_memory(out, x)
    out[0] = 5.0
    assert x[0] == 1.0


def test_float32_overflow_on_rounding_is_silent_inf(ag):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ag.selu(np.float32(3.3e38)) == np.float32(np.inf)


def test_constant_branch_keeps_nan_and_the_convention(ag):
    # elu_grad is computed as alpha exp(min(z, 0)) with 1 copied where z > 0
    out = ag.elu_grad(np.array([np.nan, -1.0, 0.0, 1.0, 800.0]))
    assert np.isnan(out[0])
    np.testing.assert_allclose(out[1:], [np.exp(-1.0), 1.0, 1.0, 1.0], rtol=1e-15)


# -- class-axis functions -------------------------------------------------------------------------


def _jacobian_fd(f, z, h=1e-6):
    """J[..., i, k] = d f_i / d z_k by central differences along the last axis."""
    K = z.shape[-1]
    cols = []
    for k in range(K):
        e = np.zeros(K)
        e[k] = h
        cols.append((f(z + e) - f(z - e)) / (2 * h))
    return np.stack(cols, axis=-1)


RNG = np.random.default_rng(1234)
BATCH_Z = RNG.normal(size=(2, 3, 4)) * 3


@pytest.mark.parametrize("name", VECTOR)
def test_vector_jacobian_matches_finite_differences(ag, name):
    f, jac = getattr(ag, name), getattr(ag, name + "_jacobian")
    for z in (np.array([2.0, 1.0]), np.array([0.3, -1.2, 2.5]), BATCH_Z):
        J = jac(z)
        assert J.shape == z.shape + (z.shape[-1],)
        np.testing.assert_allclose(J, _jacobian_fd(f, z), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", VECTOR)
def test_vector_vjp_is_g_times_jacobian(ag, name):
    vjp, jac = getattr(ag, name + "_vjp"), getattr(ag, name + "_jacobian")
    g = RNG.normal(size=BATCH_Z.shape)
    want = np.einsum("...i,...ik->...k", g, jac(BATCH_Z))
    np.testing.assert_allclose(vjp(BATCH_Z, g), want, rtol=1e-12, atol=1e-14)
    z = np.array([2.0, 1.0, 0.5])
    for gi in np.eye(3):
        np.testing.assert_allclose(vjp(z, gi), gi @ jac(z), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", VECTOR)
def test_vector_functions_along_another_axis(ag, name):
    f, vjp = getattr(ag, name), getattr(ag, name + "_vjp")
    z = RNG.normal(size=(4, 3))
    g = RNG.normal(size=(4, 3))
    np.testing.assert_allclose(f(z, axis=0), f(z.T).T, rtol=1e-14)
    np.testing.assert_allclose(f(z, axis=0), f(z, axis=-2), rtol=1e-14)
    np.testing.assert_allclose(vjp(z, g, axis=0), vjp(z.T, g.T).T, rtol=1e-12, atol=1e-15)
    assert not np.allclose(f(z, axis=0), f(z))


@pytest.mark.parametrize("name", VECTOR)
def test_vector_dtype_and_shape(ag, name):
    f, vjp, jac = getattr(ag, name), getattr(ag, name + "_vjp"), getattr(ag, name + "_jacobian")
    z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=np.float32)
    assert f(z).dtype == np.float32 and f(z).shape == (2, 3)
    assert vjp(z, np.ones_like(z)).dtype == np.float32 and vjp(z, np.ones_like(z)).shape == (2, 3)
    assert jac(z).dtype == np.float32 and jac(z).shape == (2, 3, 3)
    assert f(np.array([1, 2, 3])).dtype == np.float64


def test_softmax_against_direct_formula(ag):
    z = RNG.normal(size=(5, 4)) * 4
    e = np.exp(z)
    np.testing.assert_allclose(ag.softmax(z), e / e.sum(axis=-1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(ag.softmax(z).sum(axis=-1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(ag.log_softmax(z), z - np.log(e.sum(axis=-1, keepdims=True)), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ag.log_softmax(z), np.log(ag.softmax(z)), rtol=1e-12)


def test_softmax_vjp_formula(ag):
    z, g = np.array([0.5, -1.0, 2.0, 0.0]), np.array([1.0, -2.0, 0.5, 3.0])
    s = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(ag.softmax_vjp(z, g), s * (g - g @ s), rtol=1e-13)
    J = np.diag(s) - np.outer(s, s)
    np.testing.assert_allclose(ag.softmax_jacobian(z), J, rtol=1e-13, atol=1e-16)


def test_softmax_large_logits(ag):
    big = np.array([1000.0, 999.0])
    np.testing.assert_allclose(ag.softmax(big), ag.softmax(np.array([1.0, 0.0])), rtol=1e-15)
    np.testing.assert_allclose(ag.softmax_vjp(big, np.array([1.0, 0.0])), ag.softmax_vjp(np.array([1.0, 0.0]), np.array([1.0, 0.0])), rtol=1e-12)
    np.testing.assert_allclose(ag.log_softmax_jacobian(big), ag.log_softmax_jacobian(np.array([1.0, 0.0])), rtol=1e-12)


def _softmax_ulps(got, z):
    """Largest error of softmax values ``got`` (rows of z) in ulps of the mpmath reference."""
    worst = 0.0
    with mpmath.workprec(200):
        for row, out in zip(np.atleast_2d(z), np.atleast_2d(got)):
            e = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
            total = mpmath.fsum(e)
            for ek, o in zip(e, out):
                ref = float(ek / total)
                worst = max(worst, float(abs(mpmath.mpf(float(o)) - ek / total)) / float(np.spacing(ref)))
    return worst


def test_softmax_paths_against_mpmath(ag):
    """Both bodies of softmax (max shift M = 0 where every |z| <= 64, M = max z elsewhere) within
    a few ulps of mpmath, for elements far below the row's largest too. The unshifted body is
    the more accurate: exp(z - M) also carries the rounding of z - M, amplified by |z - M|."""
    rng = np.random.default_rng(21)
    z = rng.normal(0.0, 12.0, (30, 40)).clip(-63.0, 63.0)
    assert _softmax_ulps(ag.softmax(z), z) <= 4
    shifted = z + 100.0  # the same rows past the bound: the shifted body, same true values
    assert _softmax_ulps(ag.softmax(shifted), shifted) <= 2 + 2 * 130  # z - M rounds: |z - M| / 2 ulp
    np.testing.assert_allclose(ag.softmax(shifted), ag.softmax(z), rtol=1e-12, atol=1e-300)


def test_unshifted_body_is_only_taken_within_its_bound(ag):
    """The runtime's _within decides the unshifted exp(z) in _exp_shifted: finite and |z| <= 64
    everywhere."""
    import importlib

    rt = importlib.import_module("actgen_numpy._runtime")
    assert rt._within(np.array([-64.0, 64.0]), 64.0)
    for bad in ([64.00000000000001], [-64.5, 0.0], [np.nan, 1.0], [np.inf], []):
        assert not rt._within(np.array(bad), 64.0), bad
    edge = np.array([[64.0, -64.0, 0.0], [63.5, 0.0, -3.0]])  # unshifted, at the bound
    past = np.array([[64.0, -64.0, 0.0], [np.nextafter(64.0, 65.0), 0.0, -3.0]])  # shifted
    for z in (edge, past, edge[:1]):
        assert _softmax_ulps(ag.softmax(z), z) <= 4
    assert np.isnan(ag.softmax(np.array([np.nan, 1.0]))).all()
    np.testing.assert_array_equal(ag.softmax(np.array([800.0, 0.0])), [1.0, 0.0])


def test_log_softmax_large_logits(ag):
    with np.errstate(all="ignore"):
        got = ag.log_softmax(np.array([1000.0, 999.0]))
    np.testing.assert_allclose(got, ag.log_softmax(np.array([1.0, 0.0])), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", VECTOR)
def test_jacobian_of_a_scalar_is_a_clear_error(ag, name):
    with pytest.raises(ValueError, match="class axis"):
        getattr(ag, f"{name}_jacobian")(1.5)


def test_softmax_jacobian_large_logits(ag):
    with np.errstate(all="ignore"):
        got = ag.softmax_jacobian(np.array([1000.0, 999.0]))
    np.testing.assert_allclose(got, ag.softmax_jacobian(np.array([1.0, 0.0])), rtol=1e-12)


# -- docstrings -----------------------------------------------------------------------------------


def test_every_public_function_has_a_latex_docstring(ag):
    for name in ag.__all__:
        doc = getattr(ag, name).__doc__
        assert doc and doc.strip(), name
        assert ".. math::" in doc, f"{name}: no math block"
        math = doc.split(".. math::", 1)[1].strip().split("\n\n", 1)[0]
        assert "\\" in math or "=" in math, f"{name}: math block is not LaTeX: {math!r}"
        assert ">>>" in doc, f"{name}: no example"


def test_doctests_of_the_generated_package(ag):
    import doctest
    import importlib

    failed = attempted = 0
    for module in ("activations", "losses", "heads"):
        mod = importlib.import_module(f"{ag.__name__}.{module}")
        result = doctest.testmod(mod, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
        failed += result.failed
        attempted += result.attempted
    assert attempted >= len(ag.__all__) - 5
    assert failed == 0


def test_constant_branch_chosen_arithmetically_is_exact(ag):
    """elu_grad's constant branch is chosen by a 0/1 indicator (branch (1 - h) + h), not a where():
    the same bits as the select, for random signs, NaN, infinities and signed zeros."""
    rng = np.random.default_rng(11)
    z = np.concatenate([rng.normal(size=300000) * 4, [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, -1e-300, -800.0]])
    for alpha in (1.0, 0.3, 2.5):
        expected = np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0)))
        np.testing.assert_array_equal(ag.elu_grad(z, alpha=alpha), expected)
