"""The generated JAX package (generated/actgen_jax) against finite differences, the NumPy package,
optax-style definitions written with jax.nn, and the mpmath reference.

Functions are discovered from generated/catalog.json, so a new entry of the spec is tested
automatically: jax.test_util.check_grads to second order in forward and reverse mode in float64
on points including the tails and both sides of every kink (with parameters that are traced and
differentiated), the derived rules being the ones JAX uses, jit, vmap, jacfwd and jacrev, accuracy
in ulps against mpmath in float64 and in float32 computed in float32, shapes, dtypes, losses and
the fused heads in optax's conventions with integer labels.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

jax = pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]' to test actgen_jax")
jax.config.update("jax_enable_x64", True)  # the tests' choice; the generated package never sets it
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import GENERATED, accuracy_names, domain_mask, into_domain, kinks_of, load_catalog, parse  # noqa: E402

from actgen import accuracy as A  # noqa: E402
from actgen.model import load_spec  # noqa: E402
from actgen.pipeline import derive_all  # noqa: E402

CATALOG = load_catalog()
ACTIVATIONS = {a["name"]: a for a in CATALOG["activations"]}
ELEMENTWISE = sorted(n for n, a in ACTIVATIONS.items() if not a["vector"] and not a["split"])  # split activations: tests/test_split.py
VECTOR = sorted(n for n, a in ACTIVATIONS.items() if a["vector"] and not a["reduces"])  # row reductions: tests/test_reductions.py
LOSSES = {l["name"]: l for l in CATALOG["losses"] if not l["inputs"]}  # losses with further inputs: tests/test_multi_input.py
HEADS = {h["name"]: h for h in CATALOG["heads"]}
Z = sp.Symbol("z", real=True)
TARGET = A.TARGET_ULP

# Measured limitations of the JAX package, kept visible (strict xfail: a fix makes these fail).
# XLA on CPU runs with denormals flushed to zero (FTZ/DAZ), a platform fact with no switch a package
# could use: a subnormal input compares equal to 0 (z = 5e-324 takes the z <= 0 branch), and a
# subnormal value becomes 0. The printer keeps products with an exponential in the normal range
# (_mul_exp, number factors folded into its u); what remains is a subnormal term of a sum whose
# result is normal. Not a property of the generated code: the same bodies pass in NumPy and PyTorch.
_DAZ = "XLA on CPU treats a subnormal input (5e-324, 1e-310) as 0 (denormals-are-zero): the kink's other branch is taken"
_FTZ = "XLA on CPU flushes a subnormal term to zero where the sum it belongs to is normal: {}"
KNOWN: dict = {
    **{(f"{n}_grad", "float64"): _DAZ for n in ("leaky_relu", "prelu", "relu", "relu6", "selu")},
    **{(f"{n}_grad2", "float64"): _DAZ for n in ("celu", "elu", "selu")},
    ("mish_grad", "float64"): _FTZ.format("the shared exp(-|z|) is subnormal at z = -711.5 (measured)"),
    ("mish_grad", "float32"): _FTZ.format("the shared exp(-|z|) is subnormal at z = -89.03 (measured)"),
    ("gelu_grad", "float64"): _FTZ.format("Phi(z) next to z phi(z) at z = -37.7 (measured)"),
    ("gelu_grad", "float32"): _FTZ.format("Phi(z) next to z phi(z) at z = -13.3 (measured)"),
    ("gelu_tanh_grad", "float64"): "4.42 term-ulp at z = -7 (measured): the torch package's 3.76 plus one ulp of XLA's exp (jit and eager "
                                   "agree with each other and with torch to 1 ulp at every point checked)",
    ("gelu_tanh_grad2", "float64"): "4.27 term-ulp at z = 6.3 (measured): sums of the derived second derivative's terms (torch: 3.82, "
                                    "one ulp of XLA's exp apart)",
    ("gelu_tanh_grad2", "float32"): "4.4 term-ulp at z = -2.7 (measured, as in the torch package): float32 sums of the second derivative's terms",
    ("mish_grad2", "float64"): "4.39 term-ulp at z = 17.1 (measured): sums of several rounded exp-rational terms, as in the NumPy and torch packages",
    ("softsign_grad2", "float64"): _DAZ,
    **{(f"threshold_{g}", "float64"): _DAZ for g in ("grad", "grad_value")},
    # a subnormal input at the open end 0 of the domain is read as 0 itself: log(0) = -inf (measured: inf ulp at
    # z = 5e-324 for logit, z = -1e-310 for log1mexp; the NumPy and torch packages are within 4 ulp there)
    **{(f"{n}{g}", d): _DAZ + "; at the domain's end 0 that is an infinite value" for n in ("logit", "log1mexp")
       for g in ("", "_grad", "_grad2") for d in ("float64", "float32")},
    ("squareplus_grad", "float64"): _FTZ.format("z = 1e308 (1/hypot(z, 2) is subnormal: 2.25e15 ulp)"),
    ("squareplus_grad", "float32"): _FTZ.format("z = 3.4e38 (1/hypot(z, 2) is subnormal: 4.19e6 ulp)"),
    ("squareplus_grad2", "float64"): _FTZ.format("z = 4.26e102 (1/hypot(z, 2)**3 is subnormal where b/2 times it is normal: 5.25e15 ulp)"),
    ("softsign_grad2", "float32"): "4.19 ulp at z = -31.9 (measured, as in the torch package): -2 sign(z)/(1 + |z|)**3 in float32 triples the rounding of 1 + |z|",
    # losses at a subnormal prediction: log(y_hat) of a y_hat read as 0 is -inf (the NumPy and torch packages are within 4 ulp there)
    **{(f"{n}(y={y})", d): _DAZ + "; log(0) = -inf is an infinite loss" for n, ys in (("bce", ("0.3", "1")), ("focal", ("0.3", "1")), ("focal_balanced", ("0.3", "1")),
                                                                                   ("kl_div", ("0.5", "2")), ("poisson_nll", ("2",)))
       for y in ys for d in ("float64", "float32")},
    **{("cce(y_hat, 0.25, 0.5; y=1, 0, 0)", d): _DAZ + "; log(0) = -inf is an infinite loss" for d in ("float64", "float32")},
    ("mape(y=0)", "float64"): _DAZ + " (measured: 4.8e15 ulp at y_hat = -1e-310)",
    ("poisson_nll_log(y=2)", "float32"): "NaN at y_hat = 5.6e37 (measured, as in the NumPy and torch packages): exp(y_hat) and y y_hat both overflow (inf - inf), where the true value is beyond the format's range",
    # class-axis functions next to the underflow threshold: exp(-708.5) = 2.0e-308 is subnormal and flushed
    ("log_softmax[0](z, 0, 0)", "float64"): _FTZ.format("log1p(2 exp(-708.5)) with exp(-708.5) subnormal (measured: 8.1e15 ulp at z = 708.5)"),
    **{(f"{fn}_vjp[{c}](z, {a})", "float64"): _FTZ.format("a subnormal exponential of the class sum (measured: 5.5e15 to 6.1e15 ulp at |z| = 706.5 to 709)")
       for fn, c, a in (("softmax", 0, "0, 0"), ("softmax", 1, "0, 0"), ("softmax", 0, "2, -10000"), ("softmax", 1, "2, -10000"), ("softmin", 0, "0, 0"), ("softmin", 1, "0, 0"))},
    ("softmax_vjp[0](z, 2, -10000)", "float32"): _FTZ.format("a subnormal exponential of the class sum (measured: 2.9e6 ulp at z = 89.03)"),
}


@pytest.fixture(scope="module")
def jx():
    if str(GENERATED) not in sys.path:
        sys.path.insert(0, str(GENERATED))
    return importlib.import_module(CATALOG["packages"]["jax"])


def _params(name, shift=0.1):
    return {p["name"]: jnp.asarray(p["default"] + shift, dtype=jnp.float64) for p in ACTIVATIONS[name]["params"]}


def _points(name):
    """Tails, ordinary points, and both sides of every kink (1e-3 away: check_grads' eps is 1e-4)."""
    expr = parse(ACTIVATIONS[name]["functions"]["forward"]["sympy"], {"z": Z, **{p["name"]: sp.Symbol(p["name"], positive=True) for p in ACTIVATIONS[name]["params"]}})
    subs = {sp.Symbol(p["name"], positive=True): sp.Float(p["default"] + 0.1) for p in ACTIVATIONS[name]["params"]}
    kinks = kinks_of(expr, Z, subs)
    base = [-700.0, -30.0, -3.1, -1.3, -0.4, 0.3, 0.7, 1.6, 2.9, 30.0, 700.0]
    points = np.array(sorted(set(base + [k - 1e-3 for k in kinks] + [k + 1e-3 for k in kinks])))
    domain = ACTIVATIONS[name]["domain"]
    if domain != "real":  # the base points mapped into the domain, 0.05 clear of its ends (where
        # check_grads' second-order differences with eps = 1e-4 lose 2.6e-5 relative on logit at 0.016)
        points = np.unique(into_domain(domain, points))
        points = points[domain_mask(domain, points, margin=0.05)]
    return jnp.asarray(points, dtype=jnp.float64)


def _with_params(jx, name):
    """f(z, *params) with every parameter a positional (traced, differentiated) argument."""
    fn, params = getattr(jx, name), _params(name)
    return (lambda z, *ps: fn(z, **dict(zip(params, ps)))), tuple(params.values())


def test_every_catalogued_function_is_in_the_jax_package(jx):
    wanted = [fn["name"] for a in CATALOG["activations"] for kind, fn in a["functions"].items() if kind != "grad_from_output"]
    wanted += [l["functions"]["loss"]["name"] for l in CATALOG["losses"]] + [h["functions"]["head"]["name"] for h in CATALOG["heads"]]
    # optax's names for the heads, from each head's activation
    wanted += ["sigmoid_binary_cross_entropy", "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels"]
    missing = [name for name in wanted if name not in jx.__all__ or not callable(getattr(jx, name))]
    assert not missing
    assert CATALOG["packages"] == {"numpy": "actgen_numpy", "torch": "actgen_torch", "jax": "actgen_jax"}


def test_the_package_leaves_x64_alone_and_its_doctests_pass_without_it():
    """In a process of its own: x64 stays off (JAX's default), and every docstring example runs in
    float32 there (Python ints beyond int32 in a body would raise OverflowError)."""
    import subprocess

    code = ("import doctest, importlib, jax; import actgen_jax as a, jax.numpy as jnp; "
            "assert not jax.config.jax_enable_x64; assert a.gelu(jnp.ones(3)).dtype == jnp.float32; "
            "r = [doctest.testmod(importlib.import_module('actgen_jax.' + m), extraglobs={'jnp': jnp}, optionflags=doctest.NORMALIZE_WHITESPACE) "
            "for m in ('activations', 'losses', 'heads')]; "
            "assert not jax.config.jax_enable_x64; print(sum(t.failed for t in r), sum(t.attempted for t in r))")
    out = subprocess.run([sys.executable, "-c", code], cwd=GENERATED, capture_output=True, text=True, timeout=300)
    failed, attempted = out.stdout.split()[-2:] if out.stdout.strip() else ("?", "?")
    assert failed == "0" and int(attempted) > 0, out.stdout[-3000:] + out.stderr[-3000:]


# -- derivatives -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_check_grads_to_second_order(jx, name):
    """First and second derivatives in forward and reverse mode, through the derived rules,
    against finite differences, with every parameter a traced argument."""
    f, params = _with_params(jx, name)
    check_grads(f, (_points(name), *params), order=2, modes=["fwd", "rev"])


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_jax_uses_the_derived_rules(jx, name):
    """grad of f is f_grad and grad of f_grad is f_grad2, exactly (not JAX's differentiation of the
    formula); a parameter's tangent contributes f_grad_<parameter>."""
    z = jnp.linspace(-6, 6, 97, dtype=jnp.float64)
    fn, grad, grad2 = getattr(jx, name), getattr(jx, f"{name}_grad"), getattr(jx, f"{name}_grad2")
    g1 = jax.grad(lambda x: fn(x).sum())
    np.testing.assert_array_equal(g1(z), grad(z))
    np.testing.assert_array_equal(jax.grad(lambda x: g1(x).sum())(z), grad2(z))
    np.testing.assert_array_equal(jax.jvp(fn, (z,), (jnp.ones_like(z),))[1], grad(z))
    for p in ACTIVATIONS[name]["params"]:
        a = jnp.asarray(p["default"] + 0.1)
        _, tangent = jax.jvp(lambda a: fn(z, **{p["name"]: a}), (a,), (jnp.ones_like(a),))
        np.testing.assert_array_equal(tangent, getattr(jx, f"{name}_grad_{p['name']}")(z, **{p["name"]: a}))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_jit_vmap_jacfwd_jacrev(jx, name):
    z = into_domain(ACTIVATIONS[name]["domain"], jnp.linspace(-4, 4, 9, dtype=jnp.float64) + 0.0123)
    fn, grad = getattr(jx, name), getattr(jx, f"{name}_grad")
    np.testing.assert_allclose(jax.jit(fn)(z), fn(z), rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(fn)))(z), grad(z), rtol=1e-15, atol=1e-300)
    diagonal = jnp.diag(grad(z))
    np.testing.assert_allclose(jax.jacfwd(fn)(z), diagonal, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(jax.jacrev(fn)(z), diagonal, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(jax.jit(jax.hessian(lambda x: fn(x).sum()))(z), jnp.diag(getattr(jx, f"{name}_grad2")(z)), rtol=1e-15, atol=1e-300)


@pytest.mark.parametrize("name", VECTOR)
def test_class_axis_derivatives(jx, name):
    z = jax.random.normal(jax.random.PRNGKey(0), (3, 5), dtype=jnp.float64) * 3
    for axis in (-1, 0):
        check_grads(lambda x: getattr(jx, name)(x, axis=axis), (z,), order=2, modes=["fwd", "rev"])
    fn, vjp, jac = getattr(jx, name), getattr(jx, f"{name}_vjp"), getattr(jx, f"{name}_jacobian")
    g = jax.random.normal(jax.random.PRNGKey(1), (3, 5), dtype=jnp.float64)
    np.testing.assert_allclose(vjp(z, g), jnp.einsum("...i,...ik->...k", g, jac(z)), rtol=1e-13, atol=1e-15)
    # JAX's reverse mode (the transposed derived JVP) agrees with the derived VJP
    np.testing.assert_allclose(jax.vjp(fn, z)[1](g)[0], vjp(z, g), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(jax.vmap(jax.jacfwd(fn))(z), jac(z), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.jacrev(fn)))(z), jac(z), rtol=1e-13, atol=1e-15)


def test_class_axis_matches_jax_nn_and_is_stable(jx):
    z = jnp.asarray([[1e4, -1e4, 0.0], [2.0, 1.0, 0.5]], dtype=jnp.float32)
    np.testing.assert_allclose(jx.softmax(z), jax.nn.softmax(z), rtol=1e-6)
    np.testing.assert_allclose(jx.log_softmax(z), jax.nn.log_softmax(z), rtol=1e-6)
    assert jnp.isfinite(jx.log_softmax(z)).all()
    z64 = jnp.asarray([0.0, -700.0])
    assert float(jx.softmax(z64)[1]) == pytest.approx(np.exp(-700), rel=1e-14)


JAX_NN = {"squareplus": jax.nn.squareplus, "sparse_plus": jax.nn.sparse_plus, "hard_swish": jax.nn.hard_swish}


@pytest.mark.parametrize("name", sorted(JAX_NN))
def test_activations_match_jax_nn(jx, name):
    """jax.nn's functions of the same names and defaults (squareplus's b = 4), and their gradients
    away from kinks."""
    z = jnp.linspace(-7.3, 7.1, 203, dtype=jnp.float64)
    z = z[~np.asarray([abs(v - k) < 1e-3 for v in np.asarray(z) for k in (-3.0, -1.0, 1.0, 3.0)]).reshape(len(z), 4).any(axis=1)]
    np.testing.assert_allclose(getattr(jx, name)(z), JAX_NN[name](z), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(jax.vmap(jax.grad(getattr(jx, name)))(z), jax.vmap(jax.grad(JAX_NN[name]))(z), rtol=1e-12, atol=1e-300)


# -- accuracy in each dtype's own precision --------------------------------------------------------


@pytest.fixture(scope="module")
def jax_measurements(jx):
    derived = derive_all(load_spec(str(Path(__file__).resolve().parents[1] / "spec")))
    return {(m.name, m.dtype): m for m in A.measure_all(derived, jx, backend="jax")}


def _accuracy_cases():
    names = []
    for n in ELEMENTWISE:
        names += [n, f"{n}_grad", f"{n}_grad2"] + [f"{n}_grad_{p['name']}" for p in ACTIVATIONS[n]["params"]]
    for h, entry in HEADS.items():
        if "Sum(" not in entry["functions"]["head"]["sympy"]:
            names += [f"{h}(y=0)", f"{h}(y=1)"]
    # split activations, losses, class-axis losses and functions, their VJPs and row reductions
    names += accuracy_names(load_spec(str(Path(__file__).resolve().parents[1] / "spec")), "jax")
    return [(n, d) for n in names for d in ("float64", "float32")]


@pytest.mark.parametrize("name,dtype", _accuracy_cases())
def test_jax_accuracy(jax_measurements, name, dtype, request):
    """Within 4 ulp of mpmath in float64, and within 4 float32 ulps for float32 arrays computed in
    float32 (jitted, as users run them), on the accuracy grid (term-relative where terms cancel)."""
    if (name, dtype) in KNOWN:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN[(name, dtype)]))
    m = jax_measurements[(name, dtype)]
    assert m.max_term_ulp <= TARGET, f"{name} {dtype}: {m.max_term_ulp:.3g} ulp (term-relative) at {m.worst_term_input!r}; {m.max_ulp:.3g} ulp at {m.worst_input!r}"
    assert m.nonfinite == 0
    # as tests/test_accuracy.py: sigmoid_bce's -log(1 - sigmoid(z)) cancels beyond any precision for
    # |z| past a few thousand, 131 of 1683 points (reported, not hidden)
    assert m.skipped <= 0.10 * m.points, f"{name} {dtype}: the reference skipped {m.skipped} of {m.points} points"


# -- what XLA on CPU does to floating point, and the printer's and runtime's answers ---------------


def test_products_with_an_exponential_print_as_mul_exp():
    """A product with exp(t) is one _mul_exp (its other factors u, a denominator outside), and the
    number factors of a _mul_exp or _mul_exp_square join its u: no subnormal intermediate for XLA
    to flush where the product is normal. exp(t) alone (u = 1) stays as it is."""
    from actgen.backends.jax.printer import ActgenJaxPrinter
    from actgen.primitives import mul_exp, mul_exp_square

    p, alpha, s = ActgenJaxPrinter(), sp.Symbol("alpha", positive=True), sp.Symbol("s", positive=True)
    assert p.doprint(sp.Float(1.7580993408473768) * sp.exp(sp.Min(Z, 0))) == "_mul_exp(1.7580993408473768, jnp.minimum(z, 0.0))"
    assert p.doprint(alpha * sp.exp(Z) / s) == "_mul_exp(alpha, z)/s"
    assert p.doprint(sp.exp(Z) / s) == "jnp.exp(z)/s"
    assert p.doprint(-2 * mul_exp_square(Z, Z, -1)) == "_mul_exp_square(-2*z, z, -1)"
    assert p.doprint(2 * mul_exp(Z, -sp.Abs(Z)) / s) == "_mul_exp(2*z, -jnp.abs(z))/s"


def test_subnormal_intermediates_do_not_reach_normal_results(jx, ag):
    """XLA on CPU flushes subnormals to zero: selu_grad at -708.5 (exp(z) subnormal, 1.76 exp(z)
    normal) and gaussian_grad in float32 at -9.5 (z exp(-z**2) subnormal, twice it normal) were 0."""
    z = np.asarray([-708.5, -708.0])
    np.testing.assert_allclose(jax.jit(jx.selu_grad)(jnp.asarray(z)), ag.selu_grad(z), rtol=4e-16)
    z32 = np.asarray([-9.5, -9.4], dtype=np.float32)
    got = jax.jit(jx.gaussian_grad)(jnp.asarray(z32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, ag.gaussian_grad(z32.astype(np.float64)), rtol=5e-7)


def test_double_double_arithmetic_is_exact_under_jit(jx):
    """Jitted, XLA on CPU rewrote (c + y) - c to y (the two-sum of a constant and an array lost its
    low part) and LLVM contracted Dekker's product into fused multiply-adds (the pair off by the
    product's rounding error for half the inputs): both measured before the runtime was changed."""
    from fractions import Fraction

    runtime = importlib.import_module(CATALOG["packages"]["jax"] + "._runtime")
    r = np.random.default_rng(3)
    z = r.normal(size=500) * 3
    y = r.normal(size=500) * 0.3
    y_low = y * 1e-17 * r.normal(size=500)

    def worst(pairs, exact):
        return max(abs(Fraction(float(h)) + Fraction(float(l)) - e) / abs(e) for h, l, e in zip(*pairs, exact))

    square = jax.jit(lambda v: runtime._dd_mul((v, 0.0), (v, 0.0)))(jnp.asarray(z))
    assert worst(square, [Fraction(float(v)) ** 2 for v in z]) < 2.0 ** -100
    for c in (1.0, 200000.0, -0.6931471805599453):
        total = jax.jit(lambda a, b: runtime._dd_add((c, 0.0), (a, b)))(jnp.asarray(y), jnp.asarray(y_low))
        assert worst(total, [Fraction(c) + Fraction(float(a)) + Fraction(float(b)) for a, b in zip(y, y_low)]) < 2.0 ** -100


def test_runtime_tanh_is_within_one_and_a_half_ulp(jx):
    """The runtime's tanh: a polynomial fitted by actgen (series.odd_fit) for |x| <= 0.55, where XLA's
    expm1 and tanh are 3.6 float32 ulp off, and 1 - 2E/(1 + E) above (measured: 1.45 and 1.37 ulp).
    In ulps against mpmath, both dtypes, normal inputs (XLA flushes subnormals), NaN kept."""
    import mpmath

    from actgen.accuracy import ulp_error

    runtime = importlib.import_module(CATALOG["packages"]["jax"] + "._runtime")
    r = np.random.default_rng(11)
    x = np.concatenate([r.uniform(-1, 1, 1500), r.uniform(-25, 25, 500), np.geomspace(1e-30, 0.55, 200), [0.55, np.nextafter(0.55, 1.0), -0.55, 19.0]])
    for dtype in (np.float64, np.float32):
        xs = x.astype(dtype)
        got = np.asarray(jax.jit(runtime._tanh)(jnp.asarray(xs)))
        with mpmath.workprec(120):
            worst = max(ulp_error(float(g), mpmath.tanh(mpmath.mpf(float(v))), dtype) for g, v in zip(got, xs))
        assert worst <= 1.5, (dtype, worst)
    assert np.isnan(np.asarray(runtime._tanh(jnp.asarray([np.nan])))).all()


def test_naive_float32_grad_overflows_where_the_derived_form_does_not(jx):
    """Evidence that the measurement bites: jax.grad of log(1 + exp(z)) in float32 overflows near
    z = 89; the generated softplus and its rule stay exact."""
    z = jnp.asarray([88.0, 89.0, 100.0], dtype=jnp.float32)
    naive = jnp.log(1 + jnp.exp(z))
    assert not jnp.isfinite(naive[1:]).any()
    assert not jnp.isfinite(jax.grad(lambda x: jnp.log(1 + jnp.exp(x)).sum())(z)[1:]).all()
    np.testing.assert_array_equal(jx.softplus(z), z)
    np.testing.assert_array_equal(jax.grad(lambda x: jx.softplus(x).sum())(z), jnp.ones(3, dtype=jnp.float32))


# -- shapes, dtypes, parameters --------------------------------------------------------------------


@pytest.mark.parametrize("name", ELEMENTWISE + VECTOR)
def test_shapes_and_dtypes(jx, name):
    fn = getattr(jx, name)
    for shape in ((), (0,), (0, 3), (2, 3, 4)):
        z = jnp.asarray(np.random.default_rng(0).normal(size=shape))
        out = fn(z)
        assert out.shape == z.shape and out.dtype == jnp.float64
        assert jax.jit(fn)(z).shape == z.shape
    z32 = jnp.linspace(-5, 5, 41, dtype=jnp.float32)
    assert fn(z32).dtype == jnp.float32
    for low in (jnp.float16, jnp.bfloat16):
        out = fn(z32.astype(low))
        assert out.dtype == low
        # computed in float32 and rounded once
        np.testing.assert_array_equal(out, fn(z32.astype(low).astype(jnp.float32)).astype(low))
    assert fn(jnp.asarray([-2, 0, 3])).dtype == jnp.float64  # integers: the default floating dtype


def test_python_number_and_array_parameters_agree(jx):
    z = jnp.linspace(-3, 3, 13)
    np.testing.assert_array_equal(jx.elu(z, alpha=2.0), jx.elu(z, alpha=jnp.asarray(2.0)))
    np.testing.assert_array_equal(jx.elu(z, alpha=2.0), jx.elu(z, alpha=jnp.asarray(2.0, dtype=jnp.float32)))
    # a float32 input with a float64 parameter array stays float32
    assert jx.elu(z.astype(jnp.float32), alpha=jnp.asarray(2.0)).dtype == jnp.float32
    # a parameter per element, differentiated through vmap
    alphas = jnp.linspace(0.1, 0.5, 13)
    g = jax.vmap(jax.grad(lambda x, a: jx.prelu(x, alpha=a), argnums=1))(z, alphas)
    np.testing.assert_array_equal(g, jx.prelu_grad_alpha(z, alpha=alphas))


# -- losses and heads ------------------------------------------------------------------------------

_SAMPLES = {
    "real": lambda r, s: r.normal(size=s),
    "positive": lambda r, s: r.random(s) + 0.2,
    "nonnegative": lambda r, s: r.random(s),
    "[0, 1]": lambda r, s: r.random(s),
    "(0, 1)": lambda r, s: r.random(s) * 0.8 + 0.1,
    "{0, 1}": lambda r, s: r.integers(0, 2, s).astype(float),
    "{-1, 1}": lambda r, s: r.integers(0, 2, s).astype(float) * 2 - 1,
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_losses_check_grads_and_match_numpy(jx, ag, name, reduction):
    r = np.random.default_rng(1)
    dom = LOSSES[name]["domain"]
    y = jnp.asarray(_SAMPLES[dom.get("y", "real")](r, (4, 3)))
    y_hat = jnp.asarray(_SAMPLES[dom.get("y_hat", "real")](r, (4, 3)))
    fn = getattr(jx, name)
    check_grads(lambda a: fn(a, y, reduction=reduction), (y_hat,), order=2, modes=["fwd", "rev"])
    want = getattr(ag, name)(np.asarray(y), np.asarray(y_hat), reduction=reduction)
    np.testing.assert_allclose(fn(y_hat, y, reduction=reduction), want, rtol=1e-12, atol=1e-300)
    grad = jax.grad(lambda a: fn(a, y, reduction=reduction).sum())(y_hat)
    want_grad = getattr(ag, f"{name}_grad")(np.asarray(y), np.asarray(y_hat), reduction="sum" if reduction == "none" else reduction)
    # the same derived gradient; class sums (cosine's) may be added in another order
    np.testing.assert_allclose(grad, want_grad, rtol=1e-13, atol=1e-15)


LOSS_PARAMS = sorted((n, p["name"]) for n, l in LOSSES.items() for p in l["params"])


@pytest.mark.parametrize("name, param", LOSS_PARAMS)
def test_loss_parameter_gradients_are_the_derived_ones(jx, ag, name, param):
    """A traced parameter of a loss (elementwise or class-axis) gets the derived NAME_grad_P as
    its derivative: the NumPy package's value, and check_grads to second order."""
    r = np.random.default_rng(7)
    dom = LOSSES[name]["domain"]
    y = jnp.asarray(_SAMPLES[dom.get("y", "real")](r, (4, 3)))
    y_hat = jnp.asarray(_SAMPLES[dom.get("y_hat", "real")](r, (4, 3)))
    value = next(p["default"] for p in LOSSES[name]["params"] if p["name"] == param) * 0.5 + 0.25
    fn = getattr(jx, name)
    got = jax.grad(lambda v: fn(y_hat, y, **{param: v}))(value)
    want = getattr(ag, f"{name}_grad_{param}")(np.asarray(y), np.asarray(y_hat), **{param: value})
    np.testing.assert_allclose(float(got), float(want), rtol=1e-12)
    check_grads(lambda a, v: fn(a, y, **{param: v}), (y_hat, value), order=2, modes=["fwd", "rev"])


def test_losses_refuse_a_tangent_for_the_targets(jx):
    with pytest.raises(ValueError, match="stop_gradient"):
        jax.grad(lambda y: jx.mse(jnp.zeros(2), y))(jnp.ones(2))
    with pytest.raises(ValueError, match="reduction"):
        jx.mse(jnp.zeros(2), jnp.zeros(2), reduction="avg")
    # targets under stop_gradient (or closed over) are fine, jitted too
    assert jax.jit(jax.grad(lambda a, y: jx.mse(a, jax.lax.stop_gradient(y))))(jnp.ones(2), jnp.zeros(2)).shape == (2,)


# optax's definitions, written with jax.nn (optax itself is not a dependency)
def _optax_softmax_cross_entropy(logits, labels, axis=-1):
    return -jnp.sum(labels * jax.nn.log_softmax(logits, axis=axis), axis=axis)


def _optax_softmax_cross_entropy_with_integer_labels(logits, labels):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), labels[..., None], axis=-1)[..., 0]


def _optax_sigmoid_binary_cross_entropy(logits, labels):
    return -labels * jax.nn.log_sigmoid(logits) - (1 - labels) * jax.nn.log_sigmoid(-logits)


def test_heads_in_optax_conventions(jx):
    key = jax.random.PRNGKey(0)
    z = jax.random.normal(key, (5, 4), dtype=jnp.float64) * 3
    labels = jnp.asarray([0, 3, 1, 1, 2])
    probs = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (5, 4), dtype=jnp.float64))
    y = jax.random.uniform(jax.random.PRNGKey(2), (5, 4), dtype=jnp.float64)
    cases = [
        (jx.softmax_cross_entropy, _optax_softmax_cross_entropy, probs),
        (jx.softmax_cross_entropy_with_integer_labels, _optax_softmax_cross_entropy_with_integer_labels, labels),
        (jx.sigmoid_binary_cross_entropy, _optax_sigmoid_binary_cross_entropy, y),
    ]
    for ours, theirs, target in cases:
        np.testing.assert_allclose(ours(z, target), theirs(z, target), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(jax.grad(lambda a: ours(a, target).sum())(z), jax.grad(lambda a: theirs(a, target).sum())(z), rtol=1e-13, atol=1e-15)
        check_grads(lambda a: ours(a, target), (z,), order=2, modes=["fwd", "rev"])
        np.testing.assert_allclose(jax.jit(jax.vmap(ours))(z, target), theirs(z, target), rtol=1e-13, atol=1e-15)
    # the spec's names: reductions, integer or probability targets, another class axis
    np.testing.assert_allclose(jx.softmax_cce(z, labels), _optax_softmax_cross_entropy_with_integer_labels(z, labels).mean(), rtol=1e-13)
    np.testing.assert_allclose(jx.softmax_cce(z, probs, reduction="sum"), _optax_softmax_cross_entropy(z, probs).sum(), rtol=1e-13)
    np.testing.assert_allclose(jx.softmax_cce(z.T, labels, axis=0, reduction="none"), _optax_softmax_cross_entropy_with_integer_labels(z, labels), rtol=1e-13)
    np.testing.assert_allclose(jx.sigmoid_bce(z, y), _optax_sigmoid_binary_cross_entropy(z, y).mean(), rtol=1e-13)
    with pytest.raises(ValueError, match="integer"):
        jx.softmax_cross_entropy_with_integer_labels(z, probs)


# class-axis losses and heads whose targets may be one-hot rows (catalog field class_indices)
INDEXED = sorted([(l["name"], l["functions"]["loss_grad"]["name"], False) for l in CATALOG["losses"] if l.get("class_indices")]
                 + [(h["name"], h["functions"]["head_grad"]["name"], True) for h in CATALOG["heads"] if LOSSES[h["loss"]].get("class_indices")])


@pytest.mark.parametrize("name, grad, head", INDEXED)
def test_integer_labels_ignore_index_and_label_smoothing(jx, ag, name, grad, head):
    """Integer labels with ignore_index and label_smoothing, classes on axis 1: the NumPy
    package's values and gradients (tested there against its one-hot form and PyTorch), under jit
    and grad; an index out of range raises where the labels are concrete."""
    rng = np.random.default_rng(5)
    raw = rng.normal(size=(3, 4, 5))
    preds = raw if head else np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=(3, 5))
    labels[2, 0] = -100
    fn = getattr(jx, name)
    for eps in (0.0, 0.2):
        for reduction in ("mean", "sum", "none"):
            want = getattr(ag, name)(labels, preds, reduction, axis=1, label_smoothing=eps)
            np.testing.assert_allclose(fn(jnp.asarray(preds), jnp.asarray(labels), reduction, axis=1, label_smoothing=eps), want, rtol=1e-13)
        jitted = jax.jit(jax.value_and_grad(lambda a, t: fn(a, t, axis=1, label_smoothing=eps)))
        value, g = jitted(jnp.asarray(preds), jnp.asarray(labels))
        np.testing.assert_allclose(value, getattr(ag, name)(labels, preds, axis=1, label_smoothing=eps), rtol=1e-13)
        np.testing.assert_allclose(g, getattr(ag, grad)(labels, preds, axis=1, label_smoothing=eps), rtol=1e-13, atol=1e-17)
        assert np.all(np.asarray(g)[2, :, 0] == 0.0)
    with pytest.raises(ValueError, match=rf"{name}: class index 9 is out of range for 4 classes"):
        fn(jnp.asarray(preds), jnp.full((3, 5), 9), axis=1)


def test_heads_are_stable_at_large_logits_in_float32(jx):
    z = jnp.asarray([[1e4, -1e4, 0.0]], dtype=jnp.float32)
    loss, grad = jax.value_and_grad(lambda a: jx.softmax_cce(a, jnp.asarray([1])))(z)
    assert float(loss) == 2e4
    np.testing.assert_array_equal(grad, jnp.asarray([[1.0, -1.0, 0.0]], dtype=jnp.float32))
    z = jnp.asarray([1e4, -1e4, 1e4, -1e4], dtype=jnp.float32)
    y = jnp.asarray([1.0, 0.0, 0.0, 1.0], dtype=jnp.float32)
    loss, grad = jax.value_and_grad(lambda a: jx.sigmoid_binary_cross_entropy(a, y).sum())(z)
    np.testing.assert_array_equal(jx.sigmoid_binary_cross_entropy(z, y), jnp.asarray([0.0, 0.0, 1e4, 1e4], dtype=jnp.float32))
    np.testing.assert_array_equal(grad, jnp.asarray([0.0, 0.0, 1.0, -1.0], dtype=jnp.float32))
