"""A Piecewise branch built on an expensive node (SciPy's erf, the erfcx table, double-double
arithmetic) is evaluated only on the elements that take it; the values are those of a select."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.special
import sympy as sp

from actgen.backends.numpy.printer import ActgenNumPyPrinter, emit_inplace
from actgen.model import Z


def _run(expr, z, workspace):
    emitted = emit_inplace(expr, [Z], ActgenNumPyPrinter(), workspace=workspace)
    sys.path.insert(0, "generated")
    try:
        from actgen_numpy import _runtime
    finally:
        sys.path.pop(0)
    scope = {**vars(_runtime), "np": np, "z": z, "_w": [np.empty(z.shape) for _ in range(emitted.workspace)]}
    for name, code in emitted.assignments:
        if name:
            scope[name] = eval(code, scope)  # noqa: S307 - code printed by actgen from this test's expression
        else:
            exec(code, scope)  # noqa: S102
    return "\n".join(code for _, code in emitted.assignments), eval(emitted.result, scope)  # noqa: S307


Z_VALUES = np.array([-3.0, -1.0, -0.0, 0.0, 0.5, 2.0, np.nan, np.inf, -np.inf, 1e-300])


@pytest.mark.parametrize("workspace", [True, False])
def test_an_erf_branch_is_gathered_and_scattered_and_equals_the_select(workspace):
    expr = sp.Piecewise((sp.erf(Z) * Z, Z > 0), (Z**2 + 1, Z > -2), (sp.exp(Z), True))
    code, got = _run(expr, Z_VALUES.copy(), workspace)
    assert "np.flatnonzero" in code and ".put(" in code and "_select(" in code
    with np.errstate(all="ignore"):
        want = np.where(Z_VALUES > 0, scipy.special.erf(Z_VALUES) * Z_VALUES, np.where(Z_VALUES > -2, Z_VALUES**2 + 1, np.exp(Z_VALUES)))
    np.testing.assert_array_equal(got, want)  # NaN in the last branch, as np.where puts it


def test_every_branch_expensive_writes_each_element_once():
    expr = sp.Piecewise((sp.erf(Z), Z >= 0), (sp.erf(2 * Z), True))
    code, got = _run(expr, Z_VALUES.copy(), True)
    assert "_select(" not in code and code.count(".put(") == 2
    with np.errstate(all="ignore"):
        want = np.where(Z_VALUES >= 0, scipy.special.erf(Z_VALUES), scipy.special.erf(2 * Z_VALUES))
    np.testing.assert_array_equal(got, want)


def test_cheap_branches_stay_a_select():
    expr = sp.Piecewise((Z, Z > 0), (sp.exp(Z) - 1, True))
    code, got = _run(expr, Z_VALUES.copy(), True)
    assert ".put(" not in code and "_select(" in code
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, np.where(Z_VALUES > 0, Z_VALUES, np.expm1(Z_VALUES)))


# -- exponent_gate: exp(min(t, 0)) in double-double only where t < 0 ---------------------------------

def _gate(expr):
    from actgen.rules import _exponent_gate

    return _exponent_gate(expr)


def test_the_gate_reads_the_sign_of_t_from_its_float_exact_roots():
    from actgen.primitives import exp_dd, mul_exp_dd

    c = 2 * sp.sqrt(2) / sp.sqrt(sp.pi)
    t = c * (Z + sp.Rational(44715, 10**6) * Z**3)  # gelu_tanh's: one real root, 0
    assert _gate(mul_exp_dd(Z, sp.Min(0, t))) == sp.Piecewise((Z, Z >= 0), (mul_exp_dd(Z, t), True))
    assert _gate(exp_dd(sp.Min(0, 1 - Z**2))) == sp.Piecewise((1, (Z >= -1) & (Z <= 1)), (exp_dd(1 - Z**2), True))
    # irrational roots (+-sqrt(2)) or one that float32 cannot hold (0.1): the sign cannot be read exactly
    assert _gate(exp_dd(sp.Min(0, 2 - Z**2))) is None
    assert _gate(exp_dd(sp.Min(0, Z - sp.Rational(1, 10)))) is None
    # a gate in the factor of another is resolved on each branch (gelu_tanh's derivative): one
    # double-double exponent per element instead of two
    inner = mul_exp_dd(Z, sp.Min(0, -t))
    assert _gate(mul_exp_dd(1 + inner, sp.Min(0, t))) == sp.Piecewise((1 + mul_exp_dd(Z, -t), Z >= 0), (mul_exp_dd(1 + Z, t), True))
    # a gate inside another node's argument would be a where() of both branches
    assert _gate(sp.log(1 + exp_dd(sp.Min(0, t)))) is None
    assert _gate(2 * mul_exp_dd(Z, sp.Min(0, t)) + 1) == 2 * sp.Piecewise((Z, Z >= 0), (mul_exp_dd(Z, t), True)) + 1


@pytest.mark.parametrize("workspace", [True, False])
def test_a_gated_exponent_has_the_bits_of_the_ungated_one(workspace):
    from actgen.primitives import mul_exp_dd

    t = sp.Rational(1702, 1000) * Z * (1 + Z**2 / 8)
    expr = mul_exp_dd(Z, sp.Min(0, t)) / (1 + sp.exp(-sp.Abs(t)))
    rng = np.random.default_rng(3)
    z = np.concatenate([Z_VALUES, rng.normal(0, 4, 2000), -np.logspace(-300, 300, 200), np.logspace(-300, 300, 200)])
    code, got = _run(expr, z.copy(), workspace)
    emitted = emit_inplace(expr, [Z], ActgenNumPyPrinter(), workspace=workspace, gate=False)
    assert "np.flatnonzero" in code and ".put(" in code
    assert "flatnonzero" not in "\n".join(c for _, c in emitted.assignments)
    sys.path.insert(0, "generated")
    try:
        from actgen_numpy import _runtime
    finally:
        sys.path.pop(0)
    scope = {**vars(_runtime), "np": np, "z": z.copy(), "_w": [np.empty(z.shape) for _ in range(emitted.workspace)]}
    for name, line in emitted.assignments:
        if name:
            scope[name] = eval(line, scope)  # noqa: S307 - code printed by actgen from this test's expression
        else:
            exec(line, scope)  # noqa: S102
    want = eval(emitted.result, scope)  # noqa: S307
    np.testing.assert_array_equal(got.view(np.uint64), np.asarray(want).view(np.uint64))


def test_every_generated_float32_body_has_the_bits_of_the_float64_one_on_float64():
    """A function with a body of its own for float32 (the ungated one) computes the same bits from
    float64 input with either body: the gate changes which elements are computed, never a value."""
    sys.path.insert(0, "generated")
    try:
        from actgen_numpy import activations
    finally:
        sys.path.pop(0)
    narrow = [name[1:-len("_narrow_block")] for name in vars(activations) if name.endswith("_narrow_block")]
    assert "gelu_tanh" in narrow
    rng = np.random.default_rng(4)
    z = np.concatenate([Z_VALUES, rng.normal(0, 4, 5000), -np.logspace(-300, 308, 300), np.logspace(-300, 308, 300)])
    for name in narrow:
        gated, plain = getattr(activations, f"_{name}_block"), getattr(activations, f"_{name}_narrow_block")
        with np.errstate(all="ignore"):
            a = np.asarray(gated(z.copy(), [np.empty_like(z) for _ in range(8)]), dtype=np.float64)
            b = np.asarray(plain(z.copy(), [np.empty_like(z) for _ in range(8)]), dtype=np.float64)
        np.testing.assert_array_equal(a.view(np.uint64), b.view(np.uint64), err_msg=name)
