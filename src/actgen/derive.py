"""Stage 5: derivatives, by SymPy, recorded step by step.

For each entry of the model this module derives every function the package will contain, as
:class:`Derivation` records: the expression SymPy's ``diff`` gives, the simplified form in stable
primitives (:mod:`actgen.rules`), and the rules that fired. No derivative is typed anywhere.
"""
from __future__ import annotations

import dataclasses

import sympy as sp
from sympy.functions.elementary.hyperbolic import HyperbolicFunction
from sympy.functions.elementary.trigonometric import TrigonometricFunction

from . import model as M
from .errors import EntryFailure
from .primitives import elementary, logistic
from .rules import raise_primitives
from .symbolic import prove_equal

Y_OUT = sp.Symbol("y", real=True)  # the output of an activation, in output-form derivatives
G = sp.IndexedBase("g", real=True)  # the incoming gradient of a vector-Jacobian product
T = sp.IndexedBase("t", real=True)  # the tangent of a Jacobian-vector product
G_ROW = sp.Symbol("g", real=True)  # the incoming gradient of a row reduction's VJP: one number per row
Z_MAX = sp.Symbol("z_max", real=True)  # max_j z[j], for max-shifted class-axis expressions


@dataclasses.dataclass(frozen=True)
class Derivation:
    """One generated function: its defining expression and how it was obtained."""

    name: str  # Python name in the generated package
    kind: str  # forward, grad, grad_param, grad_from_output, grad2, hessian, vjp, jacobian, loss, loss_grad, head, head_grad
    of: str  # the spec entry it belongs to
    wrt: str  # the variable differentiated by ('' for forward functions)
    raw: sp.Expr  # as written or as SymPy's diff gives it
    expr: sp.Expr  # simplified, in stable primitives: what the docs show and the printer lowers
    rules: tuple[str, ...]
    note: str = ""


def _piecewise_form(expr):
    """Max/Min as Piecewise (so that kinks follow the branch rule), folded into one Piecewise."""
    if expr.has(sp.Max, sp.Min):
        expr = sp.piecewise_fold(expr.rewrite(sp.Piecewise))
    return expr


def jumps_as_zero(expr):
    """The branch rule at a jump: the derivative of a step (``sign``, ``Heaviside``, a Piecewise
    with different values on each side) is 0 on both sides of the jump, so it is 0 there too.
    SymPy's ``diff`` gives a ``DiracDelta`` at the jump; as a function value that is 0 at every
    z (the convention of every framework's sign and step), so it is dropped here."""
    if expr.has(sp.DiracDelta):
        expr = expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    return expr


def _fold(expr):
    if not any(value.has(sp.Piecewise) for pw in expr.atoms(sp.Piecewise) for value, _cond in pw.args):
        return expr
    try:
        return sp.piecewise_fold(expr)
    except (TypeError, ValueError, NotImplementedError, AttributeError, RecursionError):
        return expr


def simplify_apart(expr):
    """sp.simplify, with the terms of a sum that hold circular trigonometric functions simplified
    apart from the others (the same value). As one sum, SymPy's trigsimp factors the other terms'
    polynomials together with the trigonometric ones over Q(i): the second derivative of
    tanh(sin(z)) - z/(1 + z**2) took 290 s of a build (profiled), apart 0.4 s. The value is the
    same; a cancellation between the groups (cos(2 atan(z)) against (1 - z**2)/(1 + z**2)) is
    missed, and the expression kept as it is then, exact but not shortened."""
    if expr.is_Add:
        trig = [t for t in expr.args if t.has(TrigonometricFunction)]
        rest = [t for t in expr.args if not t.has(TrigonometricFunction)]
        if trig and rest:
            return _simplify_bounded(sp.Add(*trig)) + sp.simplify(sp.Add(*rest))
    return _simplify_bounded(expr)


# trigsimp (inside sp.simplify) factors polynomials in sin and cos over Q(i), and that grows without
# bound with the expression: the second derivative of cosh(log(2 + sin(z/(1 + z**2)))), 167
# operations, ran past the 60 s budget in dmp_zz_i_factor (profiled), where its first derivative, 40,
# took 0.24 s. Above this many operations an expression with circular functions is not simplified
# (the other candidates of `simplest`, factor_terms and expand, still are): a rule on the input, no
# clock, so the result does not depend on the machine
TRIG_SIMPLIFY_OPS = 100
# trigsimp treats sinh and cosh as cos and sin of i z, and factors over Q(i) the same way: the second
# derivative of sinh(sqrt(1 + exp(1.702 - z))), 59 operations, ran past the 60 s budget in
# dmp_zz_i_factor (profiled; drawn by `actgen accuracy --fuzz 20 --seed 29`). Hyperbolic functions
# of anything but a polynomial in z are not simplified above this many operations.
HYPERBOLIC_SIMPLIFY_OPS = 40


def _simplify_bounded(expr):
    ops = sp.count_ops(expr)
    if expr.has(TrigonometricFunction) and ops > TRIG_SIMPLIFY_OPS:
        return expr
    if ops > HYPERBOLIC_SIMPLIFY_OPS and any(not f.args[0].is_polynomial(*f.free_symbols) for f in expr.atoms(HyperbolicFunction)):
        return expr
    return sp.simplify(expr)


def simplest(expr, fired):
    """The simplest of a few exact rearrangements of ``expr``, re-raised into stable primitives."""
    candidates = [raise_primitives(jumps_as_zero(expr), fired)]
    for transform in (sp.factor_terms, simplify_apart, sp.expand):
        try:
            candidates.append(raise_primitives(transform(candidates[0]), fired))
        except (StopIteration, TypeError, ValueError, NotImplementedError, AttributeError, RecursionError):
            continue
    # a Piecewise nested in a branch of another (the derivative of a branch that has its own
    # branches) merged into one: a branch the outer conditions shadow is dropped, so an unreachable
    # value (zoo at z = 0 in d/dz sign(z) (1 - z**2)/..., where the outer branch gives 0) is never printed
    candidates = [_fold(c) for c in candidates]

    # prefer no raw exponentials of the variable (they overflow), then fewer operations
    def cost(e):
        # the last key, SymPy's canonical text, makes ties independent of the order above
        raw_exp = sum(1 for f in e.atoms(sp.exp) if f.free_symbols)
        return (raw_exp, sp.count_ops(e), len(str(e)), sp.srepr(e))

    return min(candidates, key=cost)


def derive_elementwise(act: M.Activation):
    """Every function of an elementwise activation. On a declared domain (``domain: {z: positive}``)
    the derivation runs with z carrying that domain's assumptions, and each result is that
    expression on the domain and NaN outside it (as NumPy's own log returns NaN below 0)."""
    if act.domain == "real":
        return _derive_elementwise(act, M.Z)
    z = M.domain_symbol(act.domain)
    back = {z: M.Z}
    out = []
    for d in _derive_elementwise(dataclasses.replace(act, expr=act.expr.xreplace({M.Z: z})), z):
        out.append(dataclasses.replace(d, raw=d.raw.xreplace(back), expr=on_domain(d.expr.xreplace(back), act.domain)))
    return out


def on_domain(expr, domain):
    """``expr`` where z is in ``domain``, NaN elsewhere."""
    if domain == "real":
        return expr
    return sp.Piecewise((expr, M.domain_condition(domain)), (sp.nan, True))


def _derive_elementwise(act: M.Activation, z):
    fired: list[str] = []
    forward = raise_primitives(act.expr, fired)
    out = [Derivation(act.name, "forward", act.name, "", act.expr, forward, tuple(fired))]
    base = _piecewise_form(forward)
    raw = sp.diff(_piecewise_form(act.expr), z)
    gfired: list[str] = []
    grad = simplest(sp.diff(base, z), gfired)
    out.append(Derivation(f"{act.name}_grad", "grad", act.name, "z", raw, grad, tuple(gfired)))
    for p in act.params:
        pf: list[str] = []
        gp = simplest(sp.diff(base, p.symbol), pf)
        out.append(Derivation(f"{act.name}_grad_{p.name}", "grad_param", act.name, p.name, sp.diff(act.expr, p.symbol), gp, tuple(pf)))
    # an output form g(f(z)) is proved on the whole line; on a restricted domain it is not offered
    of = output_form(forward, grad, raw) if z == M.Z else None
    if of is not None:
        out.append(Derivation(f"{act.name}_grad_from_output", "grad_from_output", act.name, "z", grad, of, ()))
    out += second_derivatives(act, out, z)
    return out


def second_derivatives(act: M.Activation, first, z=M.Z):
    """Every second derivative of f in (z, parameters), each from the simplified first derivative
    (so it is in stable primitives too): ``NAME_grad2`` (d2f/dz2, kind ``grad2``), and for the
    backward passes of differentiable frameworks the others of the Hessian, kind ``hessian``,
    named ``NAME_grad2_V_W`` (V before W in the order z, then the parameters as declared).

    At a kink the branch rule of the first derivatives carries over: the second derivative is
    that of the branch whose condition holds (no Dirac delta)."""
    variables = [("z", z)] + [(p.name, p.symbol) for p in act.params]
    by_wrt = {d.wrt: d for d in first if d.kind in ("grad", "grad_param")}
    out = []
    for i, (v, vsym) in enumerate(variables):
        d1 = by_wrt[v]
        for w, wsym in variables[i:]:
            fired: list[str] = []
            expr = simplest(sp.diff(_piecewise_form(d1.expr), wsym), fired)
            raw = sp.diff(d1.raw, wsym)
            if v == w == "z":
                out.append(Derivation(f"{act.name}_grad2", "grad2", act.name, "z", raw, expr, tuple(fired)))
            else:
                out.append(Derivation(f"{act.name}_grad2_{v}_{w}", "hessian", act.name, f"{v},{w}", raw, expr, tuple(fired)))
    return out


# An output form is looked for only for a function and derivative this small (operations, as
# sp.count_ops counts them; the bundled functions that have one are at most 5 and 4). The work of
# finding and proving one is bounded by the size of its input, never by a clock: the same spec
# gives the same package on any machine (the entry's --entry-timeout is only a safety net, and
# stops the build with an error when it fires, it never decides what is generated).
OUTPUT_FORM_OPS = 24


def output_form(f, fprime, raw=None):
    """g with f'(z) = g(f(z)), proved; None when the derivative needs the input, or f or f' is
    larger than OUTPUT_FORM_OPS, or f is not a chain of invertible steps (see :func:`invert`)."""
    if sp.count_ops(f) > OUTPUT_FORM_OPS or sp.count_ops(fprime) > OUTPUT_FORM_OPS:
        return None
    try:
        return _output_form(f, fprime, raw)
    except (TypeError, ValueError, NotImplementedError, RecursionError):
        return None


def _output_form(f, fprime, raw):
    candidates = []
    if isinstance(f, sp.Piecewise):
        # proved branch by branch (and at the switching point) inside _piecewise_output_form
        return _piecewise_output_form(f, fprime)
    else:
        for form in (fprime, raw):
            direct = _substitute_output(f, form) if form is not None else None
            if direct is not None:
                candidates.append(direct)
        sol = invert(elementary(f))
        if sol is not None:
            g = sp.simplify(elementary(fprime).xreplace({M.Z: sol}))
            if not g.has(M.Z) and sp.count_ops(g) < 12:
                candidates.append(raise_primitives(g))
    for g in sorted(candidates, key=lambda e: (sp.count_ops(e), sp.srepr(e))):
        if not g.free_symbols <= {Y_OUT} | {s for s in fprime.free_symbols if s != M.Z}:
            continue
        ok, _ = prove_equal(g.xreplace({Y_OUT: f}), fprime)
        if ok:
            return factored_at_roots(g)
    return None


def factored_at_roots(g):
    """A polynomial in the output y as the product of its factors when each is linear: y (1 - y)
    rather than y - y**2, (1 - y)(1 + y) rather than 1 - y**2. Near a root the expanded form
    subtracts nearly equal terms (sigmoid's output near 1, tanh's near +-1); each linear factor is
    exact there, so the product keeps its relative accuracy. sp.factor is an identity."""
    if g.is_polynomial(Y_OUT):
        return _linear_factors(g)
    # a polynomial inside a power or a quotient ((1 - y**2)**(3/2) of z/sqrt(1 + z**2)): the same,
    # sum by sum, innermost first
    return g.replace(lambda e: e.is_Add and e.has(Y_OUT) and e.is_polynomial(Y_OUT), _linear_factors)


def _linear_factors(g):
    if sp.degree(g, Y_OUT) < 2:
        return g
    product = sp.factor(g, Y_OUT)
    factors = sp.Mul.make_args(product)
    if all(sp.degree(b, Y_OUT) <= 1 for b in (f.base if f.is_Pow else f for f in factors) if b.has(Y_OUT)):
        return product
    return g


# functions that are one-to-one on the reals, with their inverses (on the image): exp's is log,
# and so on. cosh, sin, cos are not one-to-one, erf's inverse is no function a target evaluates.
_INJECTIVE_INVERSES = {sp.exp: sp.log, sp.log: sp.exp, sp.sinh: sp.asinh, sp.asinh: sp.sinh,
                       sp.tanh: sp.atanh, sp.atanh: sp.tanh, sp.atan: sp.tan}


def invert(f, y=Y_OUT):
    """z with f(z) = y, where z occurs once in f (in elementary functions) and each step from z
    outwards is one-to-one: adding or multiplying by a constant, a reciprocal, a root 1/q, a power
    of a positive constant, or one of _INJECTIVE_INVERSES; None otherwise. Peeling the steps off
    from the outside costs one step per node (SymPy's solve was used before: on
    sinh(z**2/3.896804) it ran for more than 30 s, and only a clock stopped it)."""
    e, target = f, y
    while e != M.Z:
        if e.is_Add or e.is_Mul:
            inner = [a for a in e.args if a.has(M.Z)]
            if len(inner) != 1:
                step = _mobius_step(e, target)
                if step is None:
                    return None
                e, target = step
                continue
            rest = e.func(*(a for a in e.args if not a.has(M.Z)))
            if e.is_Mul and rest == 0:
                return None
            target = target - rest if e.is_Add else target / rest
            e = inner[0]
        elif e.is_Pow:
            base, exponent = e.args
            if base.has(M.Z) and exponent.has(M.Z):
                return None
            if exponent.has(M.Z):
                if base.is_positive is not True or base == 1:
                    return None
                target, e = sp.log(target) / sp.log(base), exponent
            elif exponent == -1:
                target, e = 1 / target, base
            elif exponent.is_Rational and exponent.p == 1 and exponent.q > 1:
                target, e = target ** exponent.q, base  # a root's image is >= 0, where this inverts it
            else:
                return None
        elif type(e) in _INJECTIVE_INVERSES and len(e.args) == 1:
            target, e = _INJECTIVE_INVERSES[type(e)](target), e.args[0]
        else:
            return None
    return target


def _mobius_step(e, y):
    """(inner, x) where e = (a u + b)/(c u + d) for a subexpression u of e, with ad - bc != 0,
    and x = (d y - b)/(a - c y) the u at which e = y (z/(1 - z), exp(z)/(1 + exp(z))); None when
    no subexpression makes e such a quotient. Tried from the largest subexpression down."""
    x = sp.Dummy("u")
    for u in sp.preorder_traversal(e):
        if u is e or not u.has(M.Z):
            continue
        quotient = sp.together(e.xreplace({u: x}))
        if quotient.has(M.Z):
            continue
        num, den = sp.fraction(quotient)
        if not (num.is_polynomial(x) and den.is_polynomial(x)) or sp.degree(num, x) > 1 or sp.degree(den, x) > 1:
            continue
        (a, b), (c, d) = (sp.Poly(num, x).all_coeffs()[-2:] if sp.degree(num, x) == 1 else (0, num),
                          sp.Poly(den, x).all_coeffs()[-2:] if sp.degree(den, x) == 1 else (0, den))
        if sp.expand(a * d - b * c) == 0:
            continue
        return u, (d * y - b) / (a - c * y)
    return None


def _substitute_output(f, fprime):
    e = fprime
    if isinstance(f, logistic):
        t = f.args[0]
        e = e.xreplace({logistic(-t): 1 - logistic(t)})
    e = sp.expand(e).xreplace({f: Y_OUT}) if f.is_Function or f.is_Pow else e.xreplace({f: Y_OUT})
    return e if not e.has(M.Z) else None


def _piecewise_output_form(f, fprime):
    """Branch by branch: a branch constant in z contributes its constant derivative."""
    fprime = _piecewise_form(fprime)
    if not isinstance(fprime, sp.Piecewise) or len(f.args) != len(fprime.args):
        return None
    pieces = []
    for (fb, cond), (gb, gcond) in zip(f.args, fprime.args):
        if cond != gcond:
            return None
        if cond is sp.true:
            image_cond = sp.true
        elif isinstance(cond, sp.core.relational.Relational) and cond.lhs == M.Z and cond.rhs.is_number:
            # branch conditions z > t map to y > f(t) for an increasing f (checked by the proof)
            image_cond = cond.func(Y_OUT, fb.xreplace({M.Z: cond.rhs}))
        else:
            return None
        if not gb.has(M.Z):
            pieces.append((gb, image_cond))
            continue
        sub = _substitute_output(fb, gb)
        if sub is None:
            sol = invert(elementary(fb))
            if sol is None:
                return None
            sub = sp.simplify(gb.xreplace({M.Z: sol}))
            if sub.has(M.Z):
                return None
        pieces.append((sub, image_cond))
    g = sp.Piecewise(*pieces)
    # the proof: on each branch's domain of f, g(f(z)) must equal f'(z), with g's conditions
    # selecting the matching branch; and at each switching point both sides must agree exactly
    previous = None
    for (fb, cond), (gb, _) in zip(f.args, fprime.args):
        domain = cond if cond is not sp.true else (previous.negated if previous is not None else sp.true)
        composed = sp.piecewise_fold(g.xreplace({Y_OUT: fb}))
        if domain is not sp.true and isinstance(composed, sp.Piecewise):
            composed = _select_branch(composed, domain)
            if composed is None:
                return None
        ok, _ = prove_equal(composed, gb)
        if not ok:
            return None
        if cond is not sp.true:
            if previous is not None:
                return None  # more than one switching condition: not handled
            previous = cond
            point = cond.rhs
            at_point = g.xreplace({Y_OUT: f.xreplace({M.Z: point})})
            if sp.simplify(at_point - fprime.xreplace({M.Z: point})) != 0:
                return None
    return g


def _without_constant_factor(cond):
    """c*g(z) > 0 -> g(z) > 0 for a positive constant c (flipped for a negative one): solveset
    cannot handle symbolic parameters, only their signs."""
    if not isinstance(cond, sp.core.relational.Relational):
        return cond
    expr = cond.lhs - cond.rhs
    const, rest = expr.as_independent(M.Z, as_Add=False)
    if const.is_positive:
        return cond.func(rest, 0)
    if const.is_negative:
        return {sp.StrictGreaterThan: sp.StrictLessThan, sp.GreaterThan: sp.LessThan, sp.StrictLessThan: sp.StrictGreaterThan, sp.LessThan: sp.GreaterThan}.get(cond.func, cond.func)(rest, 0)
    return cond.func(expr, 0)


def _select_branch(pw, domain):
    """The branch of ``pw`` (conditions in z) selected everywhere on ``domain`` (a relational
    like z > t or z <= t), decided with SymPy's solveset; None when SymPy cannot decide."""
    domain_set = domain.as_set()
    for value, c in pw.args:
        if c is sp.true:
            return value
        try:
            # no clock: this is only reached inside output_form, for a function of at most
            # OUTPUT_FORM_OPS operations, whose branch conditions are as small
            holds = sp.solveset(_without_constant_factor(c), M.Z, domain=sp.S.Reals)
        except (NotImplementedError, TypeError, ValueError):
            return None
        if not isinstance(holds, sp.Set) or isinstance(holds, sp.ConditionSet):
            return None
        if domain_set.is_subset(holds):
            return value
        if sp.Intersection(domain_set, holds) != sp.S.EmptySet:
            return None  # the branch holds on part of the domain only
    return None


# -- class-axis functions --------------------------------------------------------------------------


def _simplify(expr):
    """sp.simplify, or ``expr`` itself where SymPy's simplification of sums fails (it raises
    StopIteration or TypeError on some products of Sums): an unsimplified derivative is still exact."""
    expr = jumps_as_zero(expr)
    try:
        return sp.simplify(expr)
    except (StopIteration, TypeError, ValueError, NotImplementedError, AttributeError, RecursionError):
        return expr


def _in_range(expr, index):
    """Drop the 'index in 1..K' conditions that SymPy's KroneckerDelta sums attach."""
    def is_range(rel):
        return isinstance(rel, sp.core.relational.Relational) and rel.has(index) and rel.has(M.K) or (
            isinstance(rel, sp.core.relational.Relational) and rel.has(index) and rel.free_symbols == {index}
        )

    def fix(pw):
        for value, cond in pw.args:
            atoms = cond.atoms(sp.core.relational.Relational)
            if cond is sp.true or (atoms and all(is_range(r) for r in atoms)):
                return value
        return pw

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), fix)


def derive_split(act: M.Activation):
    """A split activation f(a, b) of the two halves of its input: the value, the partial
    derivatives d f / d a and d f / d b (``NAME_grad_a``, ``NAME_grad_b``, kind ``grad_half``), each
    in stable primitives like an elementwise derivative, and the vector-Jacobian product, which
    is the pair (g d f / d a, g d f / d b) concatenated along the split axis."""
    fired: list[str] = []
    forward = raise_primitives(act.expr, fired)
    out = [Derivation(act.name, "forward", act.name, "", act.expr, forward, tuple(fired))]
    base = _piecewise_form(forward)
    halves = []
    for half in (M.HALF_A, M.HALF_B):
        gfired: list[str] = []
        grad = simplest(sp.diff(base, half), gfired)
        halves.append(grad)
        out.append(Derivation(f"{act.name}_grad_{half.name}", "grad_half", act.name, half.name, sp.diff(_piecewise_form(act.expr), half), grad, tuple(gfired)))
    g = sp.Symbol("g", real=True)
    raw = sp.Tuple(*(g * sp.diff(act.expr, h) for h in (M.HALF_A, M.HALF_B)))
    out.append(Derivation(f"{act.name}_vjp", "vjp", act.name, "z", raw, sp.Tuple(*(g * d for d in halves)), ()))
    return out


def derive_vector(act: M.Activation):
    fired: list[str] = []
    f_i = act.expr
    out = [Derivation(act.name, "forward", act.name, "", f_i, f_i, ())]
    zk = M.ZV[M.KK]
    # a row reduction (no free index) has one output per row: its VJP is g times its gradient
    vjp_raw = G_ROW * sp.diff(f_i, zk) if act.reduces else sp.Sum(G[M.I] * sp.diff(f_i, zk), (M.I, 1, M.K))
    vjp = _in_range(vjp_raw.doit(), M.KK)
    vjp = _simplify(_in_range(vjp, M.KK))
    out.append(Derivation(f"{act.name}_vjp", "vjp", act.name, "z", vjp_raw, vjp, tuple(fired)))
    jac_raw = sp.diff(f_i, zk)
    jac = _simplify(_in_range(jac_raw.doit(), M.KK))
    # a reduction's Jacobian is one row: the gradient d f / d z_k, NAME_grad
    out.append(Derivation(f"{act.name}_grad" if act.reduces else f"{act.name}_jacobian", "jacobian", act.name, "z", jac_raw, jac, ()))
    out.append(derive_vector_jvp(act))
    return out


def derive_vector_jvp(act: M.Activation) -> Derivation:
    """The Jacobian-vector product sum_k J_ik t_k of a class-axis activation: the forward-mode
    rule of targets whose transforms need one (JAX's custom_jvp; reverse mode transposes it).
    Derived with the entry (and cached with it); like the Hessian's entries it serves a framework's
    rule only, so the catalog leaves it out."""
    d = _in_range(sp.diff(act.expr, M.ZV[M.KK]).doit(), M.KK)
    raw = sp.Sum(d * T[M.KK], (M.KK, 1, M.K))
    jvp = _simplify(_in_range(raw.doit(), M.I))
    return Derivation(f"{act.name}_jvp", "jvp", act.name, "z", raw, jvp, ())


def derive_loss(loss: M.Loss):
    fired: list[str] = []
    value = raise_primitives(loss.expr, fired)
    out = [Derivation(loss.name, "loss", loss.name, "", loss.expr, value, tuple(fired))]
    if loss.class_axis:
        yk = M.Y_HATV[M.KK]
        raw = sp.diff(loss.expr, yk)
        # the stable primitives again after simplification (a quotient (c exp(t) + d)/(exp(t) + 1)
        # becomes logistic terms), as for every elementwise derivative
        gfired: list[str] = []
        grad = raise_primitives(_simplify(_in_range(raw.doit(), M.KK)), gfired)
        out.append(Derivation(f"{loss.name}_grad", "loss_grad", loss.name, "y_hat", raw, grad, tuple(gfired)))
        for p in loss.params:
            pf: list[str] = []
            gp = raise_primitives(_simplify(sp.diff(loss.expr, p.symbol)), pf)
            out.append(Derivation(f"{loss.name}_grad_{p.name}", "loss_grad_param", loss.name, p.name, sp.diff(loss.expr, p.symbol), gp, tuple(pf)))
        return out
    base = _piecewise_form(value)
    gfired: list[str] = []
    grad = simplest(sp.diff(base, M.Y_HAT), gfired)
    out.append(Derivation(f"{loss.name}_grad", "loss_grad", loss.name, "y_hat", sp.diff(_piecewise_form(loss.expr), M.Y_HAT), grad, tuple(gfired)))
    for name, x in zip(loss.inputs, loss.input_symbols):
        xf: list[str] = []
        gx = simplest(sp.diff(base, x), xf)
        out.append(Derivation(f"{loss.name}_grad_{name}", "loss_grad_input", loss.name, name, sp.diff(_piecewise_form(loss.expr), x), gx, tuple(xf)))
    for p in loss.params:
        pf: list[str] = []
        gp = simplest(sp.diff(base, p.symbol), pf)
        out.append(Derivation(f"{loss.name}_grad_{p.name}", "loss_grad_param", loss.name, p.name, sp.diff(loss.expr, p.symbol), gp, tuple(pf)))
    return out


def is_identity_map(act: M.Activation) -> bool:
    return not act.vector and sp.simplify(act.expr - M.Z) == 0


def head_pairs(spec: M.Spec):
    """(activation, loss) pairs of the tasks whose activation is not the identity, in order."""
    seen = []
    for task in spec.tasks:
        act = spec.activation(task.output) or next(a for a in spec.activations if task.output in a.aliases)
        for loss_name in task.losses:
            loss = spec.loss(loss_name)
            if is_identity_map(act) or (act, loss) in seen:
                continue
            if act.vector != loss.class_axis:
                raise EntryFailure(f"task '{task.name}' pairs {'a vector' if act.vector else 'an elementwise'} activation with {'a class-axis' if loss.class_axis else 'an elementwise'} loss; pair like with like")
            seen.append((act, loss))
    return seen


def derive_head(act: M.Activation, loss: M.Loss):
    name = f"{act.name}_{loss.name}"
    fired: list[str] = []
    if loss.class_axis:
        composed = loss.expr.replace(
            lambda e: isinstance(e, sp.Indexed) and e.base == M.Y_HATV,
            lambda e: act.expr.xreplace({M.I: e.indices[0]}),
        )
        # logs of probabilities: every argument is a positive ratio of exponentials
        value = sp.expand_log(composed, force=True)
        zk = M.ZV[M.KK]
        raw = sp.diff(composed, zk)
        grad = _simplify(sp.expand_log(_in_range(sp.diff(value, zk).doit(), M.KK), force=True))
        return [
            Derivation(name, "head", name, "", composed, value, ()),
            Derivation(f"{name}_grad", "head_grad", name, "z", raw, grad, ()),
        ]
    composed = loss.expr.xreplace({M.Y_HAT: act.expr})
    value = simplest(composed, fired)
    gfired: list[str] = []
    grad = _head_grad(sp.diff(_piecewise_form(value), M.Z), gfired)
    return [
        Derivation(name, "head", name, "", composed, value, tuple(fired)),
        Derivation(f"{name}_grad", "head_grad", name, "z", sp.diff(composed, M.Z), grad, tuple(gfired)),
    ]


def _head_grad(expr, fired):
    """The head's gradient as derived, e.g. -y logistic(-z) + (1 - y) logistic(z) for sigmoid + BCE.

    It equals logistic(z) - y (the identity sigmoid_bce_gradient proves that), but the folded form
    cancels: for y = 1 and z = 40 it gives 0 where the true value is -4.2e-18. Each term of the
    derived form is exact, so that is the one computed."""
    return simplest(expr, fired)
