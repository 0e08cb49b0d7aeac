"""Numerics of the committed generated package's losses and fused heads.

Losses are discovered from generated/catalog.json: every loss and head gradient is checked against
central finite differences (away from kinks located from the loss's own SymPy form), every
reduction against independently written NumPy formulas, and the gradient's scaling against the
reduction.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import kink_functions, load_catalog, parse  # noqa: E402

CATALOG = load_catalog()
LOSSES = {l["name"]: l for l in CATALOG["losses"] if not l["inputs"]}  # losses with further inputs: tests/test_multi_input.py
HEADS = {h["name"]: h for h in CATALOG["heads"]}
ACTIVATIONS = {a["name"]: a for a in CATALOG["activations"]}
REDUCTIONS = ("mean", "sum", "none")
Y, YH = sp.Symbol("y", real=True), sp.Symbol("y_hat", real=True)


def _is_class_axis(name):
    return "Sum(" in LOSSES[name]["functions"]["loss"]["sympy"]


ELEMENTWISE_LOSSES = sorted(n for n in LOSSES if not _is_class_axis(n))
CLASS_AXIS_LOSSES = sorted(n for n in LOSSES if _is_class_axis(n))
PARAM_GRADS = sorted((n, p["name"]) for n, l in LOSSES.items() for p in l["params"])


def _defaults(name):
    return {p["name"]: p["default"] for p in LOSSES[name]["params"]}


# -- sampling in each loss's domain ---------------------------------------------------------------


def _sample(domain, shape, rng):
    if domain in ("[0, 1]", "(0, 1)"):
        return rng.uniform(0.05, 0.95, size=shape)
    if domain == "{0, 1}":
        return rng.integers(0, 2, size=shape).astype(float)
    if domain == "{-1, 1}":
        return rng.choice([-1.0, 1.0], size=shape)
    if domain == "positive":
        return rng.uniform(0.2, 3.0, size=shape)
    if domain == "nonnegative":
        return np.where(rng.uniform(size=shape) < 0.2, 0.0, rng.uniform(0.1, 3.0, size=shape))
    assert domain in (None, "real"), f"no sampler for domain {domain!r}; add one"
    return rng.uniform(-2.5, 2.5, size=shape)


def _inputs(name, shape=(4, 5), seed=0):
    rng = np.random.default_rng(seed)
    dom = LOSSES[name].get("domain") or {}
    y = _sample(dom.get("y"), shape, rng)
    y_hat = _sample(dom.get("y_hat"), shape, rng)
    if _is_class_axis(name):  # distributions along the last axis
        y = np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
        e = np.exp(rng.normal(size=shape))
        y_hat = e / e.sum(axis=-1, keepdims=True)
    return y, y_hat


def _smooth(name, y, y_hat, width=1e-3):
    """Mask of the points that are at least ``width`` away from a kink of the loss in y_hat."""
    if _is_class_axis(name):
        if not any(f in LOSSES[name]["functions"]["loss"]["sympy"] for f in ("Abs", "Max", "Min", "Piecewise", "sign")):
            return np.ones(y_hat.shape, dtype=bool)
        # a kink of a class-axis loss (a multi-class margin) depends on the whole row: a point is kept
        # where the loss is one smooth branch along that prediction over +-width, which its one-sided
        # differences show (evidence: they agree to the curvature's w**2 on a branch, and differ by
        # the jump of the slope at a kink)
        import actgen_numpy

        loss = getattr(actgen_numpy, name)
        ok = np.ones(y_hat.shape, dtype=bool)
        base = loss(y, y_hat, reduction="none")
        for idx in np.ndindex(*y_hat.shape):
            step = np.zeros_like(y_hat)
            step[idx] = width
            up = (loss(y, y_hat + step, reduction="none") - base)[idx[:-1]] / width
            down = (base - loss(y, y_hat - step, reduction="none"))[idx[:-1]] / width
            ok[idx] = abs(up - down) <= 1e-6 * max(1.0, abs(up))
        return ok
    syms = {"y": Y, "y_hat": YH, **{p: sp.Symbol(p, positive=True) for p in _defaults(name)}}
    expr = parse(LOSSES[name]["functions"]["loss"]["sympy"], syms)
    expr = expr.subs({sp.Symbol(p, positive=True): v for p, v in _defaults(name).items()})
    ok = np.ones(y_hat.shape, dtype=bool)
    for g in kink_functions(expr):
        if not g.has(YH):
            continue
        f = sp.lambdify((Y, YH), g, modules="numpy")
        lo, hi, mid = (np.broadcast_to(np.asarray(f(y, y_hat + d), dtype=float), y_hat.shape) for d in (-width, width, 0.0))
        ok &= (np.sign(lo) == np.sign(hi)) & (np.abs(mid) >= width)
    return ok


# -- independent reference formulas ---------------------------------------------------------------


def _huber(y, p, delta=1.0):
    d = np.abs(p - y)
    return np.where(d <= delta, 0.5 * d**2, delta * (d - 0.5 * delta))


def _smooth_l1(y, p, beta=1.0):
    d = np.abs(p - y)
    return np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)


REFERENCE = {
    "bce": lambda y, p: -(y * np.log(p) + (1 - y) * np.log(1 - p)),
    "cce": lambda y, p: -np.sum(y * np.log(p), axis=-1),
    "nll": lambda y, p: -np.sum(y * p, axis=-1),
    # keras.losses.Dice on one row: 1 - 2 sum(y p) / (sum(y) + sum(p) + epsilon)
    "dice": lambda y, p, epsilon=1e-7: 1 - 2 * np.sum(y * p, axis=-1) / (np.sum(y, axis=-1) + np.sum(p, axis=-1) + epsilon),
    "mse": lambda y, p: (y - p) ** 2,
    "mae": lambda y, p: np.abs(y - p),
    "hinge": lambda y, p: np.maximum(0.0, 1 - y * p),
    "squared_hinge": lambda y, p: np.maximum(0.0, 1 - y * p) ** 2,
    "huber": _huber,
    "smooth_l1": _smooth_l1,
    "log_cosh": lambda y, p: np.log(np.cosh(p - y)),
    "kl_div": lambda y, p: y * np.log(y / p),
    "poisson_nll": lambda y, p: p - y * np.log(p),
    "multilabel_soft_margin": lambda y, p: np.mean(y * np.logaddexp(0.0, -p) + (1 - y) * np.logaddexp(0.0, p), axis=-1),
    "focal": lambda y, p, gamma=2.0: -(y * (1 - p) ** gamma * np.log(p) + (1 - y) * p**gamma * np.log(1 - p)),
}


def test_the_seed_losses_exist(ag):
    for name in ("bce", "cce", "mse", "mae", "hinge"):
        assert name in LOSSES and callable(getattr(ag, name)) and callable(getattr(ag, name + "_grad"))
    assert {"sigmoid_bce", "softmax_cce"} <= set(HEADS)


@pytest.mark.parametrize("name", sorted(set(LOSSES) & set(REFERENCE)))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_matches_direct_formula(ag, name, reduction):
    y, p = _inputs(name)
    per = REFERENCE[name](y, p)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    got = getattr(ag, name)(y, p, reduction=reduction)
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_default_reduction_is_mean(ag):
    for name in LOSSES:
        y, p = _inputs(name)
        assert getattr(ag, name)(y, p) == pytest.approx(float(getattr(ag, name)(y, p, reduction="mean")), rel=1e-15)
        np.testing.assert_array_equal(getattr(ag, name + "_grad")(y, p), getattr(ag, name + "_grad")(y, p, reduction="mean"))


@pytest.mark.parametrize("name", sorted(n for n in set(LOSSES) & set(REFERENCE) if LOSSES[n]["params"]))
def test_loss_with_non_default_param(ag, name):
    params = _defaults(name)
    y, p = _inputs(name)
    new = {k: v * 0.5 + 0.25 for k, v in params.items()}
    np.testing.assert_allclose(getattr(ag, name)(y, p, reduction="none", **new), REFERENCE[name](y, p, **new), rtol=1e-12, atol=1e-14)


# -- gradients ------------------------------------------------------------------------------------


def _fd_sum(loss, y, p, reduction, h=1e-6, **kw):
    """Central differences of the reduced loss with respect to each element of p."""
    out = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        e = np.zeros_like(p)
        step = h * max(1.0, abs(p[idx]))
        e[idx] = step
        out[idx] = (loss(y, p + e, reduction=reduction, **kw) - loss(y, p - e, reduction=reduction, **kw)) / (2 * step)
    return out


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("reduction", ("mean", "sum"))
def test_loss_grad_matches_central_differences(ag, name, reduction):
    loss, grad = getattr(ag, name), getattr(ag, name + "_grad")
    y, p = _inputs(name, shape=(3, 4))
    ok = _smooth(name, y, p)
    assert ok.mean() > 0.7
    fd = _fd_sum(loss, y, p, reduction)
    np.testing.assert_allclose(grad(y, p, reduction=reduction)[ok], fd[ok], rtol=2e-6, atol=1e-8)


@pytest.mark.parametrize("name", ELEMENTWISE_LOSSES)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_elementwise_loss_grad_hypothesis(ag, name, seed):
    loss, grad = getattr(ag, name), getattr(ag, name + "_grad")
    y, p = _inputs(name, shape=(16,), seed=seed)
    ok = _smooth(name, y, p)
    h = 1e-6 * np.maximum(1.0, np.abs(p))
    fd = (loss(y, p + h, reduction="none") - loss(y, p - h, reduction="none")) / (2 * h)
    np.testing.assert_allclose(grad(y, p, reduction="none")[ok], fd[ok], rtol=2e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_grad_is_consistent_with_reduction(ag, name):
    grad = getattr(ag, name + "_grad")
    y, p = _inputs(name, shape=(4, 5))
    n = p.shape[0] if _is_class_axis(name) else p.size  # samples for a class-axis loss, else elements
    g_sum, g_none, g_mean = (grad(y, p, reduction=r) for r in ("sum", "none", "mean"))
    assert g_sum.shape == g_none.shape == g_mean.shape == p.shape
    np.testing.assert_allclose(g_none, g_sum, rtol=1e-15)
    np.testing.assert_allclose(g_mean, g_sum / n, rtol=1e-14)


@pytest.mark.parametrize("name, param", PARAM_GRADS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_param_grad_matches_central_differences(ag, name, param, reduction):
    loss, grad = getattr(ag, name), getattr(ag, f"{name}_grad_{param}")
    y, p = _inputs(name, shape=(3, 4))
    for value in (_defaults(name)[param], 0.6):
        # relative: a parameter must stay >= 0; a tiny one (epsilon = 1e-7 of mape and dice) takes
        # half its value (1e-13 would leave dice's difference quotient to its rounding: 2e-3 off)
        h = 1e-6 * abs(value) if abs(value) >= 1e-3 else abs(value) / 2 if value else 1e-6
        fd = (loss(y, p, reduction=reduction, **{param: value + h}) - loss(y, p, reduction=reduction, **{param: value - h})) / (2 * h)
        got = grad(y, p, reduction=reduction, **{param: value})
        assert np.shape(got) == np.shape(fd)
        np.testing.assert_allclose(got, fd, rtol=2e-6, atol=1e-8, err_msg=f"{param}={value}")


def test_explicit_gradients_of_the_seed_losses(ag):
    y = np.array([0.5, -1.0, 2.0, 0.25])
    p = np.array([1.5, -1.0, 0.0, 0.75])
    n = y.size
    np.testing.assert_allclose(ag.mse_grad(y, p), 2 * (p - y) / n, rtol=1e-15)
    np.testing.assert_allclose(ag.mae_grad(y, p), np.sign(p - y) / n, rtol=1e-15)
    assert ag.mae_grad(y, p)[1] == 0.0  # y_hat == y: the subgradient 0
    t = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    s = np.array([0.5, 0.5, 1.0, -1.0, 3.0])  # inside the margin, wrong side, on the kink (twice), outside
    np.testing.assert_allclose(ag.hinge_grad(t, s, reduction="sum"), [-1.0, 1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(ag.hinge_grad(t, s), np.array([-1.0, 1.0, 0.0, 0.0, 0.0]) / 5)
    yb, pb = np.array([0.0, 1.0, 0.3]), np.array([0.2, 0.7, 0.9])
    np.testing.assert_allclose(ag.bce_grad(yb, pb), (pb - yb) / (pb * (1 - pb)) / 3, rtol=1e-14)
    yc = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    pc = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
    np.testing.assert_allclose(ag.cce_grad(yc, pc), -yc / pc / 2, rtol=1e-15)  # mean over 2 samples


def test_kink_conventions_of_losses(ag):
    assert float(ag.mae_grad(1.5, 1.5, reduction="sum")) == 0.0
    assert float(ag.hinge_grad(1.0, 1.0, reduction="sum")) == 0.0
    assert float(ag.hinge_grad(-1.0, -1.0, reduction="sum")) == 0.0
    assert float(ag.hinge(1.0, 1.0)) == 0.0
    assert float(ag.squared_hinge_grad(1.0, 1.0, reduction="sum")) == 0.0


def test_cce_means_over_samples_with_the_class_axis_last(ag):
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = np.array([[0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1], [0.3, 0.4, 0.3]])
    per_sample = -np.log(np.array([0.7, 0.8, 0.6, 0.4]))
    np.testing.assert_allclose(ag.cce(y, p, reduction="none"), per_sample, rtol=1e-14)
    np.testing.assert_allclose(ag.cce(y, p), per_sample.mean(), rtol=1e-14)
    np.testing.assert_allclose(ag.cce(y, p, reduction="sum"), per_sample.sum(), rtol=1e-14)
    assert ag.cce(y[0], p[0], reduction="none").shape == ()
    assert float(ag.cce(y[0], p[0])) == pytest.approx(-np.log(0.7), rel=1e-14)
    # 0 log 0 = 0: a zero target with a zero prediction contributes nothing
    assert float(ag.cce(np.array([0.0, 1.0]), np.array([0.0, 1.0]))) == 0.0


@pytest.mark.parametrize("fname", sorted(f["name"] for l in list(LOSSES.values()) + CATALOG["heads"] for f in l["functions"].values()))
def test_invalid_reduction_raises(ag, fname):
    fn = getattr(ag, fname)
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = np.array([[0.6, 0.4], [0.3, 0.7]])
    for bad in ("avg", "MEAN", "", None):
        with pytest.raises(ValueError, match="reduction"):
            fn(y, p, reduction=bad)


@pytest.mark.parametrize(
    "fname, kind", sorted((f["name"], kind) for l in list(LOSSES.values()) + CATALOG["heads"] for kind, f in l["functions"].items())
)
def test_loss_dtype_and_shape(ag, fname, kind):
    fn = getattr(ag, fname)
    y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], dtype=np.float32)
    for reduction in REDUCTIONS:
        out = np.asarray(fn(y, p, reduction=reduction))
        assert out.dtype == np.float32, (reduction, out.dtype)
    if kind in ("loss_grad", "head_grad"):  # gradient with respect to the prediction: its shape
        for reduction in REDUCTIONS:
            assert np.shape(fn(y, p, reduction=reduction)) == p.shape
    else:  # a loss or a parameter's gradient: reduced
        assert np.shape(fn(y, p, reduction="none")) in (p.shape, p.shape[:-1])
        assert np.shape(fn(y, p, reduction="mean")) == np.shape(fn(y, p, reduction="sum")) == ()
    # integer targets do not change the prediction's dtype; integer predictions become float64
    assert np.asarray(fn(y.astype(int), p, reduction="none")).dtype == np.float32
    assert np.asarray(fn(y, np.array([[1, 2, 3], [2, 1, 3]]), reduction="none")).dtype == np.float64


# -- fused heads ----------------------------------------------------------------------------------


def _head_inputs(name, rng, shape=(4, 3)):
    z = rng.normal(size=shape) * 3
    if HEADS[name]["activation"] in ACTIVATIONS and ACTIVATIONS[HEADS[name]["activation"]]["vector"]:
        y = np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
    else:
        y = rng.uniform(0, 1, size=shape)
    return y, z


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_head_equals_loss_of_activation(ag, name, reduction):
    head = getattr(ag, name)
    act, loss = getattr(ag, HEADS[name]["activation"]), getattr(ag, HEADS[name]["loss"])
    y, z = _head_inputs(name, np.random.default_rng(3))
    np.testing.assert_allclose(head(y, z, reduction=reduction), loss(y, act(z), reduction=reduction), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_head_grad_matches_central_differences(ag, name, reduction):
    head, grad = getattr(ag, name), getattr(ag, name + "_grad")
    y, z = _head_inputs(name, np.random.default_rng(4))
    r = "sum" if reduction == "none" else reduction
    np.testing.assert_allclose(grad(y, z, reduction=reduction), _fd_sum(head, y, z, r), rtol=2e-6, atol=1e-8)


def test_fused_head_gradients_are_prediction_minus_target(ag):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(6, 4)) * 2
    y = np.eye(4)[rng.integers(0, 4, size=6)]
    s = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(ag.softmax_cce_grad(y, z), (s - y) / 6, rtol=1e-12, atol=1e-15)  # N = 6 samples
    np.testing.assert_allclose(ag.softmax_cce_grad(y, z, reduction="sum"), s - y, rtol=1e-12, atol=1e-15)
    yb = rng.uniform(size=(6, 4))
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(ag.sigmoid_bce_grad(yb, z), (sig - yb) / 24, rtol=1e-12, atol=1e-15)  # N = 24 elements
    np.testing.assert_allclose(ag.sigmoid_bce_grad(yb, z, reduction="none"), sig - yb, rtol=1e-12, atol=1e-15)


def test_heads_stay_finite_for_large_logits(ag):
    z = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    for y in (0.0, 1.0):
        yv = np.full_like(z, y)
        loss = ag.sigmoid_bce(yv, z, reduction="none")
        assert np.all(np.isfinite(loss))
        np.testing.assert_allclose(loss, y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z), rtol=1e-14)
        assert np.all(np.isfinite(ag.sigmoid_bce_grad(yv, z)))
    assert np.all(np.isfinite(ag.softmax_cce_grad(np.array([1.0, 0.0]), np.array([1000.0, 999.0]))))


def test_softmax_cce_large_logits(ag):
    with np.errstate(all="ignore"):
        got = ag.softmax_cce(np.array([1.0, 0.0]), np.array([1000.0, 999.0]))
    assert float(got) == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-12)


def test_mean_scaling_never_writes_into_an_input(ag):
    """_scale divides in place only a buffer of the body's own: a gradient that is (a view of)
    an input is divided into a new array."""
    import importlib

    rt = importlib.import_module("actgen_numpy._runtime")
    y = np.array([1.0, 2.0, 3.0, 4.0])
    out = rt._scale(y, "mean", 4, np.dtype(np.float64), (y,))
    np.testing.assert_array_equal(y, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(out, [0.25, 0.5, 0.75, 1.0])
    view = y[::2]
    rt._scale(view, "mean", 2, np.dtype(np.float64), (y,))
    np.testing.assert_array_equal(y, [1.0, 2.0, 3.0, 4.0])
    own = np.array([2.0, 4.0])
    assert rt._scale(own, "mean", 2, np.dtype(np.float64), (y,)) is own  # divided in place
    # through the public functions: the targets and predictions are left as they were
    y_true, y_pred = np.array([0.0, 1.0, 1.0]), np.array([0.2, 0.7, 0.9])
    before = (y_true.copy(), y_pred.copy())
    for name in ("mse_grad", "mae_grad", "bce_grad", "hinge_grad", "huber_grad"):
        getattr(ag, name)(y_true, y_pred)
        np.testing.assert_array_equal(y_true, before[0])
        np.testing.assert_array_equal(y_pred, before[1])


# -- integer class labels: the one-hot form, ignore_index, label_smoothing, the class axis ---------

# class-axis losses and heads whose targets may be one-hot rows (catalog field class_indices):
# (function name, its gradient, True for a head, whose predictions are logits)
INDEXED = sorted(
    [(l["name"], l["functions"]["loss_grad"]["name"], False) for l in CATALOG["losses"] if l.get("class_indices")]
    + [(h["name"], h["functions"]["head_grad"]["name"], True) for h in CATALOG["heads"] if LOSSES[h["loss"]].get("class_indices")])


def _indexed_inputs(head, shape=(3, 4, 5), seed=3):
    """Predictions of shape (N, K, d) with the classes on axis 1, integer labels (N, d), and the
    same labels as one-hot rows (N, K, d)."""
    rng = np.random.default_rng(seed)
    k = shape[1]
    raw = rng.normal(size=shape)
    preds = raw if head else np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, size=(shape[0],) + shape[2:])
    onehot = np.moveaxis(np.eye(k)[labels], -1, 1)
    return preds, labels, onehot


def test_the_class_index_forms_exist(ag):
    assert {"cce", "nll", "softmax_cce"} <= {n for n, _, _ in INDEXED}
    assert not any(l.get("class_indices") for l in CATALOG["losses"] if not l["class_axis"])


@pytest.mark.parametrize("name, grad, head", INDEXED)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_integer_labels_are_their_one_hot_rows(ag, name, grad, head, reduction):
    preds, labels, onehot = _indexed_inputs(head)
    f, g = getattr(ag, name), getattr(ag, grad)
    want = f(onehot, preds, reduction, axis=1, ignore_index=None)
    got = f(labels, preds, reduction, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    if reduction == "none":
        assert np.shape(got) == labels.shape
    gwant = g(onehot, preds, "sum" if reduction == "none" else reduction, axis=1)
    ggot = g(labels, preds, "sum" if reduction == "none" else reduction, axis=1)
    assert ggot.shape == preds.shape
    np.testing.assert_allclose(ggot, gwant, rtol=1e-15, atol=0)
    # axis=1 is the same as moving the classes last
    last = f(np.moveaxis(onehot, 1, -1), np.moveaxis(preds, 1, -1), reduction)
    np.testing.assert_allclose(got, last, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name, grad, head", INDEXED)
def test_ignored_samples_have_no_loss_no_gradient_and_no_weight_in_the_mean(ag, name, grad, head):
    preds, labels, onehot = _indexed_inputs(head)
    f, g = getattr(ag, name), getattr(ag, grad)
    labels = labels.copy()
    labels[0, 1] = -100
    labels[2, :] = 7  # a custom ignore_index below
    kept = (labels != -100) & (labels != 7)
    both = np.where(kept, labels, 0)
    full = f(both, preds, "none", axis=1)
    with pytest.raises(ValueError, match=rf"{name}: class index 7 is out of range for 4 classes"):
        f(labels, preds, axis=1)
    labels[0, 1] = 7
    per = f(labels, preds, "none", axis=1, ignore_index=7)
    np.testing.assert_array_equal(per[~kept], 0.0)
    np.testing.assert_allclose(per[kept], full[kept], rtol=1e-15)
    assert float(f(labels, preds, "mean", axis=1, ignore_index=7)) == pytest.approx(full[kept].mean(), rel=1e-14)
    assert float(f(labels, preds, "sum", axis=1, ignore_index=7)) == pytest.approx(full[kept].sum(), rel=1e-14)
    gm = g(labels, preds, "mean", axis=1, ignore_index=7)
    gfull = g(both, preds, "sum", axis=1)
    np.testing.assert_array_equal(np.moveaxis(gm, 1, -1)[~kept], 0.0)
    np.testing.assert_allclose(np.moveaxis(gm, 1, -1)[kept], np.moveaxis(gfull, 1, -1)[kept] / kept.sum(), rtol=1e-14)
    # every sample ignored: the mean of nothing is NaN (as PyTorch), the sum 0
    none = np.full_like(labels, 7)
    assert np.isnan(f(none, preds, axis=1, ignore_index=7)) and float(f(none, preds, "sum", axis=1, ignore_index=7)) == 0.0


@pytest.mark.parametrize("name, grad, head", INDEXED)
@pytest.mark.parametrize("eps", (0.1, 1.0))
def test_label_smoothing_blends_the_targets_with_the_uniform_distribution(ag, name, grad, head, eps):
    preds, labels, onehot = _indexed_inputs(head)
    f, g = getattr(ag, name), getattr(ag, grad)
    smoothed = (1 - eps) * onehot + eps / onehot.shape[1]
    for targets, dense in ((labels, smoothed), (onehot, smoothed)):
        np.testing.assert_allclose(f(targets, preds, "none", axis=1, label_smoothing=eps), f(dense, preds, "none", axis=1), rtol=1e-14)
        np.testing.assert_allclose(g(targets, preds, axis=1, label_smoothing=eps), g(dense, preds, axis=1), rtol=1e-14, atol=1e-300)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"{name}: label_smoothing must be in \[0, 1\]"):
            f(labels, preds, axis=1, label_smoothing=bad)


def test_cross_entropy_and_nll_match_pytorch(ag):
    """softmax_cce on integer labels is torch.nn.functional.cross_entropy, nll is its nll_loss:
    classes on axis 1 of (N, C, d), ignore_index, label_smoothing, every reduction, and the
    gradients from PyTorch's autograd (an independent implementation)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(11)
    z = rng.normal(scale=3.0, size=(6, 5, 4))
    t = rng.integers(0, 5, size=(6, 4))
    t[1, 2] = t[4, 0] = -100
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    for eps in (0.0, 0.25):
        for reduction in REDUCTIONS:
            zt = torch.tensor(z, requires_grad=True)
            ref = F.cross_entropy(zt, torch.tensor(t), reduction=reduction, label_smoothing=eps)
            ref.sum().backward()
            np.testing.assert_allclose(ag.softmax_cce(t, z, reduction, axis=1, label_smoothing=eps), ref.detach().numpy(), rtol=1e-13)
            np.testing.assert_allclose(ag.softmax_cce_grad(t, z, "sum" if reduction == "none" else reduction, axis=1, label_smoothing=eps),
                                       zt.grad.numpy(), rtol=1e-13, atol=1e-17)
    for reduction in REDUCTIONS:
        lp = torch.tensor(logp, requires_grad=True)
        ref = F.nll_loss(lp, torch.tensor(t), reduction=reduction)
        ref.sum().backward()
        np.testing.assert_allclose(ag.nll(t, logp, reduction, axis=1), ref.detach().numpy(), rtol=1e-14)
        np.testing.assert_allclose(ag.nll_grad(t, logp, "sum" if reduction == "none" else reduction, axis=1), lp.grad.numpy(), rtol=1e-14)
