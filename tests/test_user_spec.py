"""A user's own spec builds into the user's own importable package (README: "Adding your own
activation"), which depends on NumPy only and whose derivatives are right."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from actgen.cli import main


def _numpy_package(folder, spec_text, package):
    """``spec_text`` built (NumPy target only) in ``folder`` and its package imported."""
    import importlib

    (folder / "spec.yaml").write_text(spec_text, encoding="utf-8")
    assert main(["build", "--spec", str(folder / "spec.yaml"), "--out", str(folder / "out"), "--package", package, "--target", "numpy", "--quiet"]) == 0
    sys.path.insert(0, str(folder / "out"))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(folder / "out"))

USER_SPEC = """\
activations:
  softsign_scaled:
    expr: z / (alpha + Abs(z))
    params: {alpha: 2.0}
  softsign_root:
    expr: z / sqrt(1 + z**2)
  half_softplus:
    expr: log(1 + exp(2*z))/2
  z_atan:
    expr: z*atan(z)
  bent_identity:
    expr: (sqrt(z**2 + 1) - 1) / 2 + z
  rational:
    expr: z / (1 + z**2)
"""
NAMES = ["softsign_scaled", "softsign_root", "half_softplus", "z_atan", "bent_identity", "rational"]

PROBE = textwrap.dedent(
    """
    import doctest, json, sys
    import numpy as np
    import my_pkg
    z = np.linspace(-6.0, 6.0, 49) + 0.0137
    h = 1e-6 * np.maximum(1.0, np.abs(z))
    report = {"all": list(my_pkg.__all__), "file": my_pkg.__file__, "functions": {}}
    for name in NAMES:
        f, g = getattr(my_pkg, name), getattr(my_pkg, name + "_grad")
        report["functions"][name] = {
            "z": z.tolist(), "f": f(z).tolist(), "grad": g(z).tolist(),
            "fd": ((f(z + h) - f(z - h)) / (2 * h)).tolist(),
            "f32": str(f(z.astype(np.float32)).dtype), "g32": str(g(z.astype(np.float32)).dtype),
        }
    report["big"] = [float(my_pkg.half_softplus(500.0)), float(my_pkg.half_softplus_grad(500.0)), float(my_pkg.half_softplus(-500.0))]
    a = 3.0
    fa = lambda t: my_pkg.softsign_scaled(z, alpha=t)
    report["grad_alpha"] = my_pkg.softsign_scaled_grad_alpha(z, alpha=a).tolist()
    report["fd_alpha"] = ((fa(a + 1e-6) - fa(a - 1e-6)) / 2e-6).tolist()
    failed = 0
    for mod in ("activations",):
        failed += doctest.testmod(sys.modules["my_pkg." + mod], extraglobs={"np": np}).failed
    report["doctest_failed"] = failed
    report["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("sympy", "actgen", "jinja2", "yaml", "mpmath"))
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("user")
    (work / "my.yaml").write_text(USER_SPEC, encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        rc = main(["build", "--spec", "my.yaml", "--out", "tmp", "--package", "my_pkg", "--quiet"])
    finally:
        os.chdir(cwd)
    assert rc == 0
    return work / "tmp"


@pytest.fixture(scope="module")
def probe(built):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(built)
    code = f"NAMES = {NAMES!r}\n" + PROBE
    res = subprocess.run([sys.executable, "-c", code], cwd=str(built.parent), env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_build_writes_the_users_package(built):
    assert (built / "my_pkg" / "__init__.py").is_file()
    assert not (built / "actgen_numpy").exists()
    header = (built / "my_pkg" / "activations.py").read_text(encoding="utf-8").splitlines()[0]
    assert "my.yaml" in header and "generated" in header.lower()


def test_package_imports_from_its_own_folder(probe, built):
    assert Path(probe["file"]).resolve() == (built / "my_pkg" / "__init__.py").resolve()
    for name in NAMES:
        assert name in probe["all"] and name + "_grad" in probe["all"]
    assert "softsign_scaled_grad_alpha" in probe["all"]


def test_package_depends_on_numpy_only(probe, built):
    assert probe["modules"] == [], f"the generated package imported {probe['modules']}"
    for path in (built / "my_pkg").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for banned in ("import sympy", "from sympy", "import actgen", "from actgen"):
            assert banned not in text, (path.name, banned)


@pytest.mark.parametrize("name", NAMES)
def test_users_gradients_match_finite_differences(probe, name):
    r = probe["functions"][name]
    z = np.array(r["z"])
    ok = np.abs(z) > 1e-3  # Abs has its kink at 0
    np.testing.assert_allclose(np.array(r["grad"])[ok], np.array(r["fd"])[ok], rtol=2e-6, atol=2e-8)
    assert r["f32"] == "float32" and r["g32"] == "float32"


def test_users_functions_match_their_formulas(probe):
    f = {n: np.array(probe["functions"][n]["f"]) for n in NAMES}
    g = {n: np.array(probe["functions"][n]["grad"]) for n in NAMES}
    z = np.array(probe["functions"]["z_atan"]["z"])
    np.testing.assert_allclose(f["z_atan"], z * np.arctan(z), rtol=1e-14)
    np.testing.assert_allclose(g["z_atan"], np.arctan(z) + z / (1 + z**2), rtol=1e-13)
    np.testing.assert_allclose(f["softsign_scaled"], z / (2 + np.abs(z)), rtol=1e-14)
    np.testing.assert_allclose(g["softsign_scaled"], 2 / (2 + np.abs(z)) ** 2, rtol=1e-13)
    np.testing.assert_allclose(f["half_softplus"], np.log1p(np.exp(2 * z)) / 2, rtol=1e-13)
    np.testing.assert_allclose(g["half_softplus"], 1 / (1 + np.exp(-2 * z)), rtol=1e-13)
    np.testing.assert_allclose(g["softsign_root"], (1 + z**2) ** -1.5, rtol=1e-13)
    np.testing.assert_allclose(f["bent_identity"], (np.sqrt(z**2 + 1) - 1) / 2 + z, rtol=1e-13, atol=1e-15)


def test_users_rational_function_is_right_past_the_overflow_of_its_denominator(built):
    """z/(1 + z**2) is about 1/z for large |z|: rational_tail divides by z**2 there, so the value
    and both derivatives stay finite and right up to the largest float (1 + z**2 overflows from
    1.3e154; the gradient (1 - z**2)/(1 + z**2)**2 was inf * 0)."""
    import importlib

    sys.path.insert(0, str(built))
    try:
        pkg = importlib.import_module("my_pkg")
    finally:
        sys.path.remove(str(built))
    big = np.array([1e60, -1e100, 1e150, -1e155, 1e300])  # 1 + z**2 overflows from 1.3e154
    f, g, g2 = pkg.rational(big), pkg.rational_grad(big[:3]), pkg.rational_grad2(big[:2])
    # 1/z, -1/z**2 and 2/z**3 (the leading terms; the next are 1e-120 smaller or less), normal floats
    np.testing.assert_allclose(f, 1 / big, rtol=1e-15)
    np.testing.assert_allclose(g, -1 / big[:3] ** 2, rtol=1e-15)
    np.testing.assert_allclose(g2, 2 / big[:2] ** 3, rtol=1e-15)
    at3 = np.array([3.0])
    np.testing.assert_allclose([pkg.rational(at3)[0], pkg.rational_grad(at3)[0], pkg.rational_grad2(at3)[0]], [0.3, -0.08, 0.036], rtol=1e-15)


def test_users_derivative_keeps_its_relative_accuracy_at_a_rational_root(built):
    """rational_grad = (1 - z**2)/(1 + z**2)**2 vanishes at z = +-1; printed as 1 - z**2 it lost all
    relative accuracy next to the roots (z**2 rounded, then cancelled: 2.1e6 ulp at these points, measured).
    rational_roots prints -(z - 1)(z + 1), exact near each root. Against mpmath, in ulps of the value."""
    import importlib

    import mpmath

    from actgen.accuracy import ulp_error

    sys.path.insert(0, str(built))
    try:
        pkg = importlib.import_module("my_pkg")
    finally:
        sys.path.remove(str(built))
    z = np.array([1 + 2.0**-40, 1 - 2.0**-45, -1 + 2.0**-30, -1 - 2.0**-52, 1 + 2.0**-20])
    got = pkg.rational_grad(z)
    mpmath.mp.prec = 200
    worst = max(ulp_error(float(g), (1 - mpmath.mpf(float(v)) ** 2) / (1 + mpmath.mpf(float(v)) ** 2) ** 2) for g, v in zip(got, z))
    assert worst <= 2.0, (worst, got)
    assert "rational_roots" in pkg.rational_grad.__doc__


TAIL_SPEC = """\
activations:
  log_square:
    expr: log(1 + z**2)
  root_exp:
    expr: sqrt(1 + exp(z))
  quartic:
    expr: (z/2)**4
"""


def test_users_logs_of_polynomials_and_roots_of_exponential_sums_are_right_to_the_largest_float(tmp_path):
    """log(1 + z**2) is 2 log|z| + log1p(1/z**2) past 2**60 (log_tail; it was log(inf) = inf from
    1.3e154), and sqrt(1 + exp(z)) is exp(z/2) sqrt(1 + exp(-z)) for z >= 0 (exp_sum_power; it was
    inf from 709.8, its gradient exp(z)/(2 sqrt(1 + exp(z))) inf/inf = nan), and (z/2)**4, which SymPy
    expands to z**4/16, is (z/2)**4 again (scaled_power; z**4 overflowed from 1.16e77, the value
    from 2.3e77). Checked in ulps against
    mpmath at points past each overflow, for the value, both derivatives and the output form."""
    import importlib

    import mpmath

    from actgen.accuracy import ulp_error

    (tmp_path / "tails.yaml").write_text(TAIL_SPEC, encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["build", "--spec", "tails.yaml", "--out", "out", "--package", "tails_pkg", "--target", "numpy", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    sys.path.insert(0, str(tmp_path / "out"))
    try:
        pkg = importlib.import_module("tails_pkg")
    finally:
        sys.path.remove(str(tmp_path / "out"))
    mpmath.mp.prec = 200
    t = mpmath.mpf
    reference = {
        "log_square": (lambda z: mpmath.log(1 + z**2), lambda z: 2 * z / (1 + z**2), lambda z: 2 * (1 - z**2) / (1 + z**2) ** 2),
        "root_exp": (lambda z: mpmath.sqrt(1 + mpmath.exp(z)), lambda z: mpmath.exp(z) / (2 * mpmath.sqrt(1 + mpmath.exp(z))),
                     lambda z: mpmath.exp(z) * (mpmath.exp(z) + 2) / (4 * (1 + mpmath.exp(z)) ** t(1.5))),
        "quartic": (lambda z: z**4 / 16, lambda z: z**3 / 4, lambda z: 3 * z**2 / 4),
    }
    points = {"log_square": [3.0, -1e10, 1e20, -2e154, 1e200, -1.7e308], "root_exp": [-50.0, 0.5, 30.0, 700.0, 710.0, 1000.0, 1400.0],
              "quartic": [0.3, -5.0, 1.2e77, -2.2e77]}
    for name, fns in reference.items():
        z = np.array(points[name])
        for suffix, true in zip(("", "_grad", "_grad2"), fns):
            got = getattr(pkg, name + suffix)(z)
            worst = max(ulp_error(float(g), true(t(float(v)))) for g, v in zip(got, z))
            assert worst <= 4.0, (name + suffix, worst, got)
    assert "log_tail" in pkg.log_square.__doc__ and "exp_sum_power" in pkg.root_exp.__doc__
    # the output form (y - 1)(y + 1)/(2|y|): rational_tail past y = 2**60 (it was inf from y = 1.3e154,
    # z = 709, and nan at y = inf)
    z = np.array([0.5, 100.0, 710.0, 1000.0, 1400.0, 1500.0])
    got = pkg.root_exp_grad_from_output(pkg.root_exp(z))
    worst = max(ulp_error(float(g), reference["root_exp"][1](t(float(v)))) for g, v in zip(got, z))
    assert worst <= 4.0, (worst, got)


FUZZ_FOUND_SPEC = """\
activations:
  exp_shift:
    expr: exp(3 - z)
  sign_power:
    expr: sign(z**6) * z
  asinh_abs:
    expr: asinh(Abs(z/(1 + z**2)))
  tanh_scaled:
    expr: tanh(0.637*z)
  sech_scaled:
    expr: 1/cosh(1.1*z)
  sech_squared:
    expr: z/cosh(z)**2
"""


def test_what_the_fuzzer_found_is_right(tmp_path):
    """What `actgen accuracy --fuzz 40 --seed 20261206` found (and variants of it): exp(3 - z), 30 ulp at
    z = -30.2 (3 - z rounds where it crosses a power of two: compensated_exponent now takes sums);
    sign(z**6), 0 at z = 1e-300 where z**6 underflows (sign_of_power); asinh(|z|/(1 + z**2)), an
    internal error (its second derivative had an unreachable zoo branch inside another Piecewise:
    folded away). Checked in ulps against mpmath."""
    import mpmath

    from actgen.accuracy import ulp_error

    pkg = _numpy_package(tmp_path, FUZZ_FOUND_SPEC, "fz")
    mpmath.mp.prec = 200
    z = np.array([-700.5, -30.2, -30.3, -1.1, 0.3, 5.7, 700.2])
    for name in ("exp_shift", "exp_shift_grad", "exp_shift_grad2"):
        sign = -1 if name == "exp_shift_grad" else 1
        worst = max(ulp_error(float(g), sign * mpmath.exp(3 - mpmath.mpf(float(v)))) for g, v in zip(getattr(pkg, name)(z), z))
        assert worst <= 4.0, (name, worst)
    tiny = np.array([-1e-300, 1e-300, -1e-60, 0.0])
    np.testing.assert_array_equal(pkg.sign_power(tiny), tiny)
    np.testing.assert_array_equal(pkg.sign_power_grad(tiny[:3]), [1.0, 1.0, 1.0])
    assert np.isfinite(pkg.asinh_abs_grad2(np.array([-2.0, 0.5, 3.0]))).all()
    # hyperbolic functions of an argument that rounds (0.637 z, 1.1 z): tanh(0.637 z)' was 280 ulp
    # at z = -550 and 1/cosh(1.1 z) 474 ulp at -375 (cosh amplifies the rounding by |t|), its
    # derivative -sinh/cosh**2 inf/inf = nan past 645 (hyperbolic_exp, hyperbolic_ratio)
    c, d = mpmath.mpf(637) / 1000, mpmath.mpf(11) / 10
    checks = {
        "tanh_scaled_grad": lambda v: c * mpmath.sech(c * v) ** 2,
        "sech_scaled": lambda v: mpmath.sech(d * v),
        "sech_scaled_grad": lambda v: -d * mpmath.sech(d * v) * mpmath.tanh(d * v),
        # -sinh/cosh**2 and (cosh(2t) - 3)/cosh(t)**3 overflowed together (inf/inf) past |t| = 710
        "sech_scaled_grad2": lambda v: d**2 * mpmath.sech(d * v) * (mpmath.tanh(d * v) ** 2 - mpmath.sech(d * v) ** 2),
        # z/cosh(z)**2 as z * (2/(1 + cosh 2z)): 4.3 ulp in JAX before; never 2z/(...), inf/inf past 9e307
        "sech_squared": lambda v: v * mpmath.sech(v) ** 2,
    }
    z = np.array([-550.3, -375.1, -30.7, -0.4, 2.3, 120.9, 640.2, 700.3, 900.1, -1e300, 1.7e308])
    for name, true in checks.items():
        worst = max(ulp_error(float(g), true(mpmath.mpf(float(v)))) for g, v in zip(getattr(pkg, name)(z), z))
        assert worst <= 4.0, (name, worst)


FUZZ_FOUND_NEXT_SPEC = """\
activations:
  erf_scaled:
    expr: erf(1.5*z)
  erfc_shifted:
    expr: erfc(Min(0.044715, z) + z)
  cos_shifted:
    expr: cos(1.702 + z)
"""


def test_what_the_fuzzer_found_next_is_right(tmp_path):
    """What `actgen accuracy --fuzz 20 --seed 23` found: erf(1.5 z)'s derivative exp(-2.25 z**2),
    473 ulp at z = -15.3 (exp_square rounded c t**2: the runtimes now carry it); erfc(t) of a t that
    rounds, 465 ulp at 24.7 (erfc_tail); cos(1.702 + z) rounding its argument, 4.6e18 ulp at
    -4.1e227, hundreds at |z| = 1000 and without bound next to the zeros (periodic_shift). Checked
    in ulps against mpmath (actgen's reference, which resolves cos of a huge argument)."""
    import sympy as sp

    from actgen import accuracy as A
    from actgen.model import Z

    pkg = _numpy_package(tmp_path, FUZZ_FOUND_NEXT_SPEC, "fzn")
    c = sp.Rational(851, 500)
    cases = {
        "erf_scaled_grad": (3 / sp.sqrt(sp.pi) * sp.exp(-sp.Rational(9, 4) * Z**2), [-15.3, -12.1, 0.7, 9.9, 26.4]),
        "erfc_shifted": (sp.erfc(sp.Min(sp.Rational(44715, 10**6), Z) + Z), [0.3, 2.2, 9.6, 24.7, 26.1, -0.01, -3.0]),
    }
    # next to the zeros of sin(1.702 + z) (k pi - 1.702) and of cos (k pi + pi/2 - 1.702) too: the
    # argument in double-double (sin_dd, cos_dd); the rounded sum was 1.8e12 ulp off there
    near = [k * np.pi - 1.702 + d for k in (-12, 3, 250) for d in (0.0, 1e-9)] + [k * np.pi + np.pi / 2 - 1.702 for k in (-7, 40)]
    shifted = [-4.14349e227, 1000.3, -1234.5, 1e10, 3e300, 0.2, -39.4] + near
    cases["cos_shifted"] = (sp.cos(c + Z), shifted)
    cases["cos_shifted_grad"] = (-sp.sin(c + Z), shifted)
    for name, (expr, points) in cases.items():
        got = getattr(pkg, name)(np.array(points))
        for v, g in zip(points, got):
            want = A.reference(expr, {Z: v})
            assert A.ulp_error(float(g), want) <= 4.0, (name, v, float(g), float(want))


CANCELLING_SPEC = """\
activations:
  tanh_shrink_like:
    expr: z - tanh(z)
  versine:
    expr: 1 - cos(z)
  exp_minus_line:
    expr: exp(z) - 1 - z
  scaled_atan_shrink:
    expr: z - beta * atan(z / beta)
    params: {beta: 2.0}
  clamped:
    expr: Piecewise((z, z > 0), (sinh(z) - z, True))
"""


def test_sums_that_cancel_at_the_origin_are_exact(tmp_path):
    """Sums whose terms cancel at z = 0 (z - tanh(z) ~ z**3/3 where its terms are ~z) were up to
    9e15 ulp off near 0 (the value was 0 or noise at z = 1e-8): the rule cancellation_polynomial
    evaluates them as z**m times a fitted polynomial there, for a function of z, of z over a
    parameter and in a clamped branch. Checked in ulps against mpmath, in the value's own ulps."""
    import mpmath

    from actgen.accuracy import ulp_error

    pkg = _numpy_package(tmp_path, CANCELLING_SPEC, "cz")
    checks = {
        "tanh_shrink_like": lambda v: v - mpmath.tanh(v),
        "versine": lambda v: 1 - mpmath.cos(v),
        "exp_minus_line": lambda v: mpmath.expm1(v) - v,
        "exp_minus_line_grad": lambda v: mpmath.expm1(v),
        "scaled_atan_shrink": lambda v: v - 2 * mpmath.atan(v / 2),
        "clamped": lambda v: v if v > 0 else mpmath.sinh(v) - v,
        "clamped_grad": lambda v: 1 if v > 0 else mpmath.cosh(v) - 1,
    }
    z = np.array([-3.1, -1.7, -1.2, -0.9, -0.31, -1e-3, -2e-8, -1e-150, 1e-300, 3e-8, 0.02, 0.7, 1.3, 1.9, 2.6, 40.0])
    for name, true in checks.items():
        got = getattr(pkg, name)(z)
        with mpmath.workprec(2400):  # 1 - cos(1e-150) needs ~1000 bits
            worst = max(ulp_error(float(g), true(mpmath.mpf(float(v)))) for g, v in zip(got, z))
        assert worst <= 4.0, (name, worst)
    assert np.isnan(pkg.tanh_shrink_like(np.array([np.nan]))).all()


OVERFLOWING_SPEC = """\
activations:
  cubed_asinh:
    expr: asinh(3*z)**3
  damped_asinh:
    expr: Max(3/2, z) * asinh(z) / (1 + z**2)
  tanh_over_square:
    expr: tanh(z) / 5 / (1 + z**2)
  log_scaled:
    expr: log(3*z)
    domain: {z: positive}
  log_shrunk:
    expr: log(z/7)
    domain: {z: positive}
  shifted_rational:
    expr: z/(1 + (0.044715 + z)**2)
  asinh_of_rational:
    expr: asinh(0.5 * 0.044715/(1 + z**2))
"""


def test_an_argument_or_factor_that_overflows_alone(tmp_path):
    """Found by `actgen accuracy --fuzz`: 3z overflows where asinh(3z)**3 is about -3.6e8 (rule
    scaled_argument: log|z| + log(3 + sqrt(9 + 1/z**2))); Max(3/2, z) asinh(z) overflows where the
    value divided by 1 + z**2 is tiny, and 2z times 1/(1 + z**2) was inf * 0 in tanh(z)/5/(1 + z**2)'s
    derivative (rule rational_tail divides each growing factor, a sum term by term, first, and takes
    the square root of an even-degree polynomial as a power of z times a bounded root); log(3z)
    and log(z/7) of a huge or subnormal z. In ulps against mpmath, out to the largest float."""
    import mpmath

    from actgen.accuracy import ulp_error

    pkg = _numpy_package(tmp_path, OVERFLOWING_SPEC, "ovf")
    checks = {
        "cubed_asinh": lambda v: mpmath.asinh(3 * v) ** 3,
        "cubed_asinh_grad": lambda v: 9 * mpmath.asinh(3 * v) ** 2 / mpmath.sqrt(9 * v * v + 1),
        "damped_asinh": lambda v: max(mpmath.mpf(1.5), v) * mpmath.asinh(v) / (1 + v * v),
        "tanh_over_square_grad": lambda v: mpmath.sech(v) ** 2 / 5 / (1 + v * v) - 2 * v * mpmath.tanh(v) / 5 / (1 + v * v) ** 2,
        "shifted_rational_grad": lambda v: (1 + (c + v) ** 2 - 2 * v * (c + v)) / (1 + (c + v) ** 2) ** 2,
        # sqrt(1.6e11 (z**2 + 1)**2 + ...) in its derivative: (z**2 + 1)**2 overflowed past 1e77
        "asinh_of_rational_grad": lambda v: -2 * (c / 2) * v / (1 + v * v) ** 2 / mpmath.sqrt(1 + (c / 2 / (1 + v * v)) ** 2),
    }
    c = mpmath.mpf(44715) / 10**6
    z = np.array([-1.7976931348623157e308, -1e300, -3e150, -2.16651e81, -2e9, -2.5, -1e-5, 0.3, 4.0, 3e8, 1e100, 1.47774e306, 1e308, 1.7976931348623157e308])
    positive = np.array([5e-324, 1e-310, 1e-200, 3e-9, 0.2, 7.0, 2e9, 1e300, 6e307, 1.7976931348623157e308])
    checks_positive = {"log_scaled": lambda v: mpmath.log(3 * v), "log_shrunk": lambda v: mpmath.log(v / 7)}
    for points, table in ((z, checks), (positive, checks_positive)):
        for name, true in table.items():
            got = getattr(pkg, name)(points)
            assert np.isfinite(got).all(), (name, got)
            with mpmath.workprec(200):
                worst = max(ulp_error(float(g), true(mpmath.mpf(float(v)))) for g, v in zip(got, points))
            assert worst <= 4.0, (name, worst)


def test_a_moment_that_cannot_be_evaluated_is_unknown_not_an_error(tmp_path):
    """Found by `actgen accuracy --fuzz`: E[tanh(cosh(Z) - Z)] sent mpmath's quadrature to nodes near
    |z| = 1e20, where cosh alone needs more memory than any machine has, and the build ended in an
    internal MemoryError. The moments are now unknown, with the reason, and the function builds."""
    import json

    pkg = _numpy_package(tmp_path, "activations:\n  tanh_of_cosh:\n    expr: tanh(cosh(z) - z)\n", "tc")
    assert np.isfinite(pkg.tanh_of_cosh(np.array([-800.0, 0.0, 3.0, 800.0]))).all()
    props = json.loads((tmp_path / "out" / "catalog.json").read_text(encoding="utf-8"))["activations"][0]["properties"]
    assert props["mean"]["value"] == "unknown" and "quadrature" in props["mean"]["reason"], props["mean"]


def test_a_decimal_shift_keeps_its_low_part(tmp_path):
    """Found by `actgen accuracy --fuzz`: tanh((z + 1.702) + 3) was 98 ulp off next to z = -4.702,
    where the result is the rounding of the constant 4.702 (rule exact_constant_sum adds its low part
    last; in double-double arguments it is split anyway). In ulps against mpmath (float64)."""
    import mpmath

    from actgen.accuracy import ulp_error

    spec = "activations:\n  shifted_tanh:\n    expr: tanh((z + 1.702) + 3)\n  third:\n    expr: sinh(2*z - 1/3)\n"
    pkg = _numpy_package(tmp_path, spec, "dshift")
    z = np.array([-4.7, -4.702, -4.70200001, -4.69999, 3.0, -700.0, 1 / 6, 0.16666, 0.1666667])
    c = lambda: mpmath.mpf(4702) / 1000  # noqa: E731 - at the working precision of the check
    checks = {"shifted_tanh": lambda v: mpmath.tanh(v + c()), "shifted_tanh_grad": lambda v: mpmath.sech(v + c()) ** 2,
              "third": lambda v: mpmath.sinh(2 * v - mpmath.mpf(1) / 3), "third_grad": lambda v: 2 * mpmath.cosh(2 * v - mpmath.mpf(1) / 3)}
    for name, true in checks.items():
        got = getattr(pkg, name)(z)
        with mpmath.workprec(300):
            worst = max(ulp_error(float(g), true(mpmath.mpf(float(v)))) for g, v in zip(got, z))
        assert worst <= 4.0, (name, worst)


def test_users_softplus_variant_is_stable(probe):
    """log(1 + exp(2z))/2 gets the same stable treatment as the bundled softplus."""
    value, slope, tail = probe["big"]
    assert value == 500.0 and slope == 1.0
    assert 0.0 <= tail < 1e-300


def test_users_param_gradient(probe):
    np.testing.assert_allclose(probe["grad_alpha"], probe["fd_alpha"], rtol=2e-6, atol=1e-9)


def test_users_doctests_pass(probe):
    assert probe["doctest_failed"] == 0


# Measured over the whole float range (log-spaced magnitudes up to the largest float): where an
# intermediate overflows, the user's functions fail. These are the failures the "right on every
# float" issue is about (no overflow-scaling rule exists yet); kept visible and strict, so that a
# fix makes this list shrink. Keyed by function name, for both packages and dtypes.
OVERFLOW_KNOWN = {
    "softsign_root_grad2": "(1 + z**2)**(5/2) overflows",
    "softsign_scaled_grad2": "4.19 ulp in float32 (torch): (alpha + |z|)**3 triples a rounding",
    "rational_grad2": "4.35 ulp at z = -32.3 in JAX float64 (measured): XLA's integer powers are repeated products (z**6 rounds three times; jnp.power with a float exponent is exact to 1 ulp but 10x slower)",
    # class-axis VJPs, with the dominant term split out (9e15 ulp before) and the class sum formed
    # largest-last (softmin_vjp[0] 4.89 ulp before); six rounded operations where no logit dominates
    # (a temperature's softmax_temp_vjp was 4.89 and 5.37 ulp before, and is within 4 now)
    "softmin_vjp[1](z, 0, 0)": "4.28 ulp at z = -6e-6 (measured), as the bundled softmin_vjp",
}


# known failures of some (backend, dtype) pairs only (dtype None: both): the others must meet the
# target. NumPy computes float32 in float32 where no float64-only primitive is needed; its SIMD
# float32 loops measure 4.14 ulp for z(z**2 - 3)/(1 + z**2)**3 at z = 25.6 (torch: within 4).
KNOWN_ONLY_IN = {"rational_grad2": (("jax", None), ("numpy", "float32"))}


def _known_in(r):
    pairs = KNOWN_ONLY_IN.get(r["name"])
    return pairs is None or any(r.get("backend", "numpy") == b and d in (None, r["dtype"]) for b, d in pairs)


def _check_rows(rows):
    over = {}
    for r in rows:
        bad = float(r["max_term_ulp"]) > 4.0 or r["nonfinite"] != 0 or r["warnings"] != 0
        if r["name"] in OVERFLOW_KNOWN and _known_in(r):
            over[r["name"]] = over.get(r["name"], False) or bad
            continue
        assert not bad, " ".join(f"{k}={r[k]}" for k in ("name", "backend", "dtype", "max_term_ulp", "worst_term_input", "nonfinite", "warnings"))
        assert float(r["max_ulp"]) <= 4.0 or r["name"].endswith(("_grad", "_grad2")), r  # no cancellation hidden in terms
    # strict: every known failure is still measured as one (a fix must remove it from the list)
    assert over == {name: True for name in over}, {name: f for name, f in over.items() if not f}


def test_user_functions_meet_the_accuracy_target(built, tmp_path):
    """`actgen accuracy` on the user's package: every function and gradient within 4 ulp of an
    mpmath reference (half_softplus gets softplus's rules; bent_identity's sqrt(z**2 + 1) - 1
    gets sqrt_complement), finite and silent, except the intermediate overflows listed above."""
    spec = tmp_path / "my.yaml"
    spec.write_text(USER_SPEC, encoding="utf-8")
    assert main(["accuracy", "--spec", str(spec), "--out", str(built), "--package", "my_pkg"]) == 0
    rows = json.loads((built / "accuracy.json").read_text(encoding="utf-8"))
    rows = rows if isinstance(rows, list) else rows["results"]
    assert {r["name"] for r in rows} >= {f"{n}_grad" for n in NAMES}
    _check_rows(rows)


# -- the same spec through the PyTorch target -------------------------------------------------------


@pytest.fixture(scope="module")
def user_torch(built):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]' to test the torch target")
    import importlib

    sys.path.insert(0, str(built))
    try:
        return torch, importlib.import_module("my_pkg_torch"), importlib.import_module("my_pkg")
    finally:
        sys.path.remove(str(built))


def test_build_writes_the_users_torch_package_by_the_naming_rule(built):
    assert (built / "my_pkg_torch" / "__init__.py").is_file()
    assert json.loads((built / "catalog.json").read_text(encoding="utf-8"))["packages"] == {"numpy": "my_pkg", "torch": "my_pkg_torch", "jax": "my_pkg_jax"}


@pytest.mark.parametrize("name", NAMES)
def test_users_torch_functions_pass_gradcheck_and_gradgradcheck(user_torch, name):
    torch, tt, ag = user_torch
    z = torch.tensor([-700.0, -30.0, -2.3, -0.7, -0.05, 0.05, 0.4, 1.9, 30.0, 700.0], dtype=torch.float64, requires_grad=True)
    params = {"alpha": torch.tensor(2.5, dtype=torch.float64, requires_grad=True)} if name == "softsign_scaled" else {}
    fn = getattr(tt, name)

    def f(z, *ps):
        return fn(z, **dict(zip(params, ps)))

    assert torch.autograd.gradcheck(f, (z, *params.values()))
    assert torch.autograd.gradgradcheck(f, (z, *params.values()))
    # the backward is the derived derivative, and the values are the NumPy package's
    (g,) = torch.autograd.grad(fn(z).sum(), z)
    assert torch.equal(g, getattr(tt, name + "_grad")(z.detach()))
    x = z.detach().numpy()
    for suffix in ("", "_grad", "_grad2"):
        ours = getattr(tt, name + suffix)(z.detach()).numpy()
        theirs = getattr(ag, name + suffix)(x)
        np.testing.assert_array_max_ulp(ours, theirs, maxulp=8)


def test_users_torch_functions_meet_the_accuracy_target(built, user_torch):
    """The user's torch package against mpmath, in float64 and in float32 computed in float32."""
    from actgen import accuracy as A
    from actgen.model import load_spec
    from actgen.pipeline import derive_all

    import dataclasses

    torch, tt, _ = user_torch
    spec = built.parent / "my.yaml"
    derived = derive_all(load_spec(str(spec)))
    _check_rows([dataclasses.asdict(m) for m in A.measure_all(derived, tt, backend="torch")])


# -- partial functions and steps: a declared domain, sign and Heaviside ------------------------------

DOMAIN_SPEC = """\
activations:
  log_act:
    expr: log(z)
    domain: {z: positive}
  root:
    expr: sqrt(z)
    domain: {z: nonnegative}
  log1p_unit:
    expr: log(1 + z)
    domain: {z: "(0, 1)"}
  step:
    expr: Heaviside(z)
  half_abs:
    expr: z*sign(z)/2
  softmin:
    expr: exp(-z[i])/Sum(exp(-z[j]), (j, 1, K))
"""


@pytest.fixture(scope="module")
def domain_built(tmp_path_factory):
    work = tmp_path_factory.mktemp("domain")
    (work / "d.yaml").write_text(DOMAIN_SPEC, encoding="utf-8")
    assert main(["build", "--spec", str(work / "d.yaml"), "--out", str(work / "o"), "--package", "dom", "--quiet", "--target", "numpy"]) == 0
    import importlib

    sys.path.insert(0, str(work / "o"))
    try:
        return work, importlib.import_module("dom")
    finally:
        sys.path.remove(str(work / "o"))


def test_partial_functions_are_nan_outside_their_domain(domain_built):
    """On its domain a partial function is the formula; outside it NaN (as NumPy's own log and
    sqrt), with no warning; the derivatives likewise."""
    _, dom = domain_built
    z = np.array([-3.0, -1e-300, 0.0, 1e-300, 0.25, 0.75, 1.0, 4.0])
    with np.errstate(all="raise"):
        got = {n + s: getattr(dom, n + s)(z) for n in ("log_act", "root", "log1p_unit") for s in ("", "_grad", "_grad2")}
    inside = {"log_act": z > 0, "root": z >= 0, "log1p_unit": (z > 0) & (z < 1)}
    for name, mask in inside.items():
        for s in ("", "_grad", "_grad2"):
            assert np.isnan(got[name + s][~mask]).all(), (name + s, got[name + s])
            assert not np.isnan(got[name + s][mask]).any(), (name + s, got[name + s])
    np.testing.assert_allclose(got["log_act"][z > 0], np.log(z[z > 0]), rtol=1e-15)
    np.testing.assert_allclose(got["root_grad"][z > 0], 0.5 / np.sqrt(z[z > 0]), rtol=1e-15)
    assert got["root_grad"][2] == np.inf  # the one-sided derivative at the closed end
    np.testing.assert_allclose(got["log1p_unit_grad"][inside["log1p_unit"]], 1 / (1 + z[inside["log1p_unit"]]), rtol=1e-15)


def test_steps_follow_the_branch_convention(domain_built):
    """Heaviside(0) = 1/2 (SymPy's convention); the derivative of a step or of sign is 0 everywhere
    (a jump's Dirac delta is not a function value)."""
    _, dom = domain_built
    z = np.array([-2.0, -1e-300, 0.0, 1e-300, 3.0])
    np.testing.assert_array_equal(dom.step(z), [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(dom.step_grad(z), np.zeros(5))
    np.testing.assert_array_equal(dom.half_abs(z), np.abs(z) / 2)
    np.testing.assert_array_equal(dom.half_abs_grad(z), np.sign(z) / 2)
    # NaN in, NaN out, as np.heaviside (the step's last value was returned: nan_default)
    assert np.isnan(dom.step(np.array([np.nan]))).all() and np.isnan(dom.half_abs(np.array([np.nan]))).all()


def test_partial_functions_meet_the_accuracy_target(domain_built):
    """mpmath over each function's domain (the accuracy inputs filtered to the domain, plus its
    ends and interior points): within 4 ulp."""
    from actgen import accuracy as A
    from actgen.model import load_spec
    from actgen.pipeline import derive_all

    import dataclasses

    work, dom = domain_built
    derived = derive_all(load_spec(str(work / "d.yaml")))
    rows = [dataclasses.asdict(m) for m in A.measure_all(derived, dom)]
    assert {r["name"] for r in rows} >= {"log_act", "root_grad", "log1p_unit_grad2", "step", "half_abs_grad"}
    _check_rows(rows)


def test_softmin_shifts_by_the_min(domain_built, ag):
    """exp(-z) has weight -1: the shift is the min of z (exp(min z - z) <= 1), so softmin neither
    overflows nor divides inf by inf at +-1000, and equals softmax(-z)."""
    _, dom = domain_built
    z = np.array([[-1000.0, 0.0, 1000.0], [1.0, 2.0, 3.0], [1e300, -1e300, 0.0]])
    with np.errstate(all="raise"):
        got = dom.softmin(z)
    np.testing.assert_array_max_ulp(got, ag.softmax(-z), maxulp=2)
    np.testing.assert_allclose(dom.softmin_vjp(z, np.ones_like(z)), 0.0, atol=1e-16)
    assert dom.softmin(np.array(5.0)) == 1.0 and dom.softmin(np.zeros((2, 0))).shape == (2, 0)


@pytest.fixture(scope="module")
def norm_built(tmp_path_factory):
    """Class-axis functions with a sum of squares and with K outside a sum (built apart from the
    accuracy specs: the normalised vector is 0/0 at the zero vector, which the accuracy grid
    samples, and softmax's VJP is over 4 ulp, a known limit of tests/test_accuracy.py)."""
    return _numpy_package(tmp_path_factory.mktemp("norm"), (
        "activations:\n"
        "  l2_normalize:\n    expr: z[i]/sqrt(Sum(z[j]**2, (j, 1, K)))\n"
        "  scaled_softmax:\n    expr: K*exp(z[i])/Sum(exp(z[j]), (j, 1, K))\n"), "norm")


def test_a_normalised_vector_is_right_at_any_scale(norm_built):
    """z / |z| is homogeneous of degree 0: its sum of squares is taken of z / max|z| (scale_free),
    so neither overflows past |z| = 1.3e154 nor underflows below 1e-154; the VJP (degree -1)
    likewise."""
    v = np.array([[3.0, -4.0, 0.5], [1.0, 0.0, 0.0]])
    want = v / np.sqrt((v**2).sum(axis=-1, keepdims=True))
    g = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    vjp = norm_built.l2_normalize_vjp(v, g)
    for s in (1e-300, 1e-200, 1.0, 1e200, 1e300):
        with np.errstate(over="raise", under="ignore", invalid="raise"):
            np.testing.assert_array_max_ulp(norm_built.l2_normalize(v * s), want, maxulp=4)
            np.testing.assert_allclose(norm_built.l2_normalize_vjp(v * s, g) * s, vjp, rtol=1e-15)


def test_k_outside_a_sum_is_the_number_of_classes(norm_built, ag):
    for shape in ((5,), (2, 3), (4, 1, 7)):
        z = np.random.default_rng(1).normal(size=shape)
        np.testing.assert_allclose(norm_built.scaled_softmax(z), ag.softmax(z) * shape[-1], rtol=1e-14)


# -- a class-axis function with a parameter: softmax with a temperature ------------------------------

TEMPERATURE_SPEC = """\
activations:
  softmax_temp:
    expr: exp(z[i]/temperature)/Sum(exp(z[j]/temperature), (j, 1, K))
    params: {temperature: 2.0}
  log_softmax_temp:
    expr: z[i]/temperature - log(Sum(exp(z[j]/temperature), (j, 1, K)))
    params: {temperature: 2.0}
"""


@pytest.fixture(scope="module")
def temp_built(tmp_path_factory):
    work = tmp_path_factory.mktemp("temperature")
    (work / "t.yaml").write_text(TEMPERATURE_SPEC, encoding="utf-8")
    assert main(["build", "--spec", str(work / "t.yaml"), "--out", str(work / "o"), "--package", "temp", "--quiet"]) == 0
    import importlib

    sys.path.insert(0, str(work / "o"))
    try:
        return work, importlib.import_module("temp")
    finally:
        sys.path.remove(str(work / "o"))


def test_a_temperature_shifts_by_the_max_over_the_temperature(temp_built, ag):
    """exp(z/T) has weight 1/T, positive because T's default is: the max shift applies, so the
    dominant logit at +-1000 with T = 0.5 neither overflows nor gives inf/inf."""
    _, temp = temp_built
    z = np.array([[-1000.0, 0.0, 1000.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    for t in (0.5, 2.0):  # z / t is exact: the bundled softmax of it is the reference
        np.testing.assert_array_max_ulp(temp.softmax_temp(z, temperature=t), ag.softmax(z / t), maxulp=4)
        np.testing.assert_allclose(temp.log_softmax_temp(z, temperature=t), ag.log_softmax(z / t), rtol=1e-14, atol=1e-300)
    # t = 7: z / 7 rounds (by up to 1e-14 at 1000/7, 100 ulps of exp(-285)); the runtime carries
    # (z - M) / T in double-double, so it is measured against mpmath
    import mpmath

    with mpmath.workdps(50):
        exact = np.array([[float(mpmath.exp(mpmath.mpf(v) / 7) / mpmath.fsum(mpmath.exp(mpmath.mpf(u) / 7) for u in row)) for v in row] for row in z])
    np.testing.assert_array_max_ulp(temp.softmax_temp(z, temperature=7.0), exact, maxulp=4)
    g = np.array([1.0, -0.5, 0.25])
    np.testing.assert_allclose(temp.softmax_temp_vjp(z, g, temperature=0.5), np.einsum("...i,...ik->...k", g, temp.softmax_temp_jacobian(z, temperature=0.5)), atol=1e-15)
    assert temp.softmax_temp(np.array(3.0)) == 1.0


def test_a_temperature_in_the_frameworks(temp_built):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    import importlib

    work, _ = temp_built
    sys.path.insert(0, str(work / "o"))
    try:
        tt = importlib.import_module("temp_torch")
    finally:
        sys.path.remove(str(work / "o"))
    z = torch.tensor([[-30.0, 0.0, 30.0], [1.0, 2.0, 3.5]], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(tt.softmax_temp(z, temperature=0.7), torch.softmax(z / 0.7, -1))
    assert torch.autograd.gradcheck(lambda a: tt.softmax_temp(a, temperature=0.7), (z,))
    assert torch.autograd.gradgradcheck(lambda a: tt.log_softmax_temp(a, temperature=0.7), (z,))


def test_a_temperature_in_jax(temp_built):
    jax = pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]'")
    import importlib

    from jax.test_util import check_grads

    jax.config.update("jax_enable_x64", True)
    work, _ = temp_built
    sys.path.insert(0, str(work / "o"))
    try:
        tj = importlib.import_module("temp_jax")
    finally:
        sys.path.remove(str(work / "o"))
    z = np.array([[-30.0, 0.0, 30.0], [1.0, 2.0, 3.5]])
    check_grads(lambda a: tj.softmax_temp(a, temperature=0.7), (z,), order=2, modes=["fwd", "rev"])
    with pytest.raises(ValueError, match="not derived"):
        jax.grad(lambda t: tj.softmax_temp(z, temperature=t).sum())(0.7)


def test_class_axis_functions_with_a_parameter_meet_the_accuracy_target(temp_built):
    from actgen import accuracy as A
    from actgen.model import load_spec
    from actgen.pipeline import derive_all

    import dataclasses

    work, temp = temp_built
    derived = derive_all(load_spec(str(work / "t.yaml")))
    rows = [dataclasses.asdict(m) for m in A.measure_all(derived, temp) if m.name.startswith("softmax_temp")]
    assert rows
    _check_rows(rows)


UNBUNDLED_SPEC = """\
activations:
  erf_act:
    expr: erf(z)
  logish:
    expr: z * log(1 + 1/(1 + exp(-z)))
  softclip:
    expr: (log(1 + exp(50 * z)) - log(1 + exp(50 * (z - 1)))) / 50
"""


def test_activations_from_the_literature_that_stopped_the_build(tmp_path):
    """Three activations nobody bundled each stopped `actgen build`: erf's derivative from its
    output came out through erfinv, which no target prints (an internal error); logish's derivative
    has logistic(z) in a denominator, where rule logistic_pair_sum took a polynomial for granted (an
    internal PolynomialError); softclip's property analysis had SymPy factor a polynomial of degree
    100 in exp(z) (past the 60 s budget per entry; the solvers now refuse a degree above
    MAX_EXP_DEGREE, deterministically), and then measured 18.4 ulp at z = -0.7 (50 z rounds: now a
    compensated exponent) and its derivative 1.3e6 ulp at z = 1.3 (logistic(50 z) - logistic(50 z - 50)
    cancelled: rule logistic_complement_difference). Each now builds, in ulps of mpmath (float64, values and
    derivatives: SymPy's derivative of the spec formula, evaluated by actgen.accuracy.reference)."""
    import json

    import sympy as sp

    from actgen.accuracy import reference, ulp_error

    pkg = _numpy_package(tmp_path, UNBUNDLED_SPEC, "lit")
    z, a = sp.Symbol("z", real=True), sp.Rational(50)
    formulas = {
        "erf_act": sp.erf(z),
        "logish": z * sp.log(1 + 1 / (1 + sp.exp(-z))),
        "softclip": (sp.log(1 + sp.exp(a * z)) - sp.log(1 + sp.exp(a * (z - 1)))) / a,
    }
    points = np.array([-30.0, -3.5, -0.7, -1e-3, 0.02, 0.5, 0.98, 1.3, 4.0, 25.0])
    for name, f in formulas.items():
        for label, expr in ((name, f), (f"{name}_grad", sp.diff(f, z))):
            got = getattr(pkg, label)(points)
            worst = max(ulp_error(float(g), reference(expr, {z: float(v)})) for g, v in zip(got, points))
            assert worst <= 4.0, (label, worst)
    assert not hasattr(pkg, "erf_act_grad_from_output")
    props = {a["name"]: a["properties"] for a in json.loads((tmp_path / "out" / "catalog.json").read_text(encoding="utf-8"))["activations"]}
    assert props["softclip"]["bounded_below"]["value"] is True and props["softclip"]["bounded_above"]["value"] is True
