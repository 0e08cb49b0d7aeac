"""Symbolic zero tests with recorded steps, shared by rule proofs and identity proofs.

A difference is proved zero only by exact transformations (no numerical sampling, no
``Expr.equals``, which may fall back on numerics). Each transformation tried is recorded.
"""
from __future__ import annotations

import dataclasses
import signal
from contextlib import contextmanager

import sympy as sp

from .primitives import elementary


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a proof: what was done and the expression it gave."""

    action: str
    expr: sp.Basic


def _transforms():
    return (
        ("simplify", sp.simplify),
        ("rewrite exp, then simplify", lambda e: sp.simplify(e.rewrite(sp.exp))),
        ("expand, factor out of sums, cancel", lambda e: sp.cancel(sp.factor_terms(sp.expand(sp.powsimp(sp.expand(e), combine="exp"))))),
        ("expand exponentials and cancel", lambda e: sp.cancel(sp.expand(e.rewrite(sp.exp), power_exp=True))),
        ("expand logarithms (positive arguments), simplify", lambda e: sp.simplify(sp.expand_log(e, force=True))),
        ("rewrite in erf, simplify", lambda e: sp.simplify(e.rewrite(sp.erf))),
        ("rewrite exp, combine logarithms, simplify", lambda e: sp.simplify(sp.logcombine(sp.expand(e.rewrite(sp.exp)), force=True))),
        ("expand special functions, simplify", lambda e: sp.simplify(sp.expand_func(e))),
        ("rewrite inverse hyperbolic functions as logarithms, expand logarithms (positive arguments), simplify",
         lambda e: sp.simplify(sp.expand_log(e.rewrite(sp.log), force=True))),
    )


def _signed(value, cond):
    """``value`` with its symbol x replaced by one with the sign that ``cond`` states, where
    ``cond`` is x >= 0, x > 0, x <= 0 or x < 0 for a real symbol x (else ``value`` unchanged)."""
    if not isinstance(cond, sp.core.relational.Relational) or cond.rhs != 0 or not isinstance(cond.lhs, sp.Symbol):
        return value
    x = cond.lhs
    if x.is_real is not True:
        return value
    sign = {">=": "nonnegative", ">": "positive", "<=": "nonpositive", "<": "negative"}.get(cond.rel_op)
    if sign is None:
        return value
    return value.xreplace({x: sp.Dummy(x.name, real=True, **{sign: True})})


def reduce_to_zero(difference: sp.Expr, steps: list[Step]) -> bool:
    """Try exact transformations until ``difference`` is the literal 0.

    On success only the transformations that led to 0 are recorded; on failure the last result of
    each attempt is recorded, so that a reader can see where SymPy got stuck.
    """
    expr = elementary(difference)
    if expr != difference:
        steps.append(Step("rewrite stable primitives in elementary functions", expr))
    if expr == 0:
        return True
    folded = sp.piecewise_fold(expr) if expr.has(sp.Piecewise) else expr
    if isinstance(folded, sp.Piecewise):
        branch_steps: list[Step] = []
        ok = True
        earlier = []
        for value, cond in folded.args:
            branch_steps.append(Step(f"branch where {sp.sstr(cond)}", value))
            # the branch holds where its condition does and no earlier one: a sign of a symbol
            # that this states becomes an assumption (min(0, x) is 0 where x >= 0)
            signed = _signed(value, sp.And(cond, *(sp.Not(c) for c in earlier)))
            earlier.append(cond)
            if signed != value:
                branch_steps.append(Step("assume the branch's condition", signed))
                value = signed
            ok = reduce_to_zero(value, branch_steps) and ok
            if not ok:
                break
        if ok:
            steps.extend(branch_steps)
            return True
    attempts = []
    for action, fn in _transforms():
        try:
            result = fn(expr)
        except (TypeError, ValueError, NotImplementedError, AttributeError, RecursionError):
            continue
        if result == 0:
            steps.append(Step(action, result))
            return True
        attempts.append(Step(f"{action} (did not reach 0)", result))
    steps.extend(attempts[-1:])
    return False


def prove_equal(lhs: sp.Expr, rhs: sp.Expr) -> tuple[bool, tuple[Step, ...]]:
    """Whether ``lhs - rhs`` reduces to 0, with the steps taken."""
    difference = lhs - rhs
    steps = [Step("difference of the two sides", difference)]
    if not difference.has(sp.Sum):
        expanded = sp.expand(difference)
        if expanded != difference:
            steps.append(Step("expand", expanded))
            difference = expanded
    ok = reduce_to_zero(difference, steps)
    return ok, tuple(steps)


class TimeBudgetExceeded(Exception):
    pass


_budgets: list[float] = []  # deadlines of the enclosing budgets (process CPU seconds), innermost last
_REFIRE = 0.5  # CPU seconds between repeated alarms once a budget has run out
# Budgets are safety nets, never decisions: the two left (an entry's --entry-timeout, an identity's
# PROOF_BUDGET_S) stop the build with an error when they fire; what the generated code, the catalog
# and the pages contain is bounded by the size of the expressions (operation counts), so the same
# spec gives the same output on any machine. They count the CPU time of this process (ITIMER_PROF:
# user and system time of all its threads), not the wall clock: other processes on the machine (a
# test suite's, a parallel build's workers, a loaded CI runner) do not bring the error closer.
_TIMER, _SIGNAL = (getattr(signal, "ITIMER_PROF", None), getattr(signal, "SIGPROF", None))


@contextmanager
def time_budget(seconds: float):
    """Raise :class:`TimeBudgetExceeded` in a computation that uses more than ``seconds`` of this
    process's CPU time.

    Budgets nest: an inner budget never outlives the enclosing one. Uses SIGPROF, so it only acts
    in the main thread on POSIX; elsewhere the computation simply runs unbounded.
    """
    import threading
    import time

    if seconds <= 0 or _TIMER is None or _SIGNAL is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    now = time.process_time()
    deadline = now + seconds
    if _budgets:
        deadline = min(deadline, _budgets[-1])

    def handler(signum, frame):
        raise TimeBudgetExceeded()

    previous = signal.signal(_SIGNAL, handler)
    _budgets.append(deadline)
    # the alarm repeats every _REFIRE seconds past the deadline: an exception raised where Python
    # ignores it (in a __del__ or a weakref callback that SymPy's caches run) is raised again at the
    # next one, instead of leaving the computation unbounded (a CI run sat 15 minutes in SymPy's
    # solve after its 10 s budget had fired)
    signal.setitimer(_TIMER, max(deadline - now, 1e-3), _REFIRE)
    try:
        yield
    finally:
        signal.setitimer(_TIMER, 0)
        _budgets.pop()
        signal.signal(_SIGNAL, previous)
        if _budgets:  # re-arm the enclosing budget
            signal.setitimer(_TIMER, max(_budgets[-1] - time.process_time(), 1e-3), _REFIRE)
