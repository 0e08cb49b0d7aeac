"""Split activations: f(a, b) of the two halves of the input along an axis (``split: true``).

The bundled ``glu`` is checked against torch.nn.functional.glu and jax.nn.glu, and a spec of the
GLU family nobody bundled (SwiGLU, GEGLU, ReGLU and a SwiGLU with a learnable-style slope
parameter) is built for all three targets: values against direct formulas and in the tails,
gradients against finite differences (evidence) and each framework's gradient checks at first
and second order.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, ndtr

from actgen.cli import main

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(7)

GLU_FAMILY_SPEC = """\
activations:
  swiglu:
    expr: a * b / (1 + exp(-b))
    split: true
    aliases: [swish_glu]
  geglu:
    expr: a * b * (1 + erf(b / sqrt(2))) / 2
    split: true
  reglu:
    expr: a * Max(0, b)
    split: true
  swiglu_beta:
    expr: a * b / (1 + exp(-beta * b))
    params: {beta: 1.5}
    split: true
"""

FAMILY = {
    "swiglu": lambda a, b: a * b * expit(b),
    "geglu": lambda a, b: a * b * ndtr(b),
    "reglu": lambda a, b: a * np.maximum(b, 0.0),
    "swiglu_beta": lambda a, b: a * b * expit(1.5 * b),
}


def _import(folder, name):
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


@pytest.fixture(scope="module")
def fam(tmp_path_factory):
    work = tmp_path_factory.mktemp("split")
    (work / "s.yaml").write_text(GLU_FAMILY_SPEC, encoding="utf-8")
    assert main(["build", "--spec", str(work / "s.yaml"), "--out", str(work / "out"), "--package", "fam", "--quiet"]) == 0
    return work / "out"


# -- the bundled glu -----------------------------------------------------------------------------


def test_glu_is_a_times_sigmoid_b_on_the_halves(ag):
    z = RNG.normal(size=(3, 8)) * 5
    a, b = z[:, :4], z[:, 4:]
    np.testing.assert_allclose(ag.glu(z), a * expit(b), rtol=4e-15)
    np.testing.assert_allclose(ag.glu_grad_a(z), expit(b), rtol=4e-15)
    np.testing.assert_allclose(ag.glu_grad_b(z), a * expit(b) * expit(-b), rtol=1e-14)
    g = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(ag.glu_vjp(z, g), np.concatenate([g * expit(b), g * a * expit(b) * expit(-b)], axis=-1), rtol=1e-14)
    zt = RNG.normal(size=(6, 3))
    np.testing.assert_allclose(ag.glu(zt, axis=0), zt[:3] * expit(zt[3:]), rtol=4e-15)
    assert ag.glu_vjp(zt, 1.0, axis=0).shape == zt.shape


def test_glu_tails_dtypes_and_errors(ag):
    with np.errstate(all="raise"):
        got = ag.glu(np.array([2.0, 3.0, -1000.0, 1000.0]))
    assert got[0] == 0.0 and got[1] == 3.0
    with np.errstate(all="raise"):
        got = ag.glu(np.array([1e300, -745.0]))  # a huge a, a subnormal gate
    np.testing.assert_allclose(got, 1e300 * np.exp(-55.0) * np.exp(-690.0), rtol=1e-12)
    assert ag.glu(np.ones(4, dtype=np.float32)).dtype == np.float32
    assert ag.glu_vjp(np.ones(4, dtype=np.float32), 1.0).dtype == np.float32
    with pytest.raises(ValueError, match="glu splits axis -1 into two halves; its length 3 is odd"):
        ag.glu(np.ones(3))
    with pytest.raises(ValueError, match="got a scalar"):
        ag.glu(1.0)


def test_glu_matches_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    at = _import(ROOT / "generated", "actgen_torch")
    x = torch.tensor(RNG.normal(size=(2, 6, 3)) * 3, requires_grad=True)
    for dim in (1, -2):
        torch.testing.assert_close(at.glu(x, dim=dim), torch.nn.functional.glu(x, dim=dim), rtol=4e-15, atol=1e-300)
    (g,) = torch.autograd.grad(at.glu(x, dim=1).sum(), x)
    (g_ref,) = torch.autograd.grad(torch.nn.functional.glu(x, dim=1).sum(), x)
    # PyTorch's glu backward computes sigmoid(b) (1 - sigmoid(b)), which cancels for large b
    torch.testing.assert_close(g, g_ref, rtol=1e-11, atol=1e-300)
    assert torch.autograd.gradcheck(lambda t: at.glu(t, dim=1), (x,))
    assert torch.autograd.gradgradcheck(lambda t: at.glu(t, dim=1), (x,))
    assert at.nn.GLU(dim=1)(x).shape == (2, 3, 3) and "dim=1" in repr(at.nn.GLU(dim=1))


def test_glu_matches_jax():
    jax = pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]'")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.test_util import check_grads

    aj = _import(ROOT / "generated", "actgen_jax")
    x = jnp.asarray(RNG.normal(size=(2, 6, 3)) * 3)
    np.testing.assert_allclose(aj.glu(x, axis=1), jax.nn.glu(x, axis=1), rtol=4e-15)
    grad = jax.grad(lambda t: aj.glu(t, axis=1).sum())(x)
    a, b = np.asarray(x)[:, :3], np.asarray(x)[:, 3:]
    np.testing.assert_allclose(grad, np.concatenate([expit(b), a * expit(b) * expit(-b)], axis=1), rtol=1e-14)
    # jax.nn.glu's autodiff computes sigmoid(b) (1 - sigmoid(b)), which cancels for large b
    np.testing.assert_allclose(grad, jax.grad(lambda t: jax.nn.glu(t, axis=1).sum())(x), rtol=1e-11)
    check_grads(lambda t: aj.glu(t, axis=1), (x,), order=2, modes=["fwd", "rev"])
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda t: aj.glu(t, axis=0)))(x), jax.nn.glu(x, axis=1), rtol=4e-15)


# -- the GLU family, from a user's spec ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_family_values_and_partial_derivatives(fam, name):
    pkg = _import(fam, "fam")
    z = RNG.normal(size=(3, 10)) * 3
    a, b = z[:, :5], z[:, 5:]
    f = getattr(pkg, name)
    np.testing.assert_allclose(f(z), FAMILY[name](a, b), rtol=1e-13, atol=1e-300)
    h = 1e-6
    for half, grad in (("a", getattr(pkg, f"{name}_grad_a")), ("b", getattr(pkg, f"{name}_grad_b"))):
        fd = np.empty_like(a)
        for k in range(5):
            e = np.zeros_like(z)
            e[:, k + (5 if half == "b" else 0)] = h
            fd[:, k] = (f(z + e) - f(z - e))[:, k] / (2 * h)
        np.testing.assert_allclose(grad(z), fd, rtol=1e-5, atol=1e-7)  # evidence
    g = RNG.normal(size=a.shape)
    np.testing.assert_allclose(getattr(pkg, f"{name}_vjp")(z, g), np.concatenate([g * getattr(pkg, f"{name}_grad_a")(z), g * getattr(pkg, f"{name}_grad_b")(z)], axis=-1), rtol=4e-15)


def test_an_alias_is_the_same_function_in_every_package(fam):
    for package in ("fam", "fam_torch", "fam_jax"):
        if package != "fam":
            pytest.importorskip(package.split("_")[1], reason=f"{package.split('_')[1]} is not installed")
        pkg = _import(fam, package)
        assert pkg.swish_glu is pkg.swiglu and "swish_glu" in pkg.__all__


def test_family_tails(fam):
    """The gate's tail: b * sigmoid(b) and b * Phi(b) at b = -745 are subnormal products of a normal
    factor and a vanishing one (split_exp keeps them exact); a huge a times a vanishing gate is not
    inf * 0."""
    pkg = _import(fam, "fam")
    with np.errstate(all="raise"):
        assert pkg.swiglu(np.array([1.0, -700.0]))[0] == pytest.approx(-700.0 * np.exp(-700.0), rel=1e-13)
        assert pkg.swiglu(np.array([1e300, -40.0]))[0] == pytest.approx(1e300 * -40.0 * expit(-40.0), rel=1e-13)
        assert pkg.geglu(np.array([1.0, -30.0]))[0] == pytest.approx(-30.0 * ndtr(-30.0), rel=1e-12)
    assert pkg.swiglu_beta(np.array([2.0, 1.0]), beta=0.5)[0] == pytest.approx(2.0 * expit(0.5), rel=1e-15)


def test_family_in_pytorch(fam):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    pt = _import(fam, "fam_torch")
    x = torch.tensor(RNG.normal(size=(2, 4, 3)), requires_grad=True)
    for name in FAMILY:
        f = getattr(pt, name)
        assert torch.autograd.gradcheck(lambda t: f(t, dim=1), (x,)), name
        assert torch.autograd.gradgradcheck(lambda t: f(t, dim=1), (x,)), name
        a, b = x.detach().numpy()[:, :2], x.detach().numpy()[:, 2:]
        np.testing.assert_allclose(f(x.detach(), dim=1).numpy(), FAMILY[name](a, b), rtol=1e-13)
    module = pt.nn.SwigluBeta(dim=1, beta=0.5)
    torch.testing.assert_close(module(x.detach()), pt.swiglu_beta(x.detach(), dim=1, beta=0.5))
    compiled = torch.compile(lambda t: pt.swiglu(t, dim=1), fullgraph=True)
    torch.testing.assert_close(compiled(x.detach()), pt.swiglu(x.detach(), dim=1))


def test_family_in_jax(fam):
    jax = pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]'")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.test_util import check_grads

    pj = _import(fam, "fam_jax")
    x = jnp.asarray(RNG.normal(size=(2, 4, 3)))
    for name in FAMILY:
        check_grads(lambda t: getattr(pj, name)(t, axis=1), (x,), order=2, modes=["fwd", "rev"])
        a, b = np.asarray(x)[:, :2], np.asarray(x)[:, 2:]
        np.testing.assert_allclose(jax.jit(lambda t: getattr(pj, name)(t, axis=1))(x), FAMILY[name](a, b), rtol=1e-13)
