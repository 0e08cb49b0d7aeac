"""Helpers for the numerical tests of generated packages (not a test module).

The list of generated functions comes from the package's catalog.json, so a function added to the
spec is tested without touching the tests. Kinks are located from each function's own SymPy form
(Piecewise conditions, Max/Min ties, the zeros of Abs/sign/Heaviside arguments), so that finite
differences are only taken where the function is smooth.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import sympy as sp

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "generated"


def load_catalog(folder: Path = GENERATED) -> dict:
    return json.loads((Path(folder) / "catalog.json").read_text(encoding="utf-8"))


def _primitives():
    from actgen import primitives

    return {n: getattr(primitives, n) for n in ("logistic", "softplus", "normal_cdf", "xlogy")}


def parse(text: str, variables: dict) -> sp.Expr:
    """A catalog's SymPy text (written by actgen) back into an expression; test code only."""
    names = dict(_primitives())
    names.update(variables)
    return sp.sympify(text, locals=names)


def kink_functions(expr: sp.Expr) -> list[sp.Expr]:
    """Expressions g such that the function may have a kink where g changes sign."""
    out: list[sp.Expr] = []

    def conditions(cond):
        if isinstance(cond, sp.logic.boolalg.BooleanFunction):
            for a in cond.args:
                conditions(a)
        elif isinstance(cond, sp.core.relational.Relational):
            out.append(cond.lhs - cond.rhs)

    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Piecewise):
            for _, cond in node.args:
                conditions(cond)
        elif isinstance(node, (sp.Max, sp.Min)):
            args = node.args
            out.extend(a - b for i, a in enumerate(args) for b in args[i + 1 :])
        elif isinstance(node, (sp.Abs, sp.sign, sp.Heaviside)):
            out.append(node.args[0])
    return out


def near_kink(expr: sp.Expr, var: sp.Symbol, points, subs=None, width=1e-3) -> np.ndarray:
    """Boolean mask: points within ``width`` of a kink of ``expr`` in ``var``."""
    points = np.asarray(points, dtype=float)
    mask = np.zeros(points.shape, dtype=bool)
    for g in kink_functions(expr.subs(subs or {})):
        if not g.has(var):
            continue
        f = sp.lambdify(var, g, modules="numpy")
        lo = np.broadcast_to(np.asarray(f(points - width), dtype=float), points.shape)
        hi = np.broadcast_to(np.asarray(f(points + width), dtype=float), points.shape)
        mid = np.broadcast_to(np.asarray(f(points), dtype=float), points.shape)
        mask |= (np.sign(lo) != np.sign(hi)) | (np.abs(mid) < width)
    return mask


def central_difference(f, x, h=None):
    """Elementwise central difference of an elementwise f at x (float64)."""
    x = np.asarray(x, dtype=np.float64)
    if h is None:
        h = 1e-6 * np.maximum(1.0, np.abs(x))
    return (f(x + h) - f(x - h)) / (2 * h)


def kinks_of(expr: sp.Expr, var: sp.Symbol, subs=None, lo=-50.0, hi=50.0) -> list[float]:
    """Kink points of ``expr`` in [lo, hi]: sign changes of its kink functions, refined by bisection."""
    points: set[float] = set()
    grid = np.linspace(lo, hi, 40001)
    for g in kink_functions(expr.subs(subs or {})):
        if not g.has(var):
            continue
        f = sp.lambdify(var, g, modules="numpy")
        values = np.broadcast_to(np.asarray(f(grid), dtype=float), grid.shape)
        for i in np.nonzero(values == 0)[0]:
            points.add(float(grid[i]))
        for i in np.nonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0)[0]:
            a, b = grid[i], grid[i + 1]
            fa = float(f(a))
            for _ in range(80):
                m = (a + b) / 2
                fm = float(f(m))
                if fm == 0:
                    a = b = m
                    break
                if np.sign(fm) == np.sign(fa):
                    a, fa = m, fm
                else:
                    b = m
            points.add(round(float((a + b) / 2), 12))
    return sorted(points)


def into_domain(domain: str, z):
    """Map real inputs into an activation's domain (catalog "domain"), with arithmetic only, so the
    same call serves NumPy arrays, torch tensors and JAX arrays; "real" returns z unchanged."""
    squash = z / (1 + abs(z))  # (-1, 1)
    maps = {
        "real": lambda: z,
        "positive": lambda: abs(z) + 0.125, "nonnegative": lambda: abs(z),
        "negative": lambda: -abs(z) - 0.125, "nonpositive": lambda: -abs(z),
        "(0, 1)": lambda: (1 + squash) / 2, "[0, 1]": lambda: (1 + squash) / 2,
        "(-1, 1)": lambda: squash, "[-1, 1]": lambda: squash,
    }
    return maps[domain]()


def domain_mask(domain: str, z, margin: float = 0.0) -> np.ndarray:
    """Which of the points z lie inside the domain, at least ``margin`` from its finite ends."""
    from actgen.model import domain_interval

    interval = domain_interval(domain)
    lo, hi = float(interval.start), float(interval.end)
    z = np.asarray(z, dtype=float)
    above = (z > lo + margin) | ((z == lo) & (not interval.left_open) & (margin == 0))
    below = (z < hi - margin) | ((z == hi) & (not interval.right_open) & (margin == 0))
    return above & below


def accuracy_names(spec, backend: str = "numpy") -> list[str]:
    """The label of every measurement ``actgen.accuracy.targets`` makes for ``spec`` beyond the
    elementwise activations (whose names the tests take from the catalog): split activations and
    their partial derivatives, losses along y_hat at representative targets, class-axis losses,
    class-axis functions and their VJPs, row reductions and their gradients. Built from the spec
    alone, so that tests can be parametrized before anything is derived. The frameworks' loss
    gradients are their autograd backward (tested against the NumPy package's), so ``backend``
    "torch" or "jax" leaves them out."""
    from actgen import accuracy as A

    numpy = backend == "numpy"
    names = []
    for act in spec.activations:
        if act.split:
            names += [f"{fn}({'a' if var == 'b' else 'b'}={c:g})" for fn in (act.name, f"{act.name}_grad_a", f"{act.name}_grad_b") for var, c in A.SPLIT_FIXED]
    for loss in spec.losses:
        if loss.class_axis:
            continue
        extra = "".join(f", {n}={v[1]:g}" for n, v in A.input_examples(loss).items())  # further inputs, held fixed
        for y in A.SAMPLE_TARGETS[dict(loss.domain).get("y", "real")]:
            names.append(f"{loss.name}(y={y:g}{extra})")
            if numpy:
                names += [f"{loss.name}_grad(y={y:g}{extra})"] + [f"{loss.name}_grad_{n}(y={y:g}{extra})" for n in loss.inputs]
    for loss in spec.losses:
        if loss.class_axis:
            doms = dict(loss.domain)
            a, b = A.CLASS_LOSS_OTHERS[doms.get("y_hat", "real")]
            y = ", ".join(f"{v:g}" for v in A.CLASS_LOSS_Y[doms.get("y", "real")])
            names.append(f"{loss.name}(y_hat, {a:g}, {b:g}; y={y})")
            if numpy:
                names += [f"{loss.name}_grad[{c}](y_hat, {a:g}, {b:g}; y={y})" for c in (0, 1)]
    for act in spec.activations:
        if act.reduces:
            names += [f"{act.name}(z, {a:g}, {b:g})" for a, b in A.CLASS_OTHERS]
            names += [f"{act.name}_grad[{c}](z, {a:g}, {b:g})" for a, b in A.CLASS_OTHERS for c in (0, 1)]
        elif act.vector:
            for fn in (act.name, f"{act.name}_vjp"):
                names += [f"{fn}[{c}](z, {a:g}, {b:g})" for a, b in A.CLASS_OTHERS for c in (0, 1)]
    return names
