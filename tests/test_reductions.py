"""Row reductions: a class-axis expression with no free index gives one value per row.

The bundled ``logsumexp`` is checked against the peers that have it (scipy.special.logsumexp,
torch.logsumexp, jax.nn.logsumexp), and a spec of reductions nobody bundled (a norm, a
log-mean-exp, a smooth maximum with a temperature, a mean whose gradient is the constant 1/K) is
built for all three targets and checked against direct formulas, at scales where the naive
formulas overflow, with finite differences and each framework's own gradient checks.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp
from scipy.special import softmax as scipy_softmax

from actgen.cli import main

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(2026)

REDUCTIONS_SPEC = """\
activations:
  l2_norm:
    expr: sqrt(Sum(z[j]**2, (j, 1, K)))
  logmeanexp:
    expr: log(Sum(exp(z[j]), (j, 1, K)) / K)
  smooth_max:
    expr: tau * log(Sum(exp(z[j] / tau), (j, 1, K)))
    params: {tau: 0.5}
  row_mean:
    expr: Sum(z[j], (j, 1, K)) / K
"""

AXES = (-1, 0, 1, None)


@pytest.fixture(scope="module")
def red(tmp_path_factory):
    """REDUCTIONS_SPEC built for every target; the folder holding the packages."""
    work = tmp_path_factory.mktemp("reductions")
    (work / "r.yaml").write_text(REDUCTIONS_SPEC, encoding="utf-8")
    assert main(["build", "--spec", str(work / "r.yaml"), "--out", str(work / "out"), "--package", "red", "--quiet"]) == 0
    return work / "out"


def _import(folder, name):
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


@pytest.fixture(scope="module")
def rn(red):
    return _import(red, "red")


def _fd_gradient(f, z, h=1e-6):
    """Central differences of a row reduction over the last axis (evidence, not proof)."""
    out = np.empty_like(z)
    for k in range(z.shape[-1]):
        e = np.zeros_like(z)
        e[..., k] = h
        out[..., k] = (f(z + e) - f(z - e)) / (2 * h)
    return out


# -- the bundled logsumexp -----------------------------------------------------------------------------


def test_logsumexp_matches_scipy_on_every_axis(ag):
    z = RNG.normal(size=(4, 5, 3)) * 40
    for axis in AXES:
        for keepdims in (False, True):
            got = ag.logsumexp(z, axis=axis, keepdims=keepdims)
            want = scipy_logsumexp(z, axis=axis, keepdims=keepdims)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=4e-15, atol=0)


def test_logsumexp_is_exact_where_the_naive_formula_overflows(ag):
    rows = np.array([[1000.0, 999.0, -5.0], [-1000.0, -1001.0, -1e4], [1e300, 0.0, -1e300], [0.0, -40.0, -80.0]])
    with np.errstate(all="raise"):
        got = ag.logsumexp(rows)
    np.testing.assert_array_max_ulp(got, scipy_logsumexp(rows, axis=-1), maxulp=1)
    # a dominant entry: log(1 + exp(-40) + exp(-80)) is exp(-40) to double precision, not 0
    assert got[3] == pytest.approx(np.exp(-40.0) + np.exp(-80.0) - np.exp(-80.0) / 2, rel=1e-15)


def test_logsumexp_of_rows_with_infinite_entries(ag):
    """A row whose max is infinite is shifted by 0 (max_shift holds for every M): a fully masked
    row of -inf is -inf, a row holding +inf is +inf, as SciPy gives."""
    inf = np.inf
    rows = np.array([[-inf, -inf, -inf], [inf, 1.0, 2.0], [inf, inf, 0.0], [-inf, 0.5, -inf], [1000.0, 999.0, -inf]])
    np.testing.assert_array_equal(ag.logsumexp(rows), scipy_logsumexp(rows, axis=-1))
    np.testing.assert_allclose(ag.logsumexp_grad(rows)[3:], scipy_softmax(rows[3:], axis=-1), rtol=4e-15)


def test_logsumexp_gradient_is_the_softmax_and_the_vjp_scales_it(ag):
    z = RNG.normal(size=(3, 4)) * 3
    grad = ag.logsumexp_grad(z)
    np.testing.assert_allclose(grad, ag.softmax(z), rtol=4e-15)
    np.testing.assert_allclose(grad, _fd_gradient(ag.logsumexp, z), rtol=1e-5, atol=1e-9)  # evidence
    g = RNG.normal(size=3)
    np.testing.assert_allclose(ag.logsumexp_vjp(z, g), g[:, None] * grad, rtol=4e-15)
    np.testing.assert_allclose(ag.logsumexp_vjp(z, g[:, None]), g[:, None] * grad, rtol=4e-15)  # keepdims-shaped g
    g0 = RNG.normal(size=4)
    np.testing.assert_allclose(ag.logsumexp_vjp(z, g0, axis=0), g0[None, :] * ag.logsumexp_grad(z, axis=0), rtol=4e-15)
    assert ag.logsumexp_grad(z, axis=None).sum() == pytest.approx(1.0, rel=1e-15)
    assert ag.logsumexp_vjp(z, 2.0, axis=None).sum() == pytest.approx(2.0, rel=1e-15)


def test_logsumexp_dtypes_and_edge_shapes(ag):
    z32 = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    assert ag.logsumexp(z32).dtype == np.float32 and ag.logsumexp(z32).shape == (1,)
    assert ag.logsumexp_grad(z32).dtype == np.float32 and ag.logsumexp_grad(z32).shape == (1, 3)
    assert ag.logsumexp(np.array([1, 2, 3])).dtype == np.float64
    assert ag.logsumexp(1000.0) == 1000.0 and np.shape(ag.logsumexp(1000.0)) == ()
    empty = ag.logsumexp(np.zeros((3, 0)))
    assert empty.shape == (3,) and np.all(empty == -np.inf)  # log of an empty sum, as SciPy
    with pytest.raises(np.exceptions.AxisError):
        ag.logsumexp(np.zeros((2, 3)), axis=2)


def test_logsumexp_matches_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    at = _import(ROOT / "generated", "actgen_torch")
    z = torch.tensor(RNG.normal(size=(4, 5, 3)) * 40)
    for dim in (-1, 0, 1):
        for keepdim in (False, True):
            torch.testing.assert_close(at.logsumexp(z, dim=dim, keepdim=keepdim), torch.logsumexp(z, dim=dim, keepdim=keepdim), rtol=4e-15, atol=0)
    torch.testing.assert_close(at.logsumexp(z, dim=None), torch.logsumexp(z.reshape(-1), dim=0), rtol=4e-15, atol=0)
    x = torch.tensor(RNG.normal(size=(2, 3, 4)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: at.logsumexp(t, dim=1), (x,))
    assert torch.autograd.gradgradcheck(lambda t: at.logsumexp(t, dim=1), (x,))
    (g,) = torch.autograd.grad(at.logsumexp(x, dim=1).sum(), x)
    torch.testing.assert_close(g, torch.softmax(x.detach(), dim=1), rtol=4e-15, atol=1e-17)
    torch.testing.assert_close(at.logsumexp_grad(x.detach(), dim=1), torch.softmax(x.detach(), dim=1), rtol=4e-15, atol=1e-17)
    module = at.nn.LogSumExp(dim=0, keepdim=True)
    assert module(x).shape == (1, 3, 4) and "keepdim=True" in repr(module)
    assert at.logsumexp(torch.tensor([1.0, 2.0], dtype=torch.float32)).dtype == torch.float32


def test_logsumexp_matches_jax():
    jax = pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]'")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.test_util import check_grads

    aj = _import(ROOT / "generated", "actgen_jax")
    z = jnp.asarray(RNG.normal(size=(4, 5, 3)) * 40)
    for axis in AXES:
        for keepdims in (False, True):
            np.testing.assert_allclose(aj.logsumexp(z, axis=axis, keepdims=keepdims), jax.nn.logsumexp(z, axis=axis, keepdims=keepdims), rtol=4e-15, atol=0)
    x = jnp.asarray(RNG.normal(size=(2, 3, 4)))
    check_grads(lambda t: aj.logsumexp(t, axis=1), (x,), order=2, modes=["fwd", "rev"])
    np.testing.assert_allclose(jax.grad(lambda t: aj.logsumexp(t).sum())(x), jax.nn.softmax(x), rtol=4e-15)
    np.testing.assert_allclose(jax.jit(jax.vmap(aj.logsumexp))(x), jax.nn.logsumexp(x, axis=-1), rtol=4e-15)
    hess = jax.hessian(aj.logsumexp)(jnp.array([1.0, 2.0, 0.5]))
    s = jax.nn.softmax(jnp.array([1.0, 2.0, 0.5]))
    np.testing.assert_allclose(hess, jnp.diag(s) - jnp.outer(s, s), rtol=1e-14, atol=1e-16)


# -- reductions nobody bundled -----------------------------------------------------------------------


def test_a_norm_is_right_at_every_scale_and_zero_at_zero(rn):
    """sqrt(Sum(z_j**2)) is homogeneous of degree 1: evaluated on z / max|z| (scale_free), it
    neither overflows past 1.3e154 nor underflows below 1e-154; at the zero vector the scale is
    1 and the norm 0 (not 0 * (0/0))."""
    v = np.array([[3.0, -4.0, 0.5], [1.0, 0.0, 0.0]])
    want = np.sqrt((v**2).sum(axis=-1))
    grad = v / want[:, None]
    for s in (1e-300, 1e-200, 1.0, 1e200, 1e300):
        with np.errstate(over="raise", invalid="raise"):
            np.testing.assert_array_max_ulp(rn.l2_norm(v * s), want * s, maxulp=2)
            np.testing.assert_array_max_ulp(rn.l2_norm_grad(v * s), grad, maxulp=2)
    assert rn.l2_norm(np.zeros(3)) == 0.0 and rn.l2_norm(np.zeros((2, 3)), axis=None) == 0.0


def test_a_mean_inside_a_log_is_shifted_too(rn):
    """log(Sum(exp(z_j)) / K) = log(1/K) + M + log(Sum(exp(z_j - M))) (rule logsumexp with a
    positive factor): finite at +-1000 where the naive form gives inf and -inf."""
    z = np.array([[1000.0, 1000.0], [-1000.0, -1000.0], [0.5, -2.0]])
    with np.errstate(all="raise"):
        got = rn.logmeanexp(z)
    np.testing.assert_allclose(got, scipy_logsumexp(z, axis=-1) - np.log(2.0), rtol=4e-15)
    np.testing.assert_allclose(rn.logmeanexp_grad(z), scipy_softmax(z, axis=-1), rtol=4e-15)


def test_a_smooth_max_with_a_temperature(rn):
    z = RNG.normal(size=(3, 4)) * 5
    for tau in (0.5, 0.01, 3.0):
        np.testing.assert_allclose(rn.smooth_max(z, tau=tau), tau * scipy_logsumexp(z / tau, axis=-1), rtol=1e-14)
        np.testing.assert_allclose(rn.smooth_max_grad(z, tau=tau), _fd_gradient(lambda x: rn.smooth_max(x, tau=tau), z, 1e-7), rtol=1e-4, atol=1e-7)  # evidence
    assert rn.smooth_max(np.array([1000.0, -1000.0]), tau=0.01) == 1000.0


def test_a_constant_gradient_has_the_input_shape(rn):
    z = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(rn.row_mean(z), z.mean(axis=-1), rtol=4e-15)
    assert rn.row_mean_grad(z).shape == z.shape and np.all(rn.row_mean_grad(z) == 0.25)
    np.testing.assert_allclose(rn.row_mean_grad(z, axis=None), np.full(z.shape, 1 / z.size), rtol=4e-15)
    np.testing.assert_allclose(rn.row_mean_vjp(z, np.arange(3.0)), np.arange(3.0)[:, None] * 0.25 * np.ones(z.shape), rtol=4e-15)
    assert rn.row_mean_grad(z).flags.writeable


def test_user_reductions_in_pytorch(red):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    rt = _import(red, "red_torch")
    x = torch.tensor(RNG.normal(size=(2, 3, 4)), requires_grad=True)
    for name in ("l2_norm", "logmeanexp", "smooth_max", "row_mean"):
        f = getattr(rt, name)
        assert torch.autograd.gradcheck(lambda t: f(t, dim=1), (x,)), name
        assert torch.autograd.gradgradcheck(lambda t: f(t, dim=1), (x,)), name
    torch.testing.assert_close(rt.l2_norm(x.detach() * 1e200, dim=-1) / 1e200, torch.linalg.vector_norm(x.detach(), dim=-1), rtol=4e-15, atol=0)
    torch.testing.assert_close(rt.smooth_max(x.detach(), tau=0.25), 0.25 * torch.logsumexp(x.detach() / 0.25, dim=-1), rtol=1e-14, atol=0)


def test_user_reductions_in_jax(red):
    jax = pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]'")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.test_util import check_grads

    rj = _import(red, "red_jax")
    x = jnp.asarray(RNG.normal(size=(2, 3, 4)))
    for name in ("l2_norm", "logmeanexp", "smooth_max", "row_mean"):
        check_grads(lambda t: getattr(rj, name)(t, axis=1), (x,), order=2, modes=["fwd", "rev"])
    np.testing.assert_allclose(jax.jit(rj.l2_norm)(x * 1e200) / 1e200, jnp.linalg.norm(x, axis=-1), rtol=4e-15)
    np.testing.assert_allclose(jax.grad(lambda t: rj.l2_norm(t, axis=None))(x), x / jnp.linalg.norm(x), rtol=1e-14)
