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
