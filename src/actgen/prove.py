"""Stage 7b: identities declared in the spec, proved symbolically with recorded steps.

A proof reduces ``left - right`` to the literal 0 by exact transformations
(:func:`actgen.symbolic.prove_equal`). When that fails, the claim is evaluated at sample points
to look for a counterexample: if one is found the claim is *false* (and the build stops, naming the
values); if not it is *unproved*. Sampling never proves anything; it only refutes.
"""
from __future__ import annotations

import dataclasses
import pickle
import random

import sympy as sp

from . import cache, parallel
from . import model as M
from .derive import _in_range, _piecewise_form
from .errors import Collector
from .primitives import elementary
from .symbolic import Step, TimeBudgetExceeded, prove_equal, time_budget

# A safety net, not a decision: a proof that runs past this many CPU seconds stops the build with
# an error (status "stopped", never cached), so no clock turns a claim into "unproved" or a
# conjecture's page into a different one on a slower machine.
PROOF_BUDGET_S = 30.0


@dataclasses.dataclass(frozen=True)
class Proof:
    identity: M.Identity
    status: str  # proved | false | unproved | conjecture | stopped (ran past PROOF_BUDGET_S: an error)
    steps: tuple[Step, ...]
    counterexample: tuple[tuple[str, float], ...] = ()
    sides: tuple[sp.Expr, sp.Expr] = (sp.Integer(0), sp.Integer(0))  # after differentiation and assumptions
    values: tuple[float, float] = ()  # a false claim's left and right sides at the counterexample


def _alpha_equal_sum(a, b):
    """Sums equal up to the name of their bound index."""
    if not (isinstance(a, sp.Sum) and isinstance(b, sp.Sum)):
        return False
    (ia, la, ha), (ib, lb, hb) = a.limits[0], b.limits[0]
    return la == lb and ha == hb and a.function.xreplace({ia: ib}) == b.function


def _assume(expr, assumptions):
    for left, right in assumptions:
        expr = expr.replace(lambda e, left=left: e == left or _alpha_equal_sum(e, left), lambda e, right=right: right)
    return expr


def _prepare(side, steps, label, assumptions):
    expr = side
    if expr.has(sp.Derivative):
        # Max/Min as Piecewise first: kinks follow the same branch rule as the generated code
        expr = expr.replace(lambda e: isinstance(e, sp.Derivative), lambda e: sp.Derivative(_piecewise_form(e.expr), *e.variables)).doit()
        steps.append(Step(f"{label}: differentiate", expr))
    if expr.has(sp.Sum) or expr.has(sp.KroneckerDelta):
        done = _in_range(expr.doit(), M.KK)
        if done != expr:
            expr = done
            steps.append(Step(f"{label}: evaluate sums over the classes (KroneckerDelta picks k, with 1 <= k <= K)", expr))
        factored = sp.factor_terms(sp.expand(expr))
        if factored != expr and factored.has(sp.Sum):
            expr = factored
            steps.append(Step(f"{label}: factor constants out of the sums", expr))
    if assumptions:
        new = _assume(expr, assumptions)
        if new != expr:
            expr = new
            steps.append(Step(f"{label}: apply the assumptions", expr))
    return expr


def prove(identity: M.Identity, seconds=None) -> Proof:
    seconds = PROOF_BUDGET_S if seconds is None else seconds
    steps: list[Step] = []
    try:
        with time_budget(seconds):
            lhs = _prepare(identity.lhs, steps, "left", identity.assumptions)
            rhs = _prepare(identity.rhs, steps, "right", identity.assumptions)
            if isinstance(lhs, sp.MatrixExpr) or isinstance(rhs, sp.MatrixExpr):
                diff = sp.expand(lhs - rhs).doit()
                steps.append(Step("expand the matrix products (distributivity, associativity)", diff))
                ok = diff.is_ZeroMatrix or diff == 0 or (hasattr(diff, "is_zero_matrix") and diff.is_zero_matrix)
                return Proof(identity, "proved" if ok else "unproved", tuple(steps), (), (lhs, rhs))
            ok, more = prove_equal(lhs, rhs)
            steps.extend(more)
    except TimeBudgetExceeded:
        steps.append(Step(f"stopped after {seconds:g} s of CPU time", sp.Integer(0)))
        return Proof(identity, "stopped", tuple(steps), (), (identity.lhs, identity.rhs))
    if ok:
        return Proof(identity, "proved", tuple(steps), (), (lhs, rhs))
    counter, values = _refute(lhs, rhs)
    if counter:
        return Proof(identity, "false", tuple(steps), counter, (lhs, rhs), values)
    return Proof(identity, "conjecture" if identity.conjecture else "unproved", tuple(steps), (), (lhs, rhs))


def _concrete(expr, K=3):
    """Replace the class count by K, evaluate sums, and give each vector component its own symbol."""
    expr = expr.xreplace({M.K: K})
    if expr.has(sp.Sum):
        expr = expr.doit()
    comps = {}

    def comp(e):
        key = (str(e.base.label), e.indices[0])
        if key not in comps:
            comps[key] = sp.Symbol(f"{key[0]}_{key[1]}", real=True)
        return comps[key]

    return expr.replace(lambda e: isinstance(e, sp.Indexed), comp)


def counterexample(lhs, rhs, tries=40, seed=0):
    """Values where the two sides differ clearly (evidence of falsity), or ()."""
    return _refute(lhs, rhs, tries, seed)[0]


def _refute(lhs, rhs, tries=40, seed=0):
    """(a counterexample, (left side, right side) there), or ((), ())."""
    if isinstance(lhs, sp.MatrixExpr) or isinstance(rhs, sp.MatrixExpr):
        return (), ()
    rng = random.Random(seed)
    try:
        left, right = _concrete(elementary(lhs)), _concrete(elementary(rhs))
        diff = _concrete(elementary(lhs - rhs))
    except (TypeError, ValueError, NotImplementedError):
        return (), ()
    indices = {s: 1 for s in (M.I, M.J, M.KK, M.L)}

    def sides(point):
        try:
            values = [sp.N(e.xreplace(indices).xreplace(point), 30) for e in (left, right)]
        except (TypeError, ValueError, ZeroDivisionError):
            return ()
        return tuple(float(v) for v in values) if all(v.is_number and v.is_real for v in values) else ()

    if not diff.free_symbols:
        value = sp.N(diff, 30)
        if value.is_number and value != 0:
            # the same at every input: the sides at 1 for every variable, as an example
            return (("every input", float(value)),), sides({s: 1 for s in (left.free_symbols | right.free_symbols)})
        return (), ()
    symbols = sorted(diff.free_symbols, key=str)
    for index_symbol in indices:
        if index_symbol in symbols:
            symbols.remove(index_symbol)
            diff = diff.xreplace({index_symbol: 1})
    for _ in range(tries):
        point = {}
        for s in symbols:
            if s.is_positive:
                point[s] = sp.Rational(rng.randint(1, 40), 10)
            else:
                point[s] = sp.Rational(rng.randint(-30, 30), 10)
        try:
            value = sp.N(diff.xreplace(point), 30)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if value.is_number and value.is_finite and not value.has(sp.nan) and abs(value) > 1e-12:
            return tuple((str(s), float(v)) for s, v in point.items()), sides(point)
    return (), ()


def _cached_proof(identity):
    """A proof depends only on the claim's expressions (the spec's functions are already
    substituted into them), not on where the identity is declared or how it is explained."""
    result = cache.lookup("proof", *_claim(identity))
    if result is cache.MISS:
        result = dataclasses.replace(prove(identity), identity=None)
        if result.status != "stopped":  # what the clock stopped is not an answer to keep
            cache.put(cache.key("proof", *_claim(identity)), (result, cache.digest(result)))
    return dataclasses.replace(result, identity=identity)


def _claim(identity):
    return identity.lhs, identity.rhs, identity.assumptions, identity.conjecture


def _proof_task(identities, index):
    """In a worker: the proof of one identity, with its digest (see :func:`_cached_proof`)."""
    proof = _cached_proof(identities[index])
    bare = dataclasses.replace(proof, identity=None)
    return pickle.dumps(bare, protocol=pickle.HIGHEST_PROTOCOL), cache.digest(bare)


def check_identities(spec: M.Spec, names=None, raise_on_failure=True, jobs=1) -> tuple[Proof, ...]:
    """Prove the spec's identities (the uncached ones by up to ``jobs`` worker processes; None: one
    per core); a false or unproved claim is a spec problem at its line."""
    chosen = tuple(i for i in spec.identities if names is None or i.name in names)
    found = {}
    for index, identity in enumerate(chosen):
        hit = cache.lookup("proof", *_claim(identity))
        if hit is not cache.MISS:
            found[index] = dataclasses.replace(hit, identity=identity)
    missing = [index for index in range(len(chosen)) if index not in found]
    for index, (data, digest) in zip(missing, parallel.map_indexed(_proof_task, chosen, missing, jobs)):
        # a proof that does not unpickle to exactly what was proved is proved again here
        bare = cache.restore(data, digest)
        found[index] = dataclasses.replace(bare, identity=chosen[index]) if bare is not cache.MISS else _cached_proof(chosen[index])
    proofs = tuple(found[index] for index in range(len(chosen)))
    if raise_on_failure:
        problems = Collector()
        for p in proofs:
            if p.status == "false":
                problems.add(p.identity.location, p.identity.name, "claim", f"the claim is false: {_refutation(p)}; correct the claim")
            elif p.status == "stopped":
                problems.add(p.identity.location, p.identity.name, "claim", f"proving the claim took more than {PROOF_BUDGET_S:g} s of CPU time (a safety limit, not a verdict); simplify the claim or split it into smaller identities")
            elif p.status == "unproved":
                problems.add(p.identity.location, p.identity.name, "claim", "SymPy could neither prove nor refute the claim; simplify it, add an assumption, or mark it 'conjecture: true'")
        problems.raise_if_any()
    return proofs


def _point(counterexample):
    """'z = 1.5, y = 0' or, for a claim off by a constant, 'every input (the sides differ by 1)'."""
    if len(counterexample) == 1 and counterexample[0][0].startswith("every input"):
        return f"every input (the sides differ by {counterexample[0][1]:g})"
    return ", ".join(f"{k} = {v:g}" for k, v in counterexample)


def _refutation(proof: Proof) -> str:
    """'at z = 2.4 the left side is 2.4 and the right side 4.8', or, for a claim off by a constant,
    'the sides differ by 1 at every input (at z = 1: left 1, right 2)'."""
    values = proof.values
    if len(proof.counterexample) == 1 and proof.counterexample[0][0].startswith("every input"):
        text = f"the sides differ by {proof.counterexample[0][1]:.6g} at every input"
        return text + (f" (e.g. left {values[0]:.6g}, right {values[1]:.6g})" if values else "")
    where = _point(proof.counterexample)
    if values:
        return f"at {where} the left side is {values[0]:.6g} and the right side {values[1]:.6g}"
    return f"the two sides differ at {where}"


def format_proof(proof: Proof) -> str:
    i = proof.identity
    lines = [f"{i.name}: {i.title}", f"  claim: {i.claim}"]
    for left, right in i.assumptions:
        lines.append(f"  assuming: {sp.sstr(left)} = {sp.sstr(right)}")
    for step in proof.steps:
        lines.append(f"  - {step.action}: {sp.sstr(step.expr)}")
    if proof.status == "false":
        lines.append("  FALSE: " + _refutation(proof))
    else:
        lines.append(f"  {proof.status}")
    return "\n".join(lines)
