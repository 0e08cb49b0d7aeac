"""Losses with further prediction inputs (``inputs: [var]``): a gradient for each input.

The bundled ``gaussian_nll`` and ``margin_ranking`` are checked against PyTorch's
``gaussian_nll_loss`` and ``margin_ranking_loss`` (values, every reduction, and the gradients of
every input through autograd), in NumPy, PyTorch and JAX; a loss nobody bundled, with two
further inputs and a parameter, is built from a user's spec and checked against finite
differences (evidence) and the frameworks' gradient checks.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from actgen.cli import main

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(11)
REDUCTIONS = ("mean", "sum", "none")

# a Student-t negative log-likelihood (up to constants) in a location, a scale and a
# degrees-of-freedom input, with a parameter: two further inputs
USER_SPEC = """\
losses:
  student_nll:
    expr: log(scale) + (nu + 1) / 2 * log(1 + ((y - y_hat) / scale)**2 / nu) + w * y_hat**2
    inputs: [scale, nu]
    params: {w: 0.01}
    domain: {scale: positive, nu: positive}
"""


def _import(folder, name):
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def _data():
    y = RNG.normal(size=(4, 3))
    mu = RNG.normal(size=(4, 3))
    var = RNG.uniform(0.2, 3.0, size=(4, 3))
    return y, mu, var


def test_gaussian_nll_matches_pytorch_in_numpy(ag):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    y, mu, var = _data()
    F = torch.nn.functional
    for reduction in REDUCTIONS:
        np.testing.assert_allclose(ag.gaussian_nll(y, mu, var, reduction=reduction),
                                   F.gaussian_nll_loss(torch.tensor(mu), torch.tensor(y), torch.tensor(var), reduction=reduction).numpy(), rtol=4e-15)
    m, v = torch.tensor(mu, requires_grad=True), torch.tensor(var, requires_grad=True)
    dm, dv = torch.autograd.grad(F.gaussian_nll_loss(m, torch.tensor(y), v), (m, v))
    np.testing.assert_allclose(ag.gaussian_nll_grad(y, mu, var), dm.numpy(), rtol=1e-14)
    np.testing.assert_allclose(ag.gaussian_nll_grad_var(y, mu, var), dv.numpy(), rtol=1e-13, atol=1e-15)  # it crosses zero at (y_hat - y)**2 = var
    # a variance per row broadcasts against the predictions
    assert ag.gaussian_nll(y, mu, var[:, :1], reduction="none").shape == (4, 3)


def test_margin_ranking_matches_pytorch_in_numpy(ag):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    x1, x2 = RNG.normal(size=8), RNG.normal(size=8)
    t = np.where(RNG.random(8) < 0.5, -1.0, 1.0)
    for margin in (0.0, 0.3):
        for reduction in REDUCTIONS:
            want = torch.nn.functional.margin_ranking_loss(torch.tensor(x1), torch.tensor(x2), torch.tensor(t), margin=margin, reduction=reduction)
            np.testing.assert_allclose(ag.margin_ranking(t, x1, x2, reduction=reduction, margin=margin), want.numpy(), rtol=4e-15, atol=0)
        a, b = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
        da, db = torch.autograd.grad(torch.nn.functional.margin_ranking_loss(a, b, torch.tensor(t), margin=margin), (a, b))
        np.testing.assert_allclose(ag.margin_ranking_grad(t, x1, x2, margin=margin), da.numpy(), rtol=4e-15)
        np.testing.assert_allclose(ag.margin_ranking_grad_x2(t, x1, x2, margin=margin), db.numpy(), rtol=4e-15)


def test_every_input_gets_its_gradient_in_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    at = _import(ROOT / "generated", "actgen_torch")
    F = torch.nn.functional
    y, mu, var = (torch.tensor(a) for a in _data())
    m, v = mu.clone().requires_grad_(), var.clone().requires_grad_()
    for reduction in REDUCTIONS:
        torch.testing.assert_close(at.gaussian_nll(m, y, v, reduction=reduction), F.gaussian_nll_loss(m, y, v, reduction=reduction), rtol=4e-15, atol=0)
    ours = torch.autograd.grad(at.gaussian_nll(m, y, v), (m, v))
    theirs = torch.autograd.grad(F.gaussian_nll_loss(m, y, v), (m, v))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    assert torch.autograd.gradcheck(lambda a, b: at.gaussian_nll(a, y, b), (m, v))
    assert torch.autograd.gradgradcheck(lambda a, b: at.gaussian_nll(a, y, b), (m, v))
    v_row = var[:, :1].clone().requires_grad_()  # broadcast: the gradient is summed to the input's shape
    assert torch.autograd.gradcheck(lambda a, b: at.gaussian_nll(a, y, b), (m, v_row))
    x1, x2 = torch.randn(6, dtype=torch.float64, requires_grad=True), torch.randn(6, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    g_ours = torch.autograd.grad(at.margin_ranking(x1, t, x2, margin=0.2), (x1, x2))
    g_ref = torch.autograd.grad(F.margin_ranking_loss(x1, x2, t, margin=0.2), (x1, x2))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=4e-15, atol=0)
    module = at.nn.GaussianNegativeLogLikelihoodLoss(reduction="sum")
    torch.testing.assert_close(module(m, y, v), at.gaussian_nll(m, y, v, reduction="sum"))


def test_every_input_gets_its_gradient_in_jax():
    jax = pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]'")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.test_util import check_grads

    aj = _import(ROOT / "generated", "actgen_jax")
    ag = _import(ROOT / "generated", "actgen_numpy")
    y, mu, var = _data()
    f = lambda m, v: aj.gaussian_nll(m, jnp.asarray(y), v)  # noqa: E731
    check_grads(f, (jnp.asarray(mu), jnp.asarray(var)), order=2, modes=["fwd", "rev"])
    dm, dv = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.asarray(mu), jnp.asarray(var))
    np.testing.assert_allclose(dm, ag.gaussian_nll_grad(y, mu, var), rtol=1e-14)
    np.testing.assert_allclose(dv, ag.gaussian_nll_grad_var(y, mu, var), rtol=1e-14, atol=1e-16)
    x1, x2 = RNG.normal(size=6), RNG.normal(size=6)
    t = np.array([1.0, -1.0, 1.0, 1.0, -1.0, -1.0])
    g1, g2 = jax.grad(lambda a, b: aj.margin_ranking(a, jnp.asarray(t), b, margin=0.2), argnums=(0, 1))(jnp.asarray(x1), jnp.asarray(x2))
    np.testing.assert_allclose(g1, ag.margin_ranking_grad(t, x1, x2, margin=0.2), rtol=4e-15)
    np.testing.assert_allclose(g2, ag.margin_ranking_grad_x2(t, x1, x2, margin=0.2), rtol=4e-15)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    work = tmp_path_factory.mktemp("student")
    (work / "s.yaml").write_text(USER_SPEC, encoding="utf-8")
    assert main(["build", "--spec", str(work / "s.yaml"), "--out", str(work / "out"), "--package", "stu", "--quiet"]) == 0
    return work / "out"


def _student(y, m, s, nu, w=0.01):
    return np.log(s) + (nu + 1) / 2 * np.log1p(((y - m) / s) ** 2 / nu) + w * m**2


def test_a_users_loss_with_two_further_inputs(student):
    pkg = _import(student, "stu")
    y, m = RNG.normal(size=6), RNG.normal(size=6)
    s, nu = RNG.uniform(0.5, 2.0, 6), RNG.uniform(1.0, 5.0, 6)
    np.testing.assert_allclose(pkg.student_nll(y, m, s, nu, reduction="none"), _student(y, m, s, nu), rtol=1e-13)
    h = 1e-6
    for name, index in (("", 1), ("_scale", 2), ("_nu", 3)):
        args = [y, m, s, nu]
        up, down = list(args), list(args)
        up[index], down[index] = args[index] + h, args[index] - h
        fd = (_student(*up) - _student(*down)) / (2 * h)
        np.testing.assert_allclose(getattr(pkg, f"student_nll_grad{name}")(y, m, s, nu, reduction="none"), fd, rtol=1e-5, atol=1e-8)  # evidence
        # the gradient of the mean is the per-element gradient over N
        np.testing.assert_allclose(getattr(pkg, f"student_nll_grad{name}")(y, m, s, nu), getattr(pkg, f"student_nll_grad{name}")(y, m, s, nu, reduction="none") / 6, rtol=1e-15)


def test_a_users_loss_with_two_further_inputs_in_the_frameworks(student):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    jax = pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]'")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.test_util import check_grads

    pt, pj = _import(student, "stu_torch"), _import(student, "stu_jax")
    y = torch.randn(5, dtype=torch.float64)
    m = torch.randn(5, dtype=torch.float64, requires_grad=True)
    s = (torch.rand(5, dtype=torch.float64) + 0.5).requires_grad_()
    nu = (torch.rand(5, dtype=torch.float64) * 4 + 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: pt.student_nll(a, y, b, c), (m, s, nu))
    assert torch.autograd.gradgradcheck(lambda a, b, c: pt.student_nll(a, y, b, c), (m, s, nu))
    f = lambda a, b, c: pj.student_nll(a, jnp.asarray(y.numpy()), b, c)  # noqa: E731
    check_grads(f, tuple(jnp.asarray(t.detach().numpy()) for t in (m, s, nu)), order=2, modes=["fwd", "rev"])


def test_further_inputs_are_checked_in_the_spec(tmp_path, capsys):
    bad = "losses:\n  foo:\n    expr: (y - y_hat)**2\n    inputs: [var]\n"
    (tmp_path / "bad.yaml").write_text(bad, encoding="utf-8")
    assert main(["build", "--spec", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the expression does not use the input var; use it or remove it from 'inputs'" in err
    for inputs, message in (("[y]", "'y' cannot name an input"), ("var", "expected a list of names; write it as [var]")):
        (tmp_path / "bad.yaml").write_text(f"losses:\n  foo:\n    expr: (y - y_hat)**2\n    inputs: {inputs}\n", encoding="utf-8")
        assert main(["build", "--spec", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("losses:\n  foo:\n    expr: -Sum(y[i] * log(y_hat[i]) * var, (i, 1, K))\n    inputs: [var]\n", encoding="utf-8")
    assert main(["build", "--spec", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "further inputs are supported for elementwise losses only" in capsys.readouterr().err


def test_gaussian_nll_where_the_square_alone_overflows():
    """(y_hat - y)**2 overflows past 1.3e154 (1.8e19 in float32) while the loss is finite for a
    large enough var: the rule square_over divides before it squares (values against mpmath)."""
    import mpmath

    ag = _import(ROOT / "generated", "actgen_numpy")

    def exact(y, m, v):
        y, m, v = mpmath.mpf(y), mpmath.mpf(m), mpmath.mpf(v)
        return float((mpmath.log(v) + (m - y) ** 2 / v) / 2), float((1 - (m - y) ** 2 / v) / (2 * v))

    for y, m, v in ((0.0, 2e154, 1e300), (0.0, 2e154, 2.0), (1.0, -1e200, 1e250)):
        value = ag.gaussian_nll(np.array([y]), np.array([m]), np.array([v]), reduction="none")[0]
        grad_v = ag.gaussian_nll_grad_var(np.array([y]), np.array([m]), np.array([v]), reduction="none")[0]
        want, want_v = exact(y, m, v)
        assert value == pytest.approx(want, rel=1e-15)
        if v > 2:  # at var = 2, (1 - u**2/var)/(2 var) still overflows in u**2/var = 2e308 (-5e307 is finite): not yet rewritten
            assert grad_v == pytest.approx(want_v, rel=1e-14)
    torch = pytest.importorskip("torch")
    at = _import(ROOT / "generated", "actgen_torch")
    f32 = at.gaussian_nll(torch.tensor([2e19]), torch.tensor([0.0]), torch.tensor([2.0]), reduction="none")
    assert torch.isfinite(f32).all() and abs(f32.item() / 1e38 - 1) < 1e-6
