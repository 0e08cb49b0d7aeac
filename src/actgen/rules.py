"""Stage 4: named, proven rewrite rules on SymPy expressions.

Two bundles, in the spirit of ``sympy.codegen.rewriting``:

* ``RAISE`` recognises elementary forms that lose accuracy or overflow and replaces them by the
  stable primitives of :mod:`actgen.primitives` (``log(1 + exp(u))`` -> ``softplus(u)``). It runs on
  every function before differentiation and on every derivative after it, so a user's
  ``log(1 + exp(2*z))/2`` gets the same treatment as the bundled softplus.
* ``LOWER`` prepares an expression for a NumPy printer: it evaluates primitives by branch-free
  stable formulas, restricts each Piecewise branch to the inputs that select it, and applies
  ``expm1``/``log1p`` rewrites (node-local versions of SymPy's codegen optimisations).

Each rule has a name, a docstring with its identity, and a ``proof`` pair (left, right) on generic
symbols that :func:`prove_rule` reduces to 0 symbolically (tested for every rule).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import sympy as sp
from sympy.codegen import cfunctions

from .model import Input, Z


def is_input(s) -> bool:
    """s is an array input of an elementwise expression: z, or an Input (the halves a, b of a
    split activation, a loss's further prediction input)."""
    return s == Z or isinstance(s, Input)
from . import series
from .primitives import add_exact_constant, cos_dd, erfcx, exp_damped, exp_dd, exp_square, format_max, format_tiny, logistic, mul_exp, mul_exp_dd, mul_exp_shared, mul_exp_square, normal_cdf, polynomial, ratio, sign_select, sin_dd, softplus, xlog1py, xlogy
from .symbolic import prove_equal

a = sp.Symbol("a", real=True)
b = sp.Symbol("b", real=True)
c = sp.Symbol("c", real=True, nonzero=True)
x = sp.Symbol("x", real=True)
u = sp.Symbol("u", positive=True)
n = sp.Symbol("n", integer=True, positive=True)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A rewrite ``match(node) -> new node or None``, applied bottom-up to a fixpoint."""

    name: str
    identity: str  # the identity in plain text, for docs and docstrings
    rewrite: Callable[[sp.Basic], sp.Basic | None]
    proof: tuple  # ((lhs, rhs), ...) on generic symbols; each proved equal by prove_rule
    stage: str  # "raise" or "lower"
    top_down: bool = False  # try each node before its arguments (a rule that rewrites whole products)
    # one top-down pass, not a fixpoint: for rules whose result keeps the matched form in one of
    # its branches (a Piecewise that selects the rewritten form where it is needed)
    once: bool = False
    # applied to the whole expression only (one call, no traversal): for rules whose decision needs
    # the context of a node (whether a sum is a numerator), which the rewrite walks itself
    whole: bool = False


def _apply_top_down(expr, rule):
    if not isinstance(expr, sp.Basic) or expr.is_Atom:
        return expr, False
    result = rule.rewrite(expr)
    if result is not None and result != expr:
        return result, True
    args, changed = [], False
    for arg in expr.args:
        new, did = _apply_top_down(arg, rule)
        args.append(new)
        changed |= did
    return (expr.func(*args) if changed else expr), changed


def _apply_once(expr, rule):
    if not isinstance(expr, sp.Basic) or expr.is_Atom:
        return expr, False
    if rule.top_down:
        return _apply_top_down(expr, rule)
    changed = False
    args = []
    for arg in expr.args:
        new, did = _apply_once(arg, rule)
        args.append(new)
        changed |= did
    if changed:
        expr = expr.func(*args)
    result = rule.rewrite(expr)
    if result is not None and result != expr:
        return result, True
    return expr, changed


def apply_rules(expr, rules, fired=None, max_rounds=12):
    """Apply ``rules`` until nothing changes; the names that fired are appended to ``fired``."""
    fired = [] if fired is None else fired
    for round_ in range(max_rounds):
        any_change = False
        for rule in rules:
            if (rule.once or rule.whole) and round_:
                continue
            if rule.whole:
                new = rule.rewrite(expr) if isinstance(expr, sp.Basic) else None
                expr, did = (new, True) if new is not None and new != expr else (expr, False)
            else:
                expr, did = _apply_top_down(expr, rule) if rule.once else _apply_once(expr, rule)
            if did:
                any_change = True
                if rule.name not in fired:
                    fired.append(rule.name)
        if not any_change:
            break
    return expr


def prove_rule(rule: Rule):
    """(ok, steps) for each proof pair of ``rule``."""
    return [prove_equal(lhs, rhs) for lhs, rhs in rule.proof]


# -- raise rules: recognise unstable elementary forms ----------------------------------------------


def _logistic_from_exp(e):
    # (1 + exp(t))**-k  ->  logistic(-t)**k
    if e.is_Pow and e.exp.is_Integer and e.exp < 0 and e.base.is_Add and len(e.base.args) == 2:
        one, other = sorted(e.base.args, key=lambda t: t != 1)
        if one == 1 and isinstance(other, sp.exp):
            return logistic(-other.args[0]) ** (-e.exp)
    return None


def _exp_times_logistic(e):
    # exp(t) * logistic(-t)**k  ->  logistic(t) * logistic(-t)**(k-1)
    if not e.is_Mul:
        return None
    factors = list(e.args)
    for i, f in enumerate(factors):
        if not isinstance(f, sp.exp):
            continue
        t = f.args[0]
        for j, g in enumerate(factors):
            base, k = (g.base, g.exp) if g.is_Pow else (g, sp.Integer(1))
            if isinstance(base, logistic) and base.args[0] == -t and k.is_Integer and k > 0:
                rest = [h for m, h in enumerate(factors) if m not in (i, j)]
                return sp.Mul(*rest, logistic(t), logistic(-t) ** (k - 1))
    return None



def _logistic_over_exp_sum(e):
    # logistic(-t) (c exp(t) + d) -> c exp(t) logistic(-t) + d logistic(-t), which
    # exp_times_logistic makes c logistic(t) + d logistic(-t): a quotient (c exp(t) + d)/(exp(t) + 1)
    # (a derivative that SymPy put over one denominator) then never forms exp(t)/(exp(t) + 1),
    # inf/inf past t = 709
    if not e.is_Mul:
        return None
    factors = list(e.args)
    for i, f in enumerate(factors):
        if not isinstance(f, logistic):
            continue
        t = -f.args[0]
        for j, g in enumerate(factors):
            if g.is_Add and any(isinstance(h, sp.exp) and h.args[0] == t for term in g.args for h in sp.Mul.make_args(term)):
                rest = [h for m, h in enumerate(factors) if m not in (i, j)]
                return sp.Add(*[sp.Mul(*rest, f, term) for term in g.args])
    return None


def _softplus_from_log(e):
    # log(1 + exp(t))  ->  softplus(t)
    if isinstance(e, sp.log) and e.args[0].is_Add and len(e.args[0].args) == 2:
        one, other = sorted(e.args[0].args, key=lambda t: t != 1)
        if one == 1 and isinstance(other, sp.exp):
            return softplus(other.args[0])
    return None


def _log_logistic(e):
    # log(logistic(t)**k)  ->  -k softplus(-t)
    if isinstance(e, sp.log):
        arg = e.args[0]
        base, k = (arg.base, arg.exp) if arg.is_Pow else (arg, sp.Integer(1))
        if isinstance(base, logistic):
            return -k * softplus(-base.args[0])
    return None


def _pair_term_with_constant(extract, combine):
    """A rewrite of the Adds that pair a term c*f(t) (``extract`` returns t for f(t), or None) with
    a constant k: the two become combine(t, c, k) where that is not None."""

    def rewrite(e):
        if not e.is_Add:
            return None
        terms = list(e.args)
        for i, term in enumerate(terms):
            coeff, rest = term.as_coeff_Mul()
            target = extract(rest)
            if target is None:
                continue
            for j, other in enumerate(terms):
                if j == i or not other.is_number or other == 0:
                    continue
                new = combine(target, coeff, other)
                if new is not None:
                    return sp.Add(*[t for m, t in enumerate(terms) if m not in (i, j)], new)
        return None

    return rewrite


def _paired_with_constant(extract, make, both_signs=False):
    """Terms c*f(t) paired with the constant k = -c become make(t, k); with ``both_signs`` also
    k = c, as make(-t, k)."""

    def combine(target, coeff, k):
        if k == -coeff:
            return make(target, k)
        return make(-target, k) if both_signs and k == coeff else None

    return _pair_term_with_constant(extract, combine)


def _complement(fn, make):
    """k - k fn(t) -> make(t, k)."""
    return _paired_with_constant(fn, make)


def _is_logistic(t):
    return t.args[0] if isinstance(t, logistic) else None


def _is_tanh_squared(t):
    return t.base.args[0] if t.is_Pow and t.exp == 2 and isinstance(t.base, sp.tanh) else None


def _odd_plus_one(fn, make):
    """k + k fn(t) -> make(t, k) and k - k fn(t) -> make(-t, k), for an odd fn bounded by 1 whose
    complement 1 + fn(t) cancels for t -> -oo (erf, tanh)."""
    return _paired_with_constant(lambda r: r.args[0] if isinstance(r, fn) else None, lambda t, k: make(-t, k), both_signs=True)


# c + c erf(t) -> 2c Phi(sqrt(2) t);  c - c erf(t) -> 2c Phi(-sqrt(2) t)
_normal_cdf = _odd_plus_one(sp.erf, lambda t, k: 2 * k * normal_cdf(sp.sqrt(2) * t))
# c + c tanh(t) -> 2c logistic(2t);  c - c tanh(t) -> 2c logistic(-2t)
_tanh_complement = _odd_plus_one(sp.tanh, lambda t, k: 2 * k * logistic(2 * t))


def _sign_times_self(e):
    # t sign(t) -> |t|
    if e.is_Mul:
        for f in e.args:
            if isinstance(f, sp.sign) and f.args[0] in e.args:
                rest = list(e.args)
                rest.remove(f)
                rest.remove(f.args[0])
                return sp.Mul(*rest, sp.Abs(f.args[0]))
    return None


def _sign_of_power(e):
    # sign(t**n) -> sign(t)**n: t**n underflows to 0 (or overflows) where t does not (sign(z**6)
    # was 0 at z = 1e-300)
    if isinstance(e, sp.sign) and e.args[0].is_Pow and e.args[0].exp.is_Integer and e.args[0].exp > 1:
        return sp.sign(e.args[0].base) ** e.args[0].exp
    return None


def _log_cosh_form(t):
    """log(cosh(t)) without overflow and without cancellation: near 0, where log(cosh(t)) ~ t**2/2
    and |t| + softplus(-2|t|) - log 2 subtracts nearly equal terms, log1p(2 sinh(t/2)**2) (cosh(t)
    - 1 = 2 sinh(t/2)**2 exactly); beyond |t| = 1, where cosh would overflow, the softplus form
    (its terms then differ by a factor of 2.6 or more)."""
    return sp.Piecewise((cfunctions.log1p(2 * sp.sinh(t / 2) ** 2), sp.Abs(t) < 1),
                        (sp.Abs(t) + softplus(-2 * sp.Abs(t)) - sp.log(2), True))


def _log_cosh(e):
    if isinstance(e, sp.log) and isinstance(e.args[0], sp.cosh):
        return _log_cosh_form(e.args[0].args[0])
    return None


LOGISTIC = Rule(
    "logistic",
    "1/(1 + exp(-t))**k = logistic(t)**k",
    _logistic_from_exp,
    ((1 / (1 + sp.exp(-a)), logistic(a)), (1 / (1 + sp.exp(a)) ** 2, logistic(-a) ** 2)),
    "raise",
)
EXP_TIMES_LOGISTIC = Rule(
    "exp_times_logistic",
    "exp(t) logistic(-t)**k = logistic(t) logistic(-t)**(k-1)",
    _exp_times_logistic,
    ((sp.exp(a) * logistic(-a), logistic(a)), (sp.exp(a) * logistic(-a) ** 2, logistic(a) * logistic(-a))),
    "raise",
)
LOGISTIC_OVER_EXP_SUM = Rule(
    "logistic_over_exp_sum",
    "logistic(-t) (c exp(t) + d) = c logistic(t) + d logistic(-t) (no exp(t)/(1 + exp(t)), inf/inf for large t)",
    _logistic_over_exp_sum,
    ((logistic(-a) * (c * sp.exp(a) + b), c * sp.exp(a) * logistic(-a) + b * logistic(-a)),),
    "raise",
)
SOFTPLUS = Rule(
    "softplus",
    "log(1 + exp(t)) = softplus(t), evaluated without overflow (see softplus_log1p)",
    _softplus_from_log,
    ((sp.log(1 + sp.exp(a)), softplus(a)),),
    "raise",
)
LOG_LOGISTIC = Rule(
    "log_logistic",
    "log(logistic(t)) = -softplus(-t)",
    _log_logistic,
    ((sp.log(logistic(a)), -softplus(-a)),),
    "raise",
)
LOGISTIC_COMPLEMENT = Rule(
    "logistic_complement",
    "c - c logistic(t) = c logistic(-t)",
    _complement(_is_logistic, lambda t, k: k * logistic(-t)),
    ((c - c * logistic(a), c * logistic(-a)),),
    "raise",
)
SECH_SQUARED = Rule(
    "sech_squared",
    "c - c tanh(t)**2 = c sech(t)**2 (no cancellation where tanh(t) is near ±1)",
    _complement(_is_tanh_squared, lambda t, k: k * sp.sech(t) ** 2),
    ((c - c * sp.tanh(a) ** 2, c * sp.sech(a) ** 2),),
    "raise",
)
NORMAL_CDF = Rule(
    "normal_cdf",
    "c + c erf(t) = 2c Phi(sqrt(2) t) and c - c erf(t) = 2c Phi(-sqrt(2) t) (no cancellation in the tails)",
    _normal_cdf,
    ((c + c * sp.erf(a), 2 * c * normal_cdf(sp.sqrt(2) * a)), (c - c * sp.erf(a), 2 * c * normal_cdf(-sp.sqrt(2) * a))),
    "raise",
)
TANH_COMPLEMENT = Rule(
    "tanh_complement",
    "c + c tanh(t) = 2c logistic(2t) and c - c tanh(t) = 2c logistic(-2t) (no cancellation where tanh(t) is near -1 or 1)",
    _tanh_complement,
    ((c + c * sp.tanh(a), 2 * c * logistic(2 * a)), (c - c * sp.tanh(a), 2 * c * logistic(-2 * a))),
    "raise",
)
SIGN_TIMES_SELF = Rule(
    "sign_times_self",
    "t sign(t) = |t|",
    _sign_times_self,
    ((a * sp.sign(a), sp.Abs(a)),),
    "raise",
)
SIGN_OF_POWER = Rule(
    "sign_of_power",
    "sign(t**n) = sign(t)**n for an integer n > 1 (t**n may underflow to 0 or overflow where t does not)",
    _sign_of_power,
    # by cases: t = u > 0, t = -u, t = 0, for an even and an odd power
    tuple((sp.sign(t**n_), sp.sign(t) ** n_) for t in (u, -u, sp.Integer(0)) for n_ in (2, 3)),
    "raise",
)
RAISE = (LOGISTIC, LOGISTIC_OVER_EXP_SUM, EXP_TIMES_LOGISTIC, SOFTPLUS, LOG_LOGISTIC, LOGISTIC_COMPLEMENT, SECH_SQUARED, NORMAL_CDF, TANH_COMPLEMENT, SIGN_TIMES_SELF, SIGN_OF_POWER)


def raise_primitives(expr, fired=None):
    """Rewrite elementary forms into stable primitives (the RAISE bundle)."""
    return apply_rules(expr, RAISE, fired)


# -- lower rules: evaluate primitives and branches stably in NumPy ---------------------------------


def _logistic_pair_sum(e):
    """An Add in which logistic(t) and logistic(-t) both appear (sigmoid + BCE's -y s(-t) + (1-y) s(t)):
    with q = logistic(-|t|) = exp(-|t|)/(1 + exp(-|t|)), logistic(t) is 1 - q for t >= 0 and q
    otherwise, so the sum becomes one Piecewise whose branches expand to sums in q, in which the
    constant parts cancel exactly ((1-y)(1-q) - y q = (1 - y) - q): one exponential, one where,
    and each branch keeps its relative accuracy where the true value is tiny."""
    if not e.is_Add:
        return None
    args = {f.args[0] for f in e.atoms(logistic)}
    for t in sorted(args, key=sp.default_sort_key):
        if -t in args and not t.could_extract_minus_sign():
            q = sp.exp(-sp.Abs(t)) / (1 + sp.exp(-sp.Abs(t)))
            Q = sp.Dummy("q")
            pos = sp.expand(e.xreplace({logistic(t): 1 - Q, logistic(-t): Q}))
            neg = sp.expand(e.xreplace({logistic(t): Q, logistic(-t): 1 - Q}))
            if not (pos.is_polynomial(Q) and neg.is_polynomial(Q)):
                continue  # q in a denominator (1/(1 + logistic(z)) of z log(1 + logistic(z))): not a sum in q
            if sp.degree(pos, Q) <= 1 and sp.degree(neg, Q) <= 1:
                # pos = P0 + P1 q, neg = N0 + N1 q: when the branches differ by constants, a
                # 0/1 indicator H of t >= 0 selects them arithmetically, N0 + (P0 - N0) H +
                # (N1 + (P1 - N1) H) q, with the same roundings as each branch and no where()
                # (NumPy's where on an unsorted mask costs ~3 ns per element, 5x an exp)
                p0, p1, n0, n1 = pos.coeff(Q, 0), pos.coeff(Q, 1), neg.coeff(Q, 0), neg.coeff(Q, 1)
                dc, dq = sp.expand(p0 - n0), sp.expand(p1 - n1)
                if dc.is_number and dq.is_number:
                    step = sp.Piecewise((1, t >= 0), (0, True))
                    return n0 + dc * step + (n1 + dq * step) * q
            return sp.Piecewise((pos.xreplace({Q: q}), t >= 0), (neg.xreplace({Q: q}), True))
    return None


def _stable_logistic(e):
    # logistic(t) = exp(min(t, 0)) / (1 + exp(-|t|)): no exponential overflows, no where() (a
    # where with a scalar branch costs several passes), and a product such as z*logistic(z)
    # keeps the factor exp(min(t, 0)) visible to split_exp where logistic(z) alone would underflow
    if isinstance(e, logistic):
        t = e.args[0]
        return sp.exp(sp.Min(t, 0)) / (1 + sp.exp(-sp.Abs(t)))
    return None


def _logistic_reciprocal(e):
    # a logistic that is the whole value, or a term of it (times a constant): 1/(1 + exp(-t)).
    # Where exp(-t) overflows (t < -709.78 in float64) the reciprocal of inf is 0 and the true
    # value is below the smallest normal number; no branch is needed, which saves three passes.
    def plain(term):
        coeff, rest = term.as_coeff_Mul()
        if isinstance(rest, logistic):
            return coeff / (1 + sp.exp(-rest.args[0]))
        return None

    if e.is_Add:
        new = [plain(t) or t for t in e.args]
        return sp.Add(*new) if any(plain(t) is not None for t in e.args) else None
    return plain(e)


def _xlogy(e):
    # x log(t) -> xlogy(x, t) when x is a variable quantity: 0 log 0 = 0, as cross-entropy needs
    if not e.is_Mul:
        return None
    logs = [f for f in e.args if isinstance(f, sp.log)]
    if len(logs) != 1:
        return None
    rest = sp.Mul(*[f for f in e.args if f is not logs[0]])
    coeff, var_part = rest.as_coeff_Mul()
    if var_part == 1 or not var_part.free_symbols or var_part.has(sp.log):
        return None
    # only where the factor can be 0 while the logarithm's argument is 0: a loss's target
    arg = logs[0].args[0]
    if arg.is_Add and sp.S.One in arg.args:
        rest = arg - 1
        if rest.free_symbols:  # log(1 + t): log1p's accuracy where t is tiny
            return coeff * xlog1py(var_part, rest)
    return coeff * xlogy(var_part, arg)


def _ratio_parts(t):
    """(n, d) for a ratio t = n/d of two expressions that both hold an input; else None."""
    n, d = sp.fraction(sp.together(t)) if t.is_Mul or t.is_Pow else (None, None)
    if n is None or d == 1 or not _inputs(n) or not _inputs(d):
        return None
    return n, d


def _log_ratio(e):
    # log(n/d) -> log1p((n - d)/d) where n/d is in [1/2, 2] (n - d exact there for floats n, d),
    # log|n| - log|d| where the quotient n/d overflows or is below the smallest normal number of the
    # working format (a rounded subnormal quotient has lost significant bits), log(n/d) elsewhere;
    # xlogy(x, n/d) likewise. The quotient is one division (ratio): d's reciprocal alone overflows
    # for a subnormal d where n/d may be moderate.
    if isinstance(e, sp.log):
        x, t = None, e.args[0]
    elif isinstance(e, xlogy):
        x, t = e.args
    else:
        return None
    parts = _ratio_parts(t)
    if parts is None:
        return None
    n, d = parts
    r = ratio(n, d)
    near = sp.And(r >= sp.Rational(1, 2), r <= 2)
    far = sp.Or(r >= format_max(), sp.And(r >= 0, r < format_tiny()))
    if x is None:
        return sp.Piecewise((cfunctions.log1p(ratio(n - d, d)), near), (sp.log(sp.Abs(n)) - sp.log(sp.Abs(d)), far), (sp.log(r), True))
    return sp.Piecewise((xlog1py(x, ratio(n - d, d)), near), (xlogy(x, sp.Abs(n)) - xlogy(x, sp.Abs(d)), far), (xlogy(x, r), True))


_RATIO_NEAR_ONE = (1 + u) / (2 + u)  # in [1/2, 2] for u > 0
LOG_RATIO = Rule(
    "log_ratio",
    "log(n/d) = log1p((n - d)/d) where n/d is in [1/2, 2] (no rounding of a ratio near 1: n - d is exact there), "
    "log|n| - log|d| where the quotient n/d overflows or is below the smallest normal number of the working format "
    "(|log| >= 708 in float64, 87 in float32 then: the difference does not cancel), log(n/d) elsewhere, n/d one division; "
    "xlogy(x, n/d) the same with xlog1py and xlogy (for n, d that both hold an input)",
    _log_ratio,
    # each branch's form for a positive ratio (the conditions only choose between equal forms)
    ((x * sp.log(u / (2 + u)), xlogy(x, sp.Abs(u)) - xlogy(x, sp.Abs(2 + u))),
     (sp.log(_RATIO_NEAR_ONE), cfunctions.log1p(ratio(1 + u - (2 + u), 2 + u))),
     (sp.log((1 + u) / (2 + u)), sp.log(sp.Abs(1 + u)) - sp.log(sp.Abs(2 + u))),
     (x * sp.log(_RATIO_NEAR_ONE), xlog1py(x, ratio(1 + u - (2 + u), 2 + u))),
     (sp.log(_RATIO_NEAR_ONE), sp.log(ratio(1 + u, 2 + u)))),
    "lower",
    top_down=True,
    once=True,  # log(n/d) stays itself in the last branch
)

def _clamp_branches(e):
    """Restrict each branch of a one-variable Piecewise to the inputs that select it.

    With ``cond = (v > t)``, the selected branch only ever sees v > t, so replacing v by Max(v, t)
    in it changes nothing where it is selected and keeps exp/log from overflowing elsewhere (NumPy
    evaluates every branch of a ``where``).
    """
    if not isinstance(e, sp.Piecewise) or len(e.args) != 2 or e.args[1][1] is not sp.true:
        return None
    (first, cond), (second, _) = e.args
    if not isinstance(cond, (sp.StrictGreaterThan, sp.GreaterThan, sp.StrictLessThan, sp.LessThan)):
        return None
    lhs, rhs = cond.lhs, cond.rhs
    if not (lhs.is_Symbol and rhs.is_number):
        return None
    v = lhs
    transcendental = (sp.exp, sp.log, sp.sinh, sp.cosh, logistic, softplus)
    if not any(f.has(v) and f.has(*transcendental) for f in (first, second)):
        return None
    upper = isinstance(cond, (sp.StrictGreaterThan, sp.GreaterThan))
    in_first = sp.Max(v, rhs) if upper else sp.Min(v, rhs)
    in_second = sp.Min(v, rhs) if upper else sp.Max(v, rhs)
    new_first = first.xreplace({v: in_first}) if first.has(*transcendental) else first
    new_second = second.xreplace({v: in_second}) if second.has(*transcendental) else second
    if new_first == first and new_second == second:
        return None
    return sp.Piecewise((new_first, cond), (new_second, True))


def _sech_squared_cosh(e):
    # sech(t)**2 -> 2/(1 + cosh(2t)): 1 + cosh(2t) = 2 cosh(t)**2 never cancels (cosh >= 1), so the
    # value is cosh's error and two roundings, 1.75 ulp measured against mpmath (4e/(1 + e)**2 with
    # e = exp(-2|t|) measured 3.6), in four passes; where cosh(2t) overflows (|t| > 355) the true
    # value is below the smallest normal number and 2/inf = 0
    if e.is_Pow and isinstance(e.base, sp.sech) and e.exp.is_Integer and e.exp > 0 and e.exp % 2 == 0:
        t = e.base.args[0]
        return (2 / (1 + sp.cosh(2 * t))) ** (e.exp // 2)
    # 1/cosh(t)**2k, as SymPy writes sech(t)**2k after differentiating 1/cosh; one division kept
    # apart (ratio) from the factors around it: z/cosh(z)**2 must not become 2z/(1 + cosh(2z)),
    # inf/inf for |z| > 9e307
    if e.is_Pow and isinstance(e.base, sp.cosh) and e.exp.is_Integer and e.exp < 0 and e.exp % 2 == 0:
        t = e.base.args[0]
        return ratio(2, 1 + sp.cosh(2 * t)) ** (-e.exp // 2)
    return None


def _hyperbolic_ratio(e):
    # sinh(t)**m cosh(t)**-n (n >= m > 0) -> tanh(t)**m sech(t)**(n - m): bounded factors, where
    # sinh and cosh overflow together (d/dz 1/cosh(z) = -sinh(z)/cosh(z)**2 was inf/inf = nan
    # past |z| = 710)
    if not e.is_Mul:
        return None
    powers = [(f.base, f.exp) if f.is_Pow else (f, sp.Integer(1)) for f in e.args]
    for i, (b1, m) in enumerate(powers):
        if not (isinstance(b1, sp.sinh) and m.is_Integer and m > 0):
            continue
        for j, (b2, n) in enumerate(powers):
            if isinstance(b2, sp.cosh) and b2.args == b1.args and n.is_Integer and -n >= m:
                t = b1.args[0]
                rest = [f for k, f in enumerate(e.args) if k not in (i, j)]
                return sp.Mul(*rest, sp.tanh(t) ** m, sp.sech(t) ** (-n - m))
    return None


_Y = sp.Symbol("_Y", positive=True)  # exp(|t|) in hyperbolic_quotient


def _hyperbolic_base(e):
    """(t, {node: k}) when every cosh and sinh in ``e`` has an argument k t for one t and positive
    integers k, the smallest 1; else None."""
    nodes = [n for n in e.atoms(sp.cosh, sp.sinh)]
    if not nodes:
        return None
    args = sorted({n.args[0] for n in nodes}, key=lambda a: (sp.count_ops(a), sp.default_sort_key(a)))
    t = args[0]
    ks = {}
    for n in nodes:
        k = sp.simplify(n.args[0] / t)
        if not (k.is_Integer and k > 0):
            return None
        ks[n] = k
    return t, ks


def _hyperbolic_quotient(e):
    # N/D with cosh(k t), sinh(k t) in both (d/dz of 1/cosh(1.1 z), sinh(t)/(cosh(t) + 1)): with
    # Y = exp(|t|) both are polynomials in Y, and both overflow together (inf/inf = nan); divided by
    # the denominator's top power of Y they are polynomials in X = exp(-|t|) <= 1, times
    # exp((deg N - deg D)|t|). Where |t| < 1 the formula as it is (nothing overflows there, and
    # X is near 1, where (1 - X**2) of a sinh would cancel)
    if not e.is_Mul:
        return None
    num, den = sp.fraction(e)
    if not (num.has(sp.cosh, sp.sinh) and den.has(sp.cosh, sp.sinh)):
        return None
    found = _hyperbolic_base(e)
    if found is None:
        return None
    t, ks = found
    sign = sp.sign(t)
    sub = {n: ((_Y**k + _Y**-k) / 2 if isinstance(n, sp.cosh) else sign * (_Y**k - _Y**-k) / 2) for n, k in ks.items()}
    P, Q = sp.fraction(sp.together(e.xreplace(sub)))
    try:
        p_poly, q_poly = sp.Poly(P, _Y), sp.Poly(Q, _Y)
    except sp.PolynomialError:
        return None
    dp, dq = p_poly.degree(), q_poly.degree()
    if dq < 1 or dp < 1:
        return None
    X = sp.exp(-sp.Abs(t))
    top = max(dp, dq)
    # P/Y**top and Q/Y**top as polynomials in X = 1/Y
    p_x = sum((c * X ** (top - m[0]) for m, c in p_poly.terms()), sp.Integer(0))
    q_x = sum((c * X ** (top - m[0]) for m, c in q_poly.terms()), sp.Integer(0))
    far = p_x / q_x
    return sp.Piecewise((e, sp.Abs(t) < 1), (far, True))


def _hyperbolic_exp(e):
    # cosh(t) -> exp(|t| - log 2) + exp(-|t| - log 2), sinh(t) likewise with a difference (where
    # |t| >= 1: it cancels by at most exp(-2)), sech(t) -> exp(log 2 - |t|)/(1 + exp(-2|t|)), for
    # an argument t whose float evaluation rounds: cosh amplifies a relative error d of t into
    # |t tanh(t)| d (sech(1.1 z): 474 ulp at z = -375; tanh(0.637 z)' 280 ulp at z = -550); as
    # exponentials of a double-double t (compensated_exponent) the rounding is gone
    if not isinstance(e, (sp.cosh, sp.sinh, sp.sech)) or not wants_double_double(e.args[0]):
        return None
    t = e.args[0]
    a, half = sp.Abs(t), sp.log(2)
    if isinstance(e, sp.cosh):
        return sp.exp(a - half) + sp.exp(-a - half)
    if isinstance(e, sp.sech):
        return sp.exp(half - a) / (1 + sp.exp(-2 * a))
    return sp.Piecewise((e, a < 1), (sp.sign(t) * (sp.exp(a - half) - sp.exp(-a - half)), True))


def _logistic_product(e):
    # logistic(t) logistic(-t) -> exp(-|t|) / (1 + exp(-|t|))**2: one exponential, no branches
    if not e.is_Mul:
        return None
    powers = {}
    for f in e.args:
        base, k = (f.base, f.exp) if f.is_Pow else (f, sp.Integer(1))
        if isinstance(base, logistic) and k.is_Integer and k > 0:
            powers[base.args[0]] = powers.get(base.args[0], 0) + int(k)
    for t, m in powers.items():
        n = powers.get(-t, 0)
        if n and not t.could_extract_minus_sign():
            k = min(m, n)
            rest = [f for f in e.args if not (isinstance(f.base if f.is_Pow else f, logistic) and (f.base if f.is_Pow else f).args[0] in (t, -t))]
            small = sp.exp(-sp.Abs(t))
            return sp.Mul(*rest, (small / (1 + small) ** 2) ** k, logistic(t) ** (m - k), logistic(-t) ** (n - k))
    return None


def _exp_square(e):
    # exp(c t**2) -> exp_square(t, c), for a constant c and a t that the float computes exactly
    # (exp_square squares it exactly); a t that rounds (z + 0.3) is left to compensated_exponent,
    # which evaluates t**2 in double-double from the input
    if isinstance(e, sp.exp):
        coeff, rest = e.args[0].as_coeff_Mul()
        if coeff.is_number and coeff != 0 and rest.is_Pow and rest.exp == 2 and rest.base.free_symbols and not wants_double_double(rest.base):
            return exp_square(rest.base, coeff)
    return None


def _erfc_tail(e):
    # erfc(t) -> exp(-t**2) erfcx(t) for t >= 1/2 where t rounds (z + 0.044715): erfc multiplies
    # the absolute error of t by 2 t erfc(t)/erfc(t) ~ 2 t**2 relatively (465 ulp at t = 24.7), where
    # erfcx varies slowly and takes t's rounding error (its double-double low part), and the
    # exponential is compensated; below 1/2 erfc is well-conditioned (2 t**2 < 1/2)
    if isinstance(e, sp.erfc) and wants_double_double(e.args[0]):
        t = e.args[0]
        return sp.Piecewise((sp.exp(-t**2) * erfcx(t), t >= sp.Rational(1, 2)), (e, True))
    return None


ERFC_TAIL = Rule(
    "erfc_tail",
    "erfc(t) = exp(-t**2) erfcx(t) (for t >= 1/2, where t rounds): the rounding of t is not amplified by 2 t**2",
    _erfc_tail,
    ((sp.erfc(2 * x + sp.Rational(1, 3)), sp.exp(-(2 * x + sp.Rational(1, 3)) ** 2) * erfcx(2 * x + sp.Rational(1, 3))),),
    "lower",
    once=True,  # the otherwise-branch keeps erfc(t)
)


def _normal_cdf_erfcx(e):
    # Phi(t) = (1 + erf(t/sqrt(2)))/2 for t >= -1/2 (1 + erf >= 0.6 there: no cancellation) and below,
    # exp(-t**2/2) erfcx(-t/sqrt(2)) / 2: no cancellation, and the rounding of t/sqrt(2) is not
    # amplified by the Gaussian tail (erfcx varies slowly)
    if isinstance(e, normal_cdf):
        t = e.args[0]
        q = exp_square(t, -sp.Rational(1, 2)) * erfcx(-t / sp.sqrt(2)) / 2
        return sp.Piecewise(((1 + sp.erf(t / sp.sqrt(2))) / 2, t >= -sp.Rational(1, 2)), (q, True))
    return None


EXP_SQUARE = Rule(
    "exp_square",
    "exp(c t**2) = exp_square(t, c), t**2 split exactly into a float and its rounding error",
    _exp_square,
    ((sp.exp(-a**2 / 2), exp_square(a, -sp.Rational(1, 2))),),
    "lower",
)
NORMAL_CDF_ERFCX = Rule(
    "normal_cdf_erfcx",
    "Phi(t) = (1 + erf(t/sqrt(2)))/2 if t >= -1/2 else exp(-t**2/2) erfcx(-t/sqrt(2))/2",
    _normal_cdf_erfcx,
    ((normal_cdf(-u), exp_square(-u, -sp.Rational(1, 2)) * erfcx(u / sp.sqrt(2)) / 2),
     (normal_cdf(u), (1 + sp.erf(u / sp.sqrt(2))) / 2)),
    "lower",
)
def _decays(t):
    """exp(t) of this argument can be subnormal: t is never positive."""
    return t.is_nonpositive is True and bool(t.free_symbols)


def _grows(f, inputs=None):
    """f depends on the input z outside of any exponential (z, 1 + z/(1 + exp(-|z|)), ...), so it
    can be large enough to lift a subnormal exponential back into the normal range (targets such
    as y in a loss are not inputs that grow); ``inputs``: the symbols that count as growing."""
    bounded = {x: sp.Integer(1) for x in f.atoms(sp.exp)}
    # and functions bounded by 1 in magnitude: their product with a subnormal stays subnormal
    bounded.update({x: sp.Integer(1) for x in f.atoms(sp.tanh, sp.erf, sp.sin, sp.cos, sp.sech, sp.sign, logistic)})
    # an indicator (a Piecewise of constants) is bounded too
    bounded.update({p: sp.Integer(1) for p in f.atoms(sp.Piecewise) if all(v.is_number for v, _ in p.args)})
    free = f.xreplace(bounded).free_symbols
    return bool(set(inputs) & free) if inputs is not None else any(is_input(x) for x in free)


def _decaying_factor(v):
    """v is (or is a product with) exp(t), t <= 0, or exp_square(t, c), c < 0."""
    factors = v.args if v.is_Mul else (v,)
    return any((isinstance(f, sp.exp) and _decays(f.args[0])) or (isinstance(f, exp_square) and f.args[1].is_negative)
               or isinstance(f, (mul_exp, mul_exp_square)) for f in factors)


def _split_exp(e):
    # p * exp(t) * r -> mul_exp(p, t) * r, p the factors that depend on a variable outside of
    # exponentials (they can be large, e.g. z), t never positive: exp(t) may be subnormal while
    # p exp(t) is not
    if not e.is_Mul:
        return None
    # a growing factor times a Piecewise with a decaying exponential in a branch (gelu's z Phi(z)):
    # the factor goes into the branches, where it can meet the exponential
    for f in e.args:
        if isinstance(f, sp.Piecewise) and any(_decaying_factor(v) for v, _ in f.args):
            grow = [g for g in e.args if g is not f and _grows(g)]
            if grow:
                rest = [g for g in e.args if g is not f and g not in grow]
                factor = sp.Mul(*grow)
                return sp.Mul(*rest, sp.Piecewise(*[(factor * v, cond) for v, cond in f.args]))
    # a growing factor joins the first argument of a split product already there
    for f in e.args:
        if isinstance(f, (mul_exp, mul_exp_square)):
            grow = [g for g in e.args if g is not f and _grows(g)]
            if grow:
                rest = [g for g in e.args if g is not f and g not in grow]
                return sp.Mul(*rest, f.func(sp.Mul(*grow, f.args[0]), *f.args[1:]))
    # several decaying exponentials are one: exp(t1) exp(t2) = exp(t1 + t2), t1 + t2 <= 0; a
    # Gaussian factor exp_square(t, c), c < 0, alone becomes mul_exp_square(p, t, c)
    exps = [f for f in e.args if isinstance(f, sp.exp) and _decays(f.args[0])]
    squares = [f for f in e.args if isinstance(f, exp_square) and f.args[1].is_negative]
    if not exps and len(squares) != 1:
        return None
    taken = exps or squares
    poly = [f for f in e.args if f not in taken and _grows(f)]
    if not poly:
        return None
    rest = [f for f in e.args if f not in taken and f not in poly]
    if not exps:
        t, c = squares[0].args
        return sp.Mul(mul_exp_square(sp.Mul(*poly), t, c), *rest)
    return sp.Mul(mul_exp(sp.Mul(*poly), sp.Add(*[f.args[0] for f in exps])), *rest)


SPLIT_EXP = Rule(
    "split_exp",
    "p exp(t) = (p exp(t/2)) exp(t/2) for t <= 0 (and p exp(c t**2), c < 0): no subnormal intermediate when the product is normal",
    _split_exp,
    ((x * sp.exp(-sp.Abs(x)) / (1 + sp.exp(-sp.Abs(x))), mul_exp(x, -sp.Abs(x)) / (1 + sp.exp(-sp.Abs(x)))),
     (-2 * x * exp_square(x, -1), mul_exp_square(-2 * x, x, -1)),
     (x * sp.Piecewise((1, x > 0), (exp_square(x, -1), True)), sp.Piecewise((x, x > 0), (mul_exp_square(x, x, -1), True)))),
    "lower",
)


_DD_NODES = (sp.Add, sp.Mul, sp.Abs, sp.Min, sp.Max)


def _dd_evaluable(t):
    """t is built from the input z, numbers, +, *, integer powers, |.|, min and max: the operations
    the double-double runtime (_dd_add, _dd_mul, ...) provides."""
    if is_input(t) or t.is_number:
        return t.is_real is not False
    if t.is_Pow:
        return t.exp.is_Integer and t.exp > 0 and _dd_evaluable(t.base)
    return isinstance(t, _DD_NODES) and all(_dd_evaluable(a) for a in t.args)


def _split_parts(terms):
    """The terms are exact multiples of min(u, 0) and max(u, 0) for one u: at most one is nonzero,
    so their sum is exact (mish's min(z, 0) - 2 max(z, 0))."""
    parts = set()
    for term in terms:
        c, rest = term.as_coeff_Mul()
        if not (isinstance(rest, (sp.Min, sp.Max)) and 0 in rest.args and len(rest.args) == 2 and _is_float_exact(abs(c))):
            return False
        parts.add(next(a for a in rest.args if a != 0))
    return len(parts) == 1


def _rounds(t):
    """Evaluating t in floats rounds in a way exp would amplify: a product with a constant that is
    not an exact float (sqrt(2/pi), 0.044715), a product of two varying factors, a power, or a sum
    of a varying term and anything else (3 - z: 30 ulp in exp(3 - z) at z = -30)."""
    if t.is_Add:
        varying = [a for a in t.args if not a.is_number]
        if varying and (len(varying) < len(t.args) or (len(varying) > 1 and not _split_parts(varying))):
            return True
    if t.is_Pow:
        return not t.base.is_number
    if t.is_Mul:
        varying = [f for f in t.args if not f.is_number]
        # c v rounds unless c is a power of two: 3 z needs up to 55 bits (256 ulp in exp(3 z) near
        # its underflow, without the compensation)
        if len(varying) > 1 or any(f.is_number and not _is_power_of_two(abs(f)) for f in t.args):
            return True
        return any(_rounds(f) for f in varying)
    return any(_rounds(a) for a in t.args if isinstance(a, sp.Basic) and not a.is_Atom)


def wants_double_double(t):
    """t is a function of the input z alone that the double-double runtime can evaluate and whose
    float evaluation rounds: shared by compensated_exponent and the printer (erfcx's argument, a
    split product's polynomial factor). 50 z rounds as 0.7 * 50 does: 16 ulp in exp(-50 |z|) at
    z = -0.7. (A parameter's product, beta z, rounds too; it is not compensated yet: the rules that
    rewrite cosh(t) into exponentials would then meet exp(|w z| - log 2), which SymPy folds into
    exp(|w z|)/2, overflowing before cosh does.)"""
    return len(t.free_symbols) == 1 and is_input(next(iter(t.free_symbols))) and _dd_evaluable(t) and _rounds(t)


def _damped_exponent(e):
    # c + k exp(t) -> c + k exp_damped(t) for numbers c >= k > 0 and t <= 0 whose evaluation
    # rounds: the sum damps the rounding of t to at most 0.279 of it (see exp_damped), so the
    # exponential needs no double-double; the denominator 1 + exp(-|t|) of a stable logistic of a
    # rounded t (gelu_tanh, z logistic(1.702 z)) is a plain exp instead of a compensated one
    if not e.is_Add:
        return None
    c, rest = e.as_coeff_Add()
    if not (c.is_Number and c.is_positive) or rest.is_Add:
        return None
    k, f = rest.as_coeff_Mul()
    if type(f) is not sp.exp or not (k.is_Number and k.is_positive) or k > c:
        return None
    t = f.args[0]
    if t.is_nonpositive is not True or not wants_double_double(t):
        return None
    return c + k * exp_damped(t)


def _compensated_exponent(e):
    # exp(t) -> exp_dd(t), u exp(t) -> mul_exp_dd(u, t) where t is a function of z alone whose
    # float evaluation rounds: a relative error d of t becomes a relative error |t| d of exp(t)
    # (gelu_tanh: 12 ulp at z = -2, ~1000 at z = -20); in double-double t is exact to ~1e-32
    if isinstance(e, sp.exp):
        t, make = e.args[0], exp_dd
    elif isinstance(e, mul_exp):
        t, make = e.args[1], (lambda t, u=e.args[0]: mul_exp_dd(u, t))
    else:
        return None
    return make(t) if wants_double_double(t) else None


def _softplus_log1p(e):
    # softplus(t) -> max(t, 0) + log1p(exp(-|t|)): about 3x faster than NumPy's generic
    # logaddexp(0, t), with the same accuracy (exp never overflows, log1p keeps the small tail)
    if isinstance(e, softplus):
        t = e.args[0]
        # max(k v, 0) = k max(v, 0) for a number k > 0: a coefficient outside (softplus(2z)/2)
        # then meets k and cancels, so 2z is never formed (it overflows from z = 9e307)
        k, v = t.as_coeff_Mul()
        ramp = k * sp.Max(v, 0) if k.is_positive and k != 1 else sp.Max(t, 0)
        return ramp + cfunctions.log1p(sp.exp(-sp.Abs(t)))
    return None


_HA, _HB, _HX = sp.symbols("A B X", positive=True)


def _homogeneous_in_exp(ratio, t):
    """A rational function of X = exp(t) with nonnegative coefficients, P(X)/Q(X) of degree d, as
    P(a/b) b**d / (Q(a/b) b**d) with a = exp(min(t, 0)) and b = exp(-max(t, 0)): a/b = exp(t), every
    monomial X**k becomes a**k b**(d-k), both of a and b lie in (0, 1], so nothing overflows, and a
    sum of nonnegative terms never cancels. None if a coefficient is negative."""
    num, den = sp.fraction(sp.cancel(sp.together(ratio)))
    try:
        pn, pd = sp.Poly(num, _HX), sp.Poly(den, _HX)
    except sp.PolynomialError:
        return None
    coeffs = pn.coeffs() + pd.coeffs()
    if not all(k.is_number and k.is_nonnegative for k in coeffs):
        return None
    d = max(pn.degree(), pd.degree())

    def homogeneous(p):
        # irreducible factors in Horner form in a: a**2 + 2ab + 2b**2 is a(a + 2b) + 2b**2, which
        # shares a(a + 2b) with tanh's numerator (one rounding fewer, and a common subexpression)
        coeff, parts = sp.factor_list(sum(k * _HA**m * _HB ** (d - m) for (m,), k in p.terms()))
        return coeff * sp.Mul(*[sp.horner(f, wrt=_HA) ** j for f, j in parts])

    top, bottom = homogeneous(pn), homogeneous(pd)
    ab = {_HA: sp.exp(sp.Min(t, 0)), _HB: sp.exp(-sp.Max(t, 0))}
    return (top / bottom).xreplace(ab)


# the hyperbolic functions that stay bounded on softplus(t) > 0, as rational functions of X = exp(t)
# (exp(softplus(t)) = 1 + X), and the logistic functions that join them in a product
_BOUNDED_HYPERBOLIC = (sp.tanh, sp.sech)


def _rational_in_exp(f):
    """(t, R(X)) when f is tanh(softplus(t)), sech(softplus(t)) or logistic(+-t) (with X = exp(t);
    for logistic(-t) the argument returned is -(-t)), else None."""
    if isinstance(f, _BOUNDED_HYPERBOLIC) and isinstance(f.args[0], softplus):
        return f.args[0].args[0], f.func(sp.log(1 + _HX)).rewrite(sp.exp)
    if isinstance(f, logistic):
        t = f.args[0]
        if t.could_extract_minus_sign():
            return -t, 1 / (1 + _HX)
        return t, _HX / (1 + _HX)
    return None


def _hyperbolic_softplus(e):
    # tanh(softplus(t)) -> a (a + 2b) / (a (a + 2b) + 2b**2), sech(softplus(t)) likewise: since
    # exp(softplus(t)) = 1 + exp(t), a hyperbolic function of softplus(t) is a rational function of
    # exp(t), evaluated homogeneously (see _homogeneous_in_exp); a product of them with logistic(+-t)
    # becomes one such rational function (z logistic(z) sech(softplus(z))**2 = 4 z a b**2 (a + b) / D**2).
    # Where exp(t) is subnormal (t < -708 in float64), tanh(softplus(t)) ~ exp(t) keeps the factor
    # a = exp(min(t, 0)) visible to split_exp, so z tanh(softplus(z)) (Mish) stays exact.
    factors = e.args if e.is_Mul else (e,)
    found = {}
    for f in factors:
        base, k = (f.base, f.exp) if f.is_Pow and f.exp.is_Integer else (f, sp.Integer(1))
        r = _rational_in_exp(base)
        if r is not None:
            found.setdefault(r[0], []).append((f, r[1] ** k, isinstance(base, _BOUNDED_HYPERBOLIC)))
    for t, parts in sorted(found.items(), key=lambda item: sp.default_sort_key(item[0])):
        if not any(hyperbolic for _, _, hyperbolic in parts):
            continue
        combined = _homogeneous_in_exp(sp.Mul(*[r for _, r, _ in parts]), t)
        if combined is None:
            continue
        used = [f for f, _, _ in parts]
        return sp.Mul(*[f for f in factors if f not in used], combined)
    return None


def _is_power_of_two(r):
    """r is 2**k for an integer k (1 included): r v is exact for every float v (short of overflow)."""
    return r.is_Rational and r > 0 and r.p & (r.p - 1) == 0 and r.q & (r.q - 1) == 0


def _is_float_exact(r):
    """r is a rational that float64 represents exactly (a dyadic fraction with a 53-bit numerator)."""
    return r.is_Rational and r.q & (r.q - 1) == 0 and abs(r.p) < 2**53


def _linear_root(e):
    # c v + d -> c (v - r) with r = -d/c: where c v + d is near 0 (v near r), the rounding of c v
    # (c not a power of two) is large next to the result, while v - r is exact there (Sterbenz)
    # and one rounding follows: hard_sigmoid's z/6 + 1/2 becomes (z + 3)/6, 1 ulp instead of 10
    if not e.is_Add or len(e.args) != 2:
        return None
    d, term = sorted(e.args, key=lambda t: not t.is_number)
    c, v = term.as_coeff_Mul()
    if not (d.is_Rational and c.is_Rational and d != 0 and v.free_symbols):
        return None
    if _is_float_exact(abs(c)):  # a power of two (or an exact float): c v is exact already
        return None
    r = -d / c
    if not _is_float_exact(r):
        return None
    return sp.Mul(c, sp.Add(v, -r), evaluate=False)


def _sqrt_radicand(rest):
    return rest.base if rest.is_Pow and rest.exp == sp.Rational(1, 2) and rest.base.free_symbols else None


def _sqrt_conjugate(radicand, k, other):
    c = other / -k
    if not c.is_positive:
        return None
    root = sp.sqrt(radicand)
    return sp.Piecewise((k * sp.expand(radicand - c**2) / (root + c), root < 2 * c), (k * root - k * c, True))


# k sqrt(A) - k c -> k (A - c**2) / (sqrt(A) + c) for a constant c > 0, A - c**2 expanded, where
# sqrt(A) < 2c: there the difference cancels (bent identity's sqrt(z**2 + 1) - 1 at small z is 0
# in floats); in the conjugate form the cancellation, if any, is in A - c**2, computed from the
# inputs directly (z**2 here: none; z + 1 for sqrt(z + 2) - 1: exact near z = -1). Where
# sqrt(A) >= 2c the difference is at least c and at least half of sqrt(A), so it loses nothing,
# while A - c**2 could overflow (z**2 beyond 1.3e154) where sqrt(A) does not (see HYPOT)
_sqrt_complement = _pair_term_with_constant(_sqrt_radicand, _sqrt_conjugate)


def _inputs_free(e):
    """True when ``e`` holds no input variable: numbers and positive parameters only."""
    return all(s.is_positive for s in e.free_symbols)


def _root_conjugate(e):
    # R + m sqrt(A) -> D / (m sqrt(A) - R) with D = m**2 A - R**2, and R + m / sqrt(A) ->
    # D / ((R sqrt(A) - m) sqrt(A)) with D = R**2 A - m**2, where D is free of the inputs (and
    # nonzero), on the inputs where the two terms have opposite signs (R m < 0): there the sum
    # cancels (squareplus's z + sqrt(z**2 + 4) for z < 0, its derivative 1 + z / sqrt(z**2 + 4)),
    # while the conjugate's denominator adds two terms of one sign
    if not e.is_Add:
        return None
    for term in e.args:
        for f in sp.Mul.make_args(term):
            if not (f.is_Pow and f.exp in (sp.Rational(1, 2), sp.Rational(-1, 2)) and not _inputs_free(f.base)):
                continue
            A, root = f.base, sp.sqrt(f.base)
            m = term / f
            R = e - term
            if R == 0 or m.has(root) or R.has(root):
                continue
            if f.exp > 0:
                D = sp.expand(m**2 * A - R**2)
                conjugate = D / (m * root - R)
            else:
                D = sp.expand(R**2 * A - m**2)
                conjugate = D / ((R * root - m) * root)
            if D == 0 or not _inputs_free(D) or not (D.is_positive or D.is_negative):
                continue
            return sp.Piecewise((conjugate, R * m < 0), (e, True))
    return None


def _grows_like(d, t):
    """True when d / |t| tends to a positive constant as |t| grows: hypot(t, c), or c + k |t| with
    c >= 0, k > 0 free of the inputs (the denominators of softsign-like functions)."""
    if type(d).__name__ == "hypot":
        return t in d.args and all(_inputs_free(a) for a in d.args if a != t)
    if d.is_Add:
        parts = [a for a in d.args if not _inputs_free(a)]
        if len(parts) == 1:
            k, rest = parts[0].as_coeff_Mul()
            return k.is_positive and rest == sp.Abs(t) and all(_inputs_free(a) and a.is_nonnegative for a in d.args if a is not parts[0])
    return False


def _ratio_first(e):
    # t**m d**-n -> ratio(t, d)**m d**(m - n) for integers 1 <= m < n, d growing like |t|: the
    # power d**n overflows from |t| ~ 2**(1024/n) where the value, ~ t**(m - n), is representable
    if not e.is_Mul:
        return None
    factors = list(e.args)
    for i, f in enumerate(factors):
        t, m = (f.base, f.exp) if f.is_Pow else (f, sp.Integer(1))
        if not (m.is_Integer and m > 0) or _inputs_free(t) or isinstance(t, ratio):
            continue
        for j, g in enumerate(factors):
            if j == i or not (g.is_Pow and g.exp.is_Integer and g.exp < -m):
                continue
            if _grows_like(g.base, t):
                rest = [h for k_, h in enumerate(factors) if k_ not in (i, j)]
                return sp.Mul(*rest, ratio(t, g.base) ** m, g.base ** (m + g.exp))
    return None


def _monic_tail(base, t, p, r):
    """(lc**r, (P/(lc t**p))**r) for P = base of degree p, lc its leading coefficient: the tail
    tends to 1, and the coefficients of all factors fold into one number (a decimal made exact
    gives 8943/200000 and P's 4e10 with its reciprocal in the same product: multiplied last, the
    product of the tails went through a subnormal intermediate)."""
    lc = sp.Poly(base, t).LC()
    if r.is_integer or lc.is_positive:
        return (lc**r, sp.expand(base / (lc * t**p)) ** r)
    return (sp.expand(base / t**p) ** r,)


def _polynomial_split(factors, t):
    """Factors P_i(t)**r_i (polynomials in ``t`` with coefficients free of the inputs, integer r_i)
    split off their leading powers: (s, widest, big_below, big, rest, tails) with s = sum p_i r_i,
    widest = the larger total degree of numerator and denominator, big_below whether one P_i of
    degree >= 2 is in a denominator (or the numerator's degree is >= 2 over one of degree >= 1; |t|
    counts as a polynomial of degree 1, its tail |t|/t), big whether widest >= 2, rest the other
    factors and tails the (P_i/t**p_i)**r_i."""

    def degree(b):
        if b == t:
            return 1
        if not (b.is_Add and b.is_polynomial(t) and b.has(t)):
            return None
        if any(not _inputs_free(c_) for c_ in sp.Poly(b, t).all_coeffs()):
            return None
        return int(sp.degree(b, t))

    s_, widest, big_below, big, rest, tails = 0, 1, False, False, [], []
    above = below = 0  # total degrees of the numerator and the denominator (linear factors add up)
    for f in factors:
        base, r = (f.base, f.exp) if f.is_Pow else (f, sp.Integer(1))
        p_ = (1 if base == sp.Abs(t) else degree(base)) if r.is_Integer else None
        if p_ is None and r.is_Rational and r.q == 2 and base != sp.Abs(t):
            # a square root (or its odd power) of a polynomial whose degree times the power is an
            # even integer: sqrt(P) = t**(p/2) sqrt(P/t**p) with t**(p/2) = |t|**(p/2) (p/2 even)
            p_ = degree(base)
            if p_ is not None and (p_ * r).is_integer and int(p_ * r) % 2 == 0:
                s_ += int(p_ * r)
                (above, below) = (above + int(p_ * r), below) if r > 0 else (above, below - int(p_ * r))
                widest = max(widest, above, below)
                big_below |= r < 0 and p_ * abs(r) >= 2
                tails.extend(_monic_tail(base, t, p_, r))
                continue
            p_ = None
        if p_ is None:
            rest.append(f)
            continue
        s_ += p_ * int(r)
        above, below = (above + p_ * int(r), below) if r > 0 else (above, below - p_ * int(r))
        widest = max(widest, above, below)
        big_below |= r < 0 and p_ >= 2
        if base == sp.Abs(t):  # |t| = t (|t|/t), the second factor +-1 (exact), kept a ratio
            tails.append(ratio(sp.Abs(t), t) ** r if r > 0 else ratio(t, sp.Abs(t)) ** -r)
        elif base != t:
            tails.extend(_monic_tail(base, t, p_, r))
    big = max(above, below) >= 2
    # a numerator of degree >= 2 over a polynomial denominator: the numerator overflows first
    big_below |= above >= 2 and below >= 1
    return s_, widest, big_below, big, rest, tails


def _polynomial_variables(factors):
    """The input variables (and |v|) in the bases of sums among ``factors``, in a fixed order."""
    found = set()
    for g in factors:
        base = g.base if g.is_Pow else g
        if isinstance(base, sp.Abs) and not _inputs_free(base):
            found.add(base.args[0])
        if base.is_Add:
            found |= {v for v in base.free_symbols | base.atoms(sp.Abs) if not _inputs_free(v)}
    return sorted(found, key=sp.default_sort_key)


def _divided(f, t):
    """f/t for a factor f that grows with t: one division, or for a sum, term by term with its
    products expanded, each term that is itself a product of polynomial powers in its own tail form
    (z (200000 z + 8943)/P(z) over z, P of degree 2: 1/P alone would overflow to 0 past 1e150)."""
    if not f.is_Add:
        return ratio(f, t)
    terms = sp.Add.make_args(sp.expand_mul(f / t))
    return sp.Add(*[_rational_tail(term) or term for term in terms])


def _rational_tail(e):
    # a product of powers P_i(t)**r_i of polynomials in t (coefficients free of the inputs; r_i
    # integers, at least one P_i of degree >= 2 in a denominator, or a numerator of degree >= 2 over
    # a denominator: (y - 1)(y + 1)/(2|y|) is about |y|/2, not inf, past 1.3e154; |t| counts as a
    # polynomial of degree 1, t (|t|/t)) -> t**s prod_i (P_i/t**p_i)**r_i,
    # s = sum_i p_i r_i, for |t| >= 2**(120 // d), d the larger total degree of numerator and
    # denominator: each P_i**r_i overflows from |t| ~
    # 2**(1024/(p_i |r_i|)) where the value ~ t**s is representable (z/(1 + z**2) is about 1/z up
    # to 1.8e308, not 0 past 1.3e154; (1 - z**2)/(1 + z**2)**2 is not inf * 0); P_i/t**p_i =
    # a_p + a_(p-1)/t + ... + a_0/t**p cannot overflow there. The threshold is a float32 number
    factors = list(e.args) if e.is_Mul else [e]
    if not any(g.is_Pow and g.exp.is_Integer and g.exp < 0 for g in factors):
        return None
    for t in _polynomial_variables(factors):
        s_, widest, big_below, _, rest, tails = _polynomial_split(factors, t)
        if not big_below:
            continue
        # t**s with s < 0 as (1/t)**(-s - 1) / t: t**-s would overflow (and 1/inf give 0) where the
        # value is still a subnormal number, and (1/t)**-s alone would be subnormal (flushed to
        # zero where the hardware flushes, XLA on CPU) where the value times the other factors is
        # not; the last division by t rounds once into the value's range
        # other factors that grow with t (Max(c, t), asinh(t)) each take one of those divisions
        # first: their product alone may overflow where the value does not (t asinh(t)/(1 + t**2));
        # a sum takes it term by term, its products expanded (2 t tanh(t) - (t**2 + 1) sech(t)**2
        # over t is 2 tanh(t) - t sech(t)**2 - sech(t)**2/t: no t**2 that overflows before sech**2)
        paired = [f for f in rest if _grows(f, t.free_symbols)][: max(-s_ - 1, 0)]
        rest = [_divided(f, t) if f in paired else f for f in rest]
        s_ += len(paired)
        power = t**s_ if s_ >= 0 else ratio(sp.Integer(1), t) ** (-s_ - 1) / t
        far = sp.Mul(*rest, power, *tails)
        return sp.Piecewise((e, sp.Abs(t) < sp.Float(2.0 ** (120 // widest))), (far, True))
    return None


def _log_tail(e):
    # log(c prod_i P_i(t)**r_i) -> s log|t| + log(c prod_i (P_i/t**p_i)**r_i) for polynomials P_i in
    # t (of total degree d >= 2), c > 0 free of the inputs and s = sum_i p_i r_i even, for |t| >=
    # 2**(120 // d): log(1 + z**2) is 2 log|z| + log1p(1/z**2) there, not log(inf)
    # past 1.3e154 (nor log(0) for log(1/(1 + z**2))). With s even, t**s = |t|**s > 0, so the
    # logarithm's argument keeps its sign
    if not isinstance(e, sp.log):
        return None
    factors = list(sp.Mul.make_args(e.args[0]))
    for t in _polynomial_variables(factors):
        s_, widest, _, big, rest, tails = _polynomial_split(factors, t)
        if not big or s_ % 2 or not all(_inputs_free(f) and f.is_positive for f in rest):
            continue
        far = s_ * sp.log(sp.Abs(t)) + sp.log(sp.Mul(*rest, *tails))
        return sp.Piecewise((e, sp.Abs(t) < sp.Float(2.0 ** (120 // widest))), (far, True))
    return None


def _exp_sum(base):
    """(a, b, u) for base = a + b exp(u), a and b free of the inputs (b != 0); else None."""
    if not base.is_Add:
        return None
    a_, b_, u_ = [], None, None
    for term in base.args:
        if _inputs_free(term):
            a_.append(term)
            continue
        dependent = [f for f in sp.Mul.make_args(term) if not _inputs_free(f)]
        if b_ is not None or len(dependent) != 1 or not isinstance(dependent[0], sp.exp):
            return None
        # the other factors, not term / exp(u): SymPy leaves exp(2 - z) / exp(2 - z) as a product
        # exp(2 - z) exp(z - 2), which is inf * 0 where the exponent overflows
        b_, u_ = sp.Mul(*(f for f in sp.Mul.make_args(term) if f is not dependent[0])), dependent[0].args[0]
    return (sp.Add(*a_), b_, u_) if b_ is not None and a_ else None


def _exp_sum_power(e):
    # prod_j (a_j + b_j exp(u))**r_j (one r_j not an integer) -> exp(u sum_j r_j) prod_j (b_j +
    # a_j exp(-u))**r_j for u >= 0, the exponentials of the product combined: sqrt(1 + exp(z)) is
    # exp(z/2) sqrt(1 + exp(-z)) there, finite up to z = 1419, not sqrt(inf) past 709; and
    # exp(z) (1 + exp(z))**(-1/2) is not inf * 0. exp(-u) <= 1 in that branch and exp(u) <= 1 in
    # the other, so no sum overflows
    factors = list(sp.Mul.make_args(e))
    parts = {}
    for j, f in enumerate(factors):
        base, r = (f.base, f.exp) if f.is_Pow else (f, sp.Integer(1))
        found = _exp_sum(base) if r.is_Rational else None
        if found is not None and not _inputs_free(found[2]):
            parts[j] = (found, r)
    for u_ in sorted({found[2] for found, _ in parts.values()}, key=sp.default_sort_key):
        mine = {j: (found, r) for j, (found, r) in parts.items() if found[2] == u_}
        if all(r.is_Integer for _, r in mine.values()):
            continue
        far = list(factors)
        for j, ((a_, b_, _), r) in mine.items():
            far[j] = sp.exp(r * u_) * (b_ + a_ * sp.exp(-u_)) ** r
        return sp.Piecewise((e, u_ < 0), (sp.Mul(*far), True))
    return None


def _rational_root_factors(poly):
    """``poly`` as a product with its linear factors t - r at nonzero rational roots r split out
    (SymPy's factor over the rationals); None if it has none. Only polynomials in one input
    variable with rational coefficients (parameters are left alone)."""
    inputs = [v for v in poly.free_symbols if not v.is_positive]
    if len(inputs) != 1 or not poly.is_polynomial(inputs[0]):
        return None
    t = inputs[0]
    p_ = sp.Poly(poly, t)
    if p_.degree() < 2 or not all(c_.is_Rational for c_ in p_.all_coeffs()):
        return None
    product = sp.factor(poly, t)
    linear = [f for f in sp.Mul.make_args(product) if (f.base if f.is_Pow else f).is_Add and sp.degree(f.base if f.is_Pow else f, t) == 1]
    return product if linear and product != poly else None


def _outside_functions(e, rewrite, denominators):
    """``e`` with ``rewrite(node)`` (a new node, or None to look inside it) applied to every node
    that is the whole expression, a term, a factor, a branch's value or the base of an integer
    power (a negative one only with ``denominators``); not inside a function's argument or a
    non-integer power. A node is rebuilt only where something in it changed: rebuilding c*(v + d)
    would distribute c again."""
    if not isinstance(e, sp.Basic) or e.is_Atom:
        return e
    new = rewrite(e)
    if new is not None:
        return new
    if isinstance(e, sp.Piecewise):
        args = [(_outside_functions(v, rewrite, denominators), c_) for v, c_ in e.args]
    elif e.is_Add or e.is_Mul:
        args = [_outside_functions(a_, rewrite, denominators) for a_ in e.args]
    elif e.is_Pow and e.exp.is_Integer and (denominators or e.exp > 0):
        args = [_outside_functions(e.base, rewrite, denominators), e.exp]
    else:
        return e
    return e.func(*args) if any(a_ is not b_ for a_, b_ in zip(args, e.args)) else e


def _rational_roots(e):
    # every polynomial in a numerator (see _outside_functions; not in a denominator) with nonzero
    # rational roots r -> its factored form, the linear factors t - r split out: 1 - z**2 near z = 1
    # subtracts nearly equal numbers and loses all relative accuracy, where (1 - z) is exact
    # (Sterbenz) and (1 - z)(1 + z) keeps it. Applied to the whole expression (it needs the context)
    return _outside_functions(e, lambda n: _rational_root_factors(n) if n.is_Add else None, denominators=False)


def _scaled_monomial(e):
    """c t**n (n >= 2, |c| = 2**(-k n) for an integer k >= 1: SymPy's expansion of (t/2**k)**n) as
    +-(t/2**k)**n: t**n overflows from |t| = 2**(1024/n) where the value is finite up to 2**k times
    further; dividing t by a power of two is exact, and the form costs what the expanded one does
    (other coefficients would add a multiplication to every such term, bounded ones included, so
    they are left as they are)."""
    if not (e.is_Mul and len(e.args) == 2):
        return None
    c_, power = e.args
    if not (c_.is_number and c_.is_real and power.is_Pow and power.exp.is_Integer and power.exp >= 2 and not _inputs_free(power.base)):
        return None
    magnitude = abs(float(c_))
    if not 0 < magnitude < 1:
        return None
    n_ = int(power.exp)
    k = round(-math.log2(magnitude) / n_)
    if k < 1 or magnitude != 2.0 ** (-k * n_):
        return None
    return (c_ * sp.Integer(2) ** (k * n_)) * ratio(power.base, sp.Integer(2) ** k) ** n_


def _scaled_power(e):
    # every 2**(-k n) t**n outside a function's argument (see _outside_functions; inside a function
    # the argument saturates it anyway: tanh(inf) = 1) -> (t/2**k)**n: the power overflows no
    # earlier than the value. Applied to the whole expression
    return _outside_functions(e, _scaled_monomial, denominators=True)


def _square_root_of(term):
    """(a, t) with term = a t**2, a > 0 free of the inputs (numbers and positive parameters), t the
    product of the even powers' halves; None if the term is not of that form."""
    coeff, rest = term.as_coeff_Mul()
    if not coeff.is_positive:
        return None
    scale, roots = [coeff], []
    for f in sp.Mul.make_args(rest):
        if f.is_Pow and f.exp.is_Integer and f.exp % 2 == 0 and not f.base.is_positive:
            roots.append(f.base ** (f.exp / 2))
        elif f.is_positive:
            scale.append(f)
        else:
            return None
    return (sp.Mul(*scale), sp.Mul(*roots)) if roots else None


def _quadratic_radicand(radicand):
    """(a, t, c) with radicand = a t**2 + c, a > 0 and c > 0 free of the inputs; else None."""
    if not radicand.is_Add:
        return None
    constant = [t for t in radicand.args if t.is_positive]
    rest = [t for t in radicand.args if not t.is_positive]
    if not constant or len(rest) != 1:
        return None
    square = _square_root_of(rest[0])
    return None if square is None else (square[0], square[1], sp.Add(*constant))


def _hypot(e):
    # (a t**2 + c)**(k/2) -> (sqrt(a) hypot(t, sqrt(c/a)))**k for odd k, a > 0, c > 0: t**2
    # overflows from |t| = 1.3e154 (and underflows below 1.5e-154) where the root does not;
    # hypot(t, d) = sqrt(t**2 + d**2) scales internally (C99 hypot, correctly rounded to < 1 ulp)
    if not (e.is_Pow and e.exp.is_Rational and e.exp.q == 2):
        return None
    parts = _quadratic_radicand(e.base)
    if parts is None:
        return None
    a_, t, c_ = parts
    root = cfunctions.hypot(t, sp.sqrt(c_ / a_))
    scaled = (root if a_ == 1 else sp.sqrt(a_) * root) ** e.exp.p
    if abs(e.exp.p) == 1:
        return scaled
    # a higher power amplifies hypot's rounding k times where one pow of the radicand (rounded
    # once) amplifies it k/2 times: the radicand where its power stays within 2**+-120, which
    # float32 holds too (the threshold is a float32 number, so one body serves both dtypes)
    bound = sp.Float(2.0 ** (120 // abs(e.exp.p)))
    return sp.Piecewise((e, sp.Abs(t) < (bound if a_ == 1 else bound / sp.sqrt(a_))), (scaled, True))


def _piecewise_max(e):
    # Piecewise((t, t > c), (c, True)) -> Max(t, c), and the mirror image with Min: one ufunc
    # pass (np.maximum) instead of a comparison and a where
    if isinstance(e, sp.Piecewise) and len(e.args) == 2 and e.args[1][1] is sp.true:
        (first, cond), (second, _) = e.args
        if isinstance(cond, (sp.StrictGreaterThan, sp.GreaterThan)) and first == cond.lhs and second == cond.rhs:
            return sp.Max(first, second)
        if isinstance(cond, (sp.StrictLessThan, sp.LessThan)) and first == cond.lhs and second == cond.rhs:
            return sp.Min(first, second)
    return None


PIECEWISE_MAX = Rule(
    "piecewise_max",
    "Piecewise((t, t > c), (c, True)) = max(t, c) and Piecewise((t, t < c), (c, True)) = min(t, c)",
    _piecewise_max,
    # by cases: t = c + u, t = c - u (u > 0) and t = c
    tuple((sp.Piecewise((t, t > b), (b, True)), sp.Max(t, b)) for t in (b + u, b - u, b))
    + tuple((sp.Piecewise((t, t < b), (b, True)), sp.Min(t, b)) for t in (b + u, b - u, b)),
    "lower",
)
# the spec's array inputs (a parameter is a scalar the caller gives: NaN there is the caller's)
_INPUT_NAMES = frozenset({"z", "y", "y_hat"})
_LAM = sp.Symbol("lam", positive=True)
_ORDERED = (sp.StrictGreaterThan, sp.GreaterThan, sp.StrictLessThan, sp.LessThan)


def _ordered_only(cond):
    """``cond`` is built of <, <=, >, >= with And and Or only: false for a NaN operand (every
    ordered comparison with NaN is false, in IEEE arithmetic and in every backend)."""
    if isinstance(cond, _ORDERED):
        return True
    return isinstance(cond, (sp.And, sp.Or)) and all(_ordered_only(a) for a in cond.args)


def _inputs(e):
    return {s for s in e.free_symbols if s.name in _INPUT_NAMES or is_input(s)}


def _nan_otherwise(e):
    # Piecewise(..., (f, c), (k, True)) -> Piecewise(..., (k, not c), (f, True)) when k holds no
    # input and f holds every input that c compares: a NaN input fails every ordered comparison,
    # so it takes the otherwise branch, which is then f (NaN) instead of the constant k
    if not isinstance(e, sp.Piecewise) or len(e.args) < 2 or e.args[-1][1] is not sp.true:
        return None
    (f, c), (k, _) = e.args[-2], e.args[-1]
    if _inputs(k) or not _inputs(c) or not _inputs(c) <= _inputs(f) or not _ordered_only(c):
        return None
    negated = sp.to_nnf(sp.Not(c))  # the negation of each comparison: ordered again
    if not _ordered_only(negated):
        return None
    return sp.Piecewise(*e.args[:-2], (k, negated), (f, True))


def _false_at_nan(cond):
    """``cond`` is false for a NaN operand: ordered comparisons and equalities, with And and Or."""
    if isinstance(cond, (*_ORDERED, sp.Eq)):
        return True
    return isinstance(cond, (sp.And, sp.Or)) and all(_false_at_nan(a) for a in cond.args)


def _nan_default(e):
    # a step of three or more constant values (Heaviside(z) = 0, 1/2, 1): its last condition made
    # explicit and NaN after it, so that a NaN input (false in every comparison) gives NaN, not the
    # last value; the complement is computed as a set of the reals
    if isinstance(e, sp.Heaviside) and _inputs(e.args[0]):
        h0 = e.args[1] if len(e.args) > 1 else sp.Rational(1, 2)
        e = sp.Piecewise((0, e.args[0] < 0), (h0, sp.Eq(e.args[0], 0)), (1, True))
    if not isinstance(e, sp.Piecewise) or e.args[-1][1] is not sp.true:
        return None
    values = [v for v, _c in e.args]
    conds = [c for _v, c in e.args[:-1]]
    if any(_inputs(v) for v in values) or len(set(values)) < 3 or not all(_false_at_nan(c) for c in conds):
        return None
    variables = set().union(*(_inputs(c) for c in conds))
    if len(variables) != 1 or any(c.free_symbols - variables for c in conds):
        return None
    (v,) = variables
    try:
        rest = sp.Or(*conds).as_set().complement(sp.S.Reals).as_relational(v)
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        return None
    if rest is sp.false or not _ordered_only(rest):
        return None
    new = sp.Piecewise(*e.args[:-1], (values[-1], rest), (sp.nan, True))
    # SymPy merges conditions that visibly cover the line back into True (intervals do, an Eq at a
    # point does not): then there is nothing to rewrite
    return new if new.args[-1][0] is sp.nan else None


NAN_DEFAULT = Rule(
    "nan_default",
    "a step of three or more constants, Piecewise(..., (k, True)) = Piecewise(..., (k, c), (nan, True)) with c the rest of the real line, where SymPy keeps c apart (Heaviside(t) = 0, 1/2, 1): NaN at a NaN input",
    _nan_default,
    # by cases: above, below and at the jump
    tuple((sp.Heaviside(v), _nan_default(sp.Heaviside(Z)).subs(Z, v)) for v in (u, -u, sp.Integer(0))),
    "lower",
)
NAN_OTHERWISE = Rule(
    "nan_otherwise",
    "Piecewise(..., (f, c), (k, True)) = Piecewise(..., (k, not c), (f, True)) for real inputs; with k free of the inputs and f of every input c compares, a NaN input (false in every comparison) gives f = NaN, not k",
    _nan_otherwise,
    # by cases: x above, below and at the boundary b (u > 0)
    tuple((sp.Piecewise((x, x > b), (c, True)).subs(x, v), sp.Piecewise((c, x <= b), (x, True)).subs(x, v)) for v in (b + u, b - u, b))
    # three branches (soft shrink, threshold lam > 0): above, below, at both boundaries, between
    + tuple((sp.Piecewise((x - _LAM, x > _LAM), (x + _LAM, x < -_LAM), (0, True)).subs(x, v), sp.Piecewise((x - _LAM, x > _LAM), (0, x >= -_LAM), (x + _LAM, True)).subs(x, v))
            for v in (_LAM + u, -_LAM - u, -_LAM, _LAM, _LAM / (1 + u), -_LAM / (1 + u))),
    "lower",
)
HYPERBOLIC_SOFTPLUS = Rule(
    "hyperbolic_softplus",
    "tanh(softplus(t)) = a (a + 2b) / (a (a + 2b) + 2b**2) and sech(softplus(t)) = 2b (a + b) / (a**2 + 2ab + 2b**2), a = exp(min(t, 0)), b = exp(-max(t, 0)); products with logistic(t) combined",
    _hyperbolic_softplus,
    tuple((f(softplus(t)), _hyperbolic_softplus(f(softplus(t)))) for f in _BOUNDED_HYPERBOLIC for t in (u, -u))
    + tuple((logistic(t) * sp.sech(softplus(t)) ** 2, _hyperbolic_softplus(logistic(t) * sp.sech(softplus(t)) ** 2)) for t in (u, -u)),
    "lower",
    top_down=True,
)
LINEAR_ROOT = Rule(
    "linear_root",
    "c v + d = c (v + d/c) when -d/c is an exact float and c v is not: no cancellation of a rounded product",
    _linear_root,
    ((x / 6 + sp.Rational(1, 2), sp.Mul(sp.Rational(1, 6), x + 3, evaluate=False)), (3 * x / 5 - 3, sp.Mul(sp.Rational(3, 5), x - 5, evaluate=False))),
    "lower",
)
DAMPED_EXPONENT = Rule(
    "damped_exponent",
    "c + k exp(t) for numbers c >= k > 0 and t <= 0 is evaluated with a plain exp (no double-double): a relative error d of t changes the sum by at most 0.279 |d|",
    _damped_exponent,
    tuple((lhs, _damped_exponent(lhs)) for lhs in (1 + sp.exp(-sp.sqrt(2) * sp.Abs(Z) ** 3), 3 + 2 * sp.exp(-sp.pi * sp.Abs(Z)))),
    "lower",
)
COMPENSATED_EXPONENT = Rule(
    "compensated_exponent",
    "exp(t) = exp(hi) exp(lo) with t = hi + lo evaluated in double-double, where rounding t would be amplified by |t|",
    _compensated_exponent,
    ((sp.exp(sp.sqrt(2) * Z**3), exp_dd(sp.sqrt(2) * Z**3)), (mul_exp(Z, sp.Min(0, sp.pi * Z)), mul_exp_dd(Z, sp.Min(0, sp.pi * Z)))),
    "lower",
)
# -- exponent_gate (NumPy): the double-double exponent only where it is not 1 --------------------

_GATE_DEGREE = 4  # polynomials of higher degree are left alone (SymPy's root isolation stays cheap)


def _float32_exact(r):
    """r is a rational that float32 represents exactly, so a comparison of a float32 or float64
    input with it is exact (NumPy compares a float32 array with a Python float in float32)."""
    return r.is_Rational and r.q & (r.q - 1) == 0 and abs(r.p) < 2**24 and r.q <= 2**126


def _nonnegative_set(t):
    """The real z where the polynomial t(z) >= 0, as a union of intervals, when every real root of t
    is float-exact (in float32 too), so that comparing a float input with the roots decides the sign
    of t at that input exactly; None otherwise (or for a t that is no polynomial of low degree)."""
    if not t.is_polynomial(Z):
        return None
    poly = sp.Poly(t, Z)
    if not 1 <= poly.degree() <= _GATE_DEGREE or not all(c.is_number and c.is_real for c in poly.coeffs()):
        return None
    # the monic part: a positive constant (sqrt(2/pi)) changes no sign, and the remaining
    # coefficients are rational for every function printed through here (0.044715 is exact)
    lead = poly.LC()
    monic = sp.Poly(sp.expand(t / lead), Z)
    if not all(c.is_Rational for c in monic.coeffs()):
        return None
    roots = monic.real_roots()
    if not all(_float32_exact(r) for r in roots):
        return None
    return sp.solve_univariate_inequality(sp.expand(t / abs(lead)) >= 0, Z, relational=False)


def _set_condition(s):
    """The condition z in s for a union of intervals, with infinite endpoints left out: +-inf are
    in the set when it is unbounded that way (the limit of the rule's left side there)."""
    if isinstance(s, sp.Union):
        return sp.Or(*(_set_condition(part) for part in s.args))
    if isinstance(s, sp.FiniteSet):
        return sp.Or(*(sp.Eq(Z, p) for p in s.args))
    parts = []
    if s.start.is_finite:
        parts.append(Z > s.start if s.left_open else Z >= s.start)
    if s.end.is_finite:
        parts.append(Z < s.end if s.right_open else Z <= s.end)
    return sp.And(*parts)


def _gate_parts(e):
    """(u, t) for u exp(min(t, 0)) in double-double (u = 1 for exp_dd), else None."""
    if isinstance(e, mul_exp_dd):
        u, arg = e.args
    elif isinstance(e, exp_dd):
        u, arg = sp.Integer(1), e.args[0]
    else:
        return None
    if isinstance(arg, sp.Min) and len(arg.args) == 2 and 0 in arg.args:
        return u, next(a for a in arg.args if a != 0)
    return None


def _gate_on(e, domain):
    """``e`` on the inputs in ``domain``, each gate reached through sums, products and powers
    resolved there (see _exponent_gate)."""
    if isinstance(e, (sp.Add, sp.Mul, sp.Pow)):
        args = [_gate_on(a, domain) for a in e.args]
        return e.func(*args) if any(a is not b for a, b in zip(args, e.args)) else e
    parts = _gate_parts(e)
    if parts is None:
        return e
    u, t = parts
    nonnegative = _nonnegative_set(t)
    if nonnegative is None:
        return e
    make = (lambda v: exp_dd(t) if v == 1 else mul_exp_dd(v, t))
    if domain.is_subset(nonnegative):
        return _gate_on(u, domain)
    inside = sp.Intersection(domain, nonnegative)
    if inside.is_empty or (isinstance(inside, sp.FiniteSet) and all(t.subs(Z, p) == 0 for p in inside)):
        return make(_gate_on(u, domain))  # t <= 0 on the domain: min(t, 0) = t
    return sp.Piecewise((_gate_on(u, inside), _set_condition(nonnegative)), (make(_gate_on(u, sp.Complement(domain, nonnegative))), True))


def _exponent_gate(e):
    """Each u exp(min(t, 0)) in double-double (t a polynomial with float-exact real roots, see
    _nonnegative_set) reached from the top through sums, products and powers, as
    Piecewise((u, t >= 0), (u exp(t), True)): the NumPy in-place writer evaluates such a branch only
    on the elements that take it, so where t >= 0 (half the line for gelu_tanh's exp(min(t, 0))) no
    double-double is computed. A gate in u is resolved on each branch's part of the line
    (gelu_tanh's derivative has exp(min(-t, 0)) in the factor of exp(min(t, 0)): where t < 0 it is
    1), so that every element computes one exponent instead of two. A gate inside another node's
    argument is left alone: it would be printed as a where() of both branches."""
    new = _gate_on(e, sp.S.Reals)
    return None if new == e else new


EXPONENT_GATE = Rule(
    "exponent_gate",
    "u exp(min(t, 0)) = Piecewise((u, t >= 0), (u exp(t), True)), the sign of a polynomial t read from its float-exact real roots (NumPy: the double-double exponent is computed only where t < 0)",
    _exponent_gate,
    ((mul_exp_dd(a, sp.Min(0, x)), sp.Piecewise((a, x >= 0), (mul_exp_dd(a, x), True))),
     (exp_dd(sp.Min(0, x)), sp.Piecewise((1, x >= 0), (exp_dd(x), True)))),
    "lower",
    whole=True,
)
SQRT_COMPLEMENT = Rule(
    "sqrt_complement",
    "k sqrt(A) - k c = k (A - c**2) / (sqrt(A) + c) for c > 0: no cancellation where sqrt(A) is near c",
    _sqrt_complement,
    tuple((lhs, _sqrt_complement(lhs)) for lhs in (sp.sqrt(x**2 + 1) - 1, x + (sp.sqrt(x**2 + 4) - 2) / 2, 3 * sp.sqrt(x + 2) - 3)),
    "lower",
    once=True,
)
ROOT_CONJUGATE = Rule(
    "root_conjugate",
    "R + m sqrt(A) = D / (m sqrt(A) - R), D = m**2 A - R**2 (and R + m / sqrt(A) = D / ((R sqrt(A) - m) sqrt(A)), D = R**2 A - m**2), used where R m < 0 and D is a constant",
    _root_conjugate,
    tuple((lhs, _root_conjugate(lhs)) for lhs in (x + sp.sqrt(x**2 + 4), x / 2 + sp.sqrt(x**2 + 4) / 2, 1 + x / sp.sqrt(x**2 + u),
                                                   sp.sqrt(x**2 + 1) - x)),
    "lower",
    once=True,
)
RATIO_FIRST = Rule(
    "ratio_first",
    "t**m d**-n = (t/d)**m d**(m-n) for 1 <= m < n, where d grows like |t| (hypot(t, c), c + k|t|): no overflow of d**n",
    _ratio_first,
    tuple((lhs, _ratio_first(lhs)) for lhs in (x / (u + sp.Abs(x)) ** 2, 3 * x * cfunctions.hypot(x, 1) ** -5, x**2 / (1 + 2 * sp.Abs(x)) ** 3)),
    "lower",
)
RATIONAL_TAIL = Rule(
    "rational_tail",
    "prod_i P_i(t)**r_i = t**s prod_i (P_i(t)/t**p_i)**r_i, s = sum_i p_i r_i, for polynomials P_i of degree p_i (one of degree >= 2 in a denominator, or a numerator of degree >= 2 over a denominator; |t| = t (|t|/t)), used for |t| >= 2**(120//d), d the larger total degree of numerator and denominator: no overflow of a power where the value is representable",
    _rational_tail,
    tuple((lhs, _rational_tail(lhs)) for lhs in (x / (1 + x**2), 3 * x**3 / (x**2 + u) ** 2, 1 / (x**2 + x + 1) ** 2, x**2 / (2 * x**2 + u) ** 3, (1 - x**2) / (x**2 + 1) ** 2,
                                                  (x - 1) * (x + 1) / (2 * sp.Abs(x)), (x**2 + u) / (x + 2))),
    "lower",
    once=True,
)
RATIONAL_ROOTS = Rule(
    "rational_roots",
    "P(t) = c prod_i (t - r_i)**k_i Q(t) for the nonzero rational roots r_i of a polynomial P in a numerator (SymPy's factorisation over the rationals): each linear factor is exact near its root, where the expanded form cancels",
    _rational_roots,
    tuple((lhs, _rational_roots(lhs)) for lhs in (1 - x**2, (x**2 - 1) / (x**2 + 1) ** 2, x**3 - 2 * x**2 + x, sp.exp(x) * (4 * x**2 - 1) + 1, sp.Piecewise((x**2 - 3 * x + 2, x > 0), (0, True)))),
    "lower",
    whole=True,
)
SCALED_POWER = Rule(
    "scaled_power",
    "c t**n = +-(t/2**k)**n for c = +-2**(-k n), k >= 1 an integer: no overflow of t**n where c t**n is finite (outside a function's argument)",
    _scaled_power,
    tuple((lhs, _scaled_power(lhs)) for lhs in (x**4 / 16, 1 - x**3 / 8, sp.Piecewise((-x**2 / 4, x > 0), (0, True)))),
    "lower",
    whole=True,
)
LOG_TAIL = Rule(
    "log_tail",
    "log(c prod_i P_i(t)**r_i) = s log|t| + log(c prod_i (P_i(t)/t**p_i)**r_i), s = sum_i p_i r_i even, for polynomials P_i of degree p_i (of total degree >= 2) and c > 0, used for |t| >= 2**(120//d), d the larger total degree of numerator and denominator: no overflow (or underflow) of the logarithm's argument where the logarithm is moderate",
    _log_tail,
    tuple((lhs, _log_tail(lhs)) for lhs in (sp.log(1 + x**2), sp.log(1 / (x**2 + u)), sp.log(2 * (x**2 + x + 1) / (x**2 + 3)), sp.log((x**2 + 1) ** 3))),
    "lower",
    once=True,
)
_SCALE_SPLIT = sp.Float(2.0**28)


def _scaled_argument(e):
    # log(c x) -> log(c) + log(x) and asinh(c x) -> sign(x) (log|x| + log(|c| + sqrt(c**2 + x**-2)))
    # for a number c and an input-dependent x, where c x alone overflows (|c| > 1, |x| >= 2**28) or,
    # for the logarithm, becomes subnormal (|c| < 1, |x| <= 2**-28): asinh(3 z) is about 710 at
    # z = -1.8e308, not -inf. Both logarithms then have the sign of the result (|x| >= 2**28 >= 1/|c|,
    # or both below 1): the sum does not cancel
    if not isinstance(e, (sp.log, sp.asinh)):
        return None
    c_, x_ = e.args[0].as_coeff_Mul()
    if isinstance(e, sp.asinh) and c_.is_Number and abs(c_) >= 1 and x_.is_Pow and x_.exp.is_Integer and x_.exp >= 2 and _inputs(x_.base):
        # asinh(c x**n) = sign(c x**n) (n log|x| + log(|c| + sqrt(c**2 + x**(-2 n)))) where x**n alone
        # overflows (asinh(z**2) is 1419 at z = 1.8e308, not inf); split at |x| >= 2**(28 // n),
        # where |c x**n| >= 2**(28 - n) >= 1 keeps both logarithms non-negative (no cancellation)
        n, base = x_.exp, x_.base
        far = sp.sign(c_) * (sp.sign(base) if n % 2 else 1) * (n * sp.log(sp.Abs(base)) + sp.log(abs(c_) + sp.sqrt(c_**2 + base ** (-2 * n))))
        return sp.Piecewise((e, sp.Abs(base) < sp.Float(2.0 ** (28 // int(n)))), (far, True))
    if not c_.is_Number or c_ in (1, -1) or c_ == 0 or not _inputs(x_) or isinstance(x_, sp.Piecewise):
        return None
    if isinstance(e, sp.log):
        if not c_.is_positive:
            return None
        if abs(c_) > 1:
            return sp.Piecewise((e, sp.Abs(x_) < _SCALE_SPLIT), (sp.log(c_) + sp.log(x_), True))
        return sp.Piecewise((e, sp.Abs(x_) > 1 / _SCALE_SPLIT), (sp.log(c_) + sp.log(x_), True))
    if abs(c_) <= 1:
        return None
    far = sp.sign(c_) * sp.sign(x_) * (sp.log(sp.Abs(x_)) + sp.log(abs(c_) + sp.sqrt(c_**2 + x_**-2)))
    return sp.Piecewise((e, sp.Abs(x_) < _SCALE_SPLIT), (far, True))


SCALED_ARGUMENT = Rule(
    "scaled_argument",
    "log(c x) = log(c) + log(x) (c > 0, x > 0) and asinh(c x) = sign(c x) (log|x| + log(|c| + sqrt(c**2 + 1/x**2))) "
    "for a number c, used where c x alone would overflow (|c| > 1, |x| >= 2**28) or be subnormal (log, |c| < 1, |x| <= 2**-28); "
    "asinh(c x**n) = sign(c x**n) (n log|x| + log(|c| + sqrt(c**2 + x**(-2 n)))) for an integer n >= 2 and |c| >= 1, used for "
    "|x| >= 2**(28 // n), where x**n alone can overflow; no cancellation there: both logarithms have the result's sign",
    _scaled_argument,
    ((sp.log(3 * u), sp.log(3) + sp.log(u)), (sp.log(u / 7), sp.log(u) - sp.log(7)),
     (sp.asinh(3 * u), sp.log(u) + sp.log(3 + sp.sqrt(9 + u**-2))),
     (sp.asinh(-3 * u), -(sp.log(u) + sp.log(3 + sp.sqrt(9 + u**-2)))),
     (sp.asinh(u**2), 2 * sp.log(u) + sp.log(1 + sp.sqrt(1 + u**-4))),
     (sp.asinh(-2 * u**3), -(3 * sp.log(u) + sp.log(2 + sp.sqrt(4 + u**-6))))),
    "lower",
    once=True,
)
EXP_SUM_POWER = Rule(
    "exp_sum_power",
    "prod_j (a_j + b_j exp(u))**r_j = exp(u sum_j r_j) prod_j (b_j + a_j exp(-u))**r_j for a_j, b_j free of the inputs (one r_j not an integer), used for u >= 0: no overflow of exp(u) where the power is finite",
    _exp_sum_power,
    tuple((lhs, _exp_sum_power(lhs)) for lhs in (sp.sqrt(1 + sp.exp(x)), sp.exp(x) / (2 * sp.sqrt(1 + sp.exp(x))), (sp.exp(x) + 2) * sp.exp(x) / (4 * (sp.exp(x) + 1) ** sp.Rational(3, 2)), (u + 3 * sp.exp(-2 * x)) ** sp.Rational(-1, 3))),
    "lower",
    top_down=True,
    once=True,
)
HYPOT = Rule(
    "hypot",
    "(a t**2 + c)**(k/2) = (sqrt(a) hypot(t, sqrt(c/a)))**k for a, c > 0, used for |t| >= 2**(120//|k|)/sqrt(a) when |k| > 1: no overflow of t**2 where the root is finite",
    _hypot,
    tuple((lhs, _hypot(lhs)) for lhs in (sp.sqrt(x**2 + 1), (x**2 + 4) ** sp.Rational(-3, 2), sp.sqrt(3 * x**2 * u**2 + u),
                                         sp.sqrt((x - b) ** 2 / u**2 + 1))),
    "lower",
    once=True,
)
SOFTPLUS_LOG1P = Rule(
    "softplus_log1p",
    "softplus(t) = max(t, 0) + log1p(exp(-|t|)), with max(k v, 0) = k max(v, 0) for a number k > 0",
    _softplus_log1p,
    ((softplus(u), sp.Max(u, 0) + cfunctions.log1p(sp.exp(-sp.Abs(u)))), (softplus(-u), sp.Max(-u, 0) + cfunctions.log1p(sp.exp(-sp.Abs(-u)))),
     (softplus(2 * u), _softplus_log1p(softplus(2 * u))), (softplus(-2 * u), _softplus_log1p(softplus(-2 * u)))),
    "lower",
)
SECH_SQUARED_COSH = Rule(
    "sech_squared_cosh",
    "sech(t)**2 = 1/cosh(t)**2 = 2/(1 + cosh(2t))",
    _sech_squared_cosh,
    ((sp.sech(a) ** 2, 2 / (1 + sp.cosh(2 * a))), (sp.sech(a) ** 4, 4 / (1 + sp.cosh(2 * a)) ** 2), (sp.cosh(a) ** -2, ratio(2, 1 + sp.cosh(2 * a)))),
    "lower",
)
HYPERBOLIC_RATIO = Rule(
    "hyperbolic_ratio",
    "sinh(t)**m / cosh(t)**n = tanh(t)**m sech(t)**(n - m) for n >= m > 0 (no inf/inf where both overflow)",
    _hyperbolic_ratio,
    ((sp.sinh(a) / sp.cosh(a) ** 2, sp.tanh(a) * sp.sech(a)), (sp.sinh(a) ** 2 / sp.cosh(a) ** 3, sp.tanh(a) ** 2 * sp.sech(a)),
     (c * sp.sinh(a) / sp.cosh(a), c * sp.tanh(a))),
    "lower",
)
HYPERBOLIC_QUOTIENT = Rule(
    "hyperbolic_quotient",
    "N(cosh(k t), sinh(k t)) / D(...) = P(X)/Q(X) with X = exp(-|t|), both divided by the top power of exp(|t|) in D, for |t| >= 1 (no inf/inf where both overflow)",
    _hyperbolic_quotient,
    tuple((e.subs(u, v), _hyperbolic_quotient(e).args[1][0].subs(u, v)) for e in (
        (sp.cosh(2 * u) - 3) / sp.cosh(u) ** 3, sp.sinh(u) / (3 * sp.cosh(u) + 3))
        for v in (u, -u)),
    "lower",
    once=True,
)
_HYPERBOLIC_EXP_FORMS = (
    (sp.cosh, lambda t: sp.exp(sp.Abs(t) - sp.log(2)) + sp.exp(-sp.Abs(t) - sp.log(2))),
    (sp.sinh, lambda t: sp.sign(t) * (sp.exp(sp.Abs(t) - sp.log(2)) - sp.exp(-sp.Abs(t) - sp.log(2)))),
    (sp.sech, lambda t: sp.exp(sp.log(2) - sp.Abs(t)) / (1 + sp.exp(-2 * sp.Abs(t)))),
)
HYPERBOLIC_EXP = Rule(
    "hyperbolic_exp",
    "cosh(t) = exp(|t| - log 2) + exp(-|t| - log 2), sinh(t) = sign(t) (exp(|t| - log 2) - exp(-|t| - log 2)) for |t| >= 1, "
    "sech(t) = exp(log 2 - |t|)/(1 + exp(-2|t|)), where t rounds (its exponentials are then compensated)",
    _hyperbolic_exp,
    # by cases: t = u > 0 and t = -u
    tuple((f(t), g(t)) for t in (u, -u) for f, g in _HYPERBOLIC_EXP_FORMS),
    "lower",
    once=True,
)
LOGISTIC_PRODUCT = Rule(
    "logistic_product",
    "logistic(t) logistic(-t) = exp(-|t|) / (1 + exp(-|t|))**2",
    _logistic_product,
    ((logistic(u) * logistic(-u), sp.exp(-u) / (1 + sp.exp(-u)) ** 2), (logistic(-u) * logistic(u), sp.exp(-u) / (1 + sp.exp(-u)) ** 2)),
    "lower",
)
LOGISTIC_RECIPROCAL = Rule(
    "logistic_reciprocal",
    "logistic(t) = 1/(1 + exp(-t)) for a logistic that is a whole term: overflow of exp(-t) gives the underflowed limit 0",
    _logistic_reciprocal,
    ((logistic(a), 1 / (1 + sp.exp(-a))), (2 * logistic(a) - b, 2 / (1 + sp.exp(-a)) - b)),
    "lower",
)
LOGISTIC_PAIR_SUM = Rule(
    "logistic_pair_sum",
    "a y logistic(-t) + b logistic(t) = Piecewise((a y q + b (1 - q), t >= 0), (a y (1 - q) + b q, True)), q = logistic(-|t|)",
    _logistic_pair_sum,
    ((-x * logistic(-u) + (1 - x) * logistic(u), 1 - x - sp.exp(-u) / (1 + sp.exp(-u))),
     (-x * logistic(u) + (1 - x) * logistic(-u), sp.exp(-u) / (1 + sp.exp(-u)) - x))
    # the rewrite itself, on either side of 0 (its indicator is then 1 or 0)
    + tuple((_logistic_pair_sum(-x * logistic(-t) + (1 - x) * logistic(t)), -x * logistic(-t) + (1 - x) * logistic(t))
            for t in (u, sp.Symbol("m", negative=True))),
    "lower",
)
STABLE_LOGISTIC = Rule(
    "stable_logistic",
    "logistic(t) = exp(min(t, 0)) / (1 + exp(-|t|))",
    _stable_logistic,
    ((logistic(u), 1 / (1 + sp.exp(-u))), (logistic(-u), sp.exp(-u) / (1 + sp.exp(-u)))),
    "lower",
)
CLAMP_BRANCHES = Rule(
    "clamp_branches",
    "Piecewise((f(v), v > t), (g(v), True)) = Piecewise((f(max(v, t)), v > t), (g(min(v, t)), True))",
    _clamp_branches,
    ((sp.Max(a + u, a), a + u), (sp.Min(a - u, a), a - u)),
    "lower",
)
XLOGY = Rule(
    "xlogy",
    "x log(t) = xlogy(x, t) wherever t > 0, continued by 0 at x = 0; x log(1 + t) = xlog1py(x, t) (log1p's accuracy for tiny t)",
    _xlogy,
    ((x * sp.log(u), xlogy(x, u)), (x * sp.log(1 + u), xlog1py(x, u))),
    "lower",
)
def _log1p(e):
    # log(1 + t) -> log1p(t)
    if isinstance(e, sp.log) and e.args[0].is_Add:
        terms = e.args[0].args
        if sp.S.One in terms and len(terms) > 1:
            rest = sp.Add(*[t for t in terms if t != 1])
            if rest.free_symbols:
                return cfunctions.log1p(rest)
    return None


# SymPy's own codegen optimisations (expm1_opt, log1p_opt) are not used here: expm1_opt refactors
# whole expressions (it turned exp(-|t|)/(1 + exp(-|t|))**2 into exp(|t|)/(exp(|t|) + 1)**2, which
# overflows). These node-local rules do the same rewrite and touch nothing else.
EXPM1 = Rule(
    "expm1",
    "c exp(t) - c = c expm1(t)",
    _complement(lambda t: t.args[0] if isinstance(t, sp.exp) and t.args[0].free_symbols else None, lambda t, k: -k * cfunctions.expm1(t)),
    ((sp.exp(a) - 1, cfunctions.expm1(a)), (2 * sp.exp(3 * a) - 2, 2 * cfunctions.expm1(3 * a))),
    "lower",
)
LOG1P = Rule(
    "log1p",
    "log(1 + t) = log1p(t)",
    _log1p,
    ((sp.log(1 + u), cfunctions.log1p(u)), (sp.log(1 - 1 / (1 + u)), cfunctions.log1p(-1 / (1 + u)))),
    "lower",
)

def _log1mexp_form(e):
    """t for log(-expm1(t)) or log1p(-exp(t)), the two forms of log(1 - exp(t)); else None."""
    if isinstance(e, sp.log) and e.args[0].is_Mul and e.args[0].args[0] == -1 and len(e.args[0].args) == 2 and isinstance(e.args[0].args[1], cfunctions.expm1):
        return e.args[0].args[1].args[0]
    if isinstance(e, cfunctions.log1p) and e.args[0].is_Mul and e.args[0].args[0] == -1 and len(e.args[0].args) == 2 and isinstance(e.args[0].args[1], sp.exp):
        return e.args[0].args[1].args[0]
    return None


def _log1mexp(e):
    # log(1 - exp(t)) -> log(-expm1(t)) for t > -log 2, log1p(-exp(t)) below (Maechler 2012)
    t = _log1mexp_form(e)
    if t is None or not t.free_symbols:
        return None
    return sp.Piecewise((sp.log(-cfunctions.expm1(t)), t > -sp.log(2)), (cfunctions.log1p(-sp.exp(t)), True))


# -log(2) < t < 0 and t < -log(2), as generic symbols (both forms are NaN for t > 0 and -oo at 0)
_NEAR_ZERO = -sp.log(2) * sp.Symbol("s", positive=True) / (1 + sp.Symbol("s", positive=True))
_BELOW_LOG_HALF = -1 - u  # below -log 2 (log 2 < 1)
LOG1MEXP = Rule(
    "log1mexp",
    "log(1 - exp(t)) = log(-expm1(t)) for t > -log 2 and log1p(-exp(t)) otherwise: -expm1(t) is exact near t = 0, where 1 - exp(t) cancels, and log1p keeps the tiny exp(t) far below it",
    _log1mexp,
    tuple((lhs, rhs) for t in (_NEAR_ZERO, _BELOW_LOG_HALF, -u)
          for lhs, rhs in ((sp.log(1 - sp.exp(t)), sp.log(-cfunctions.expm1(t))), (sp.log(1 - sp.exp(t)), cfunctions.log1p(-sp.exp(t)))))
    + tuple((sp.log(1 - sp.exp(t)), _log1mexp(sp.log(-cfunctions.expm1(t)))) for t in (_NEAR_ZERO, _BELOW_LOG_HALF)),
    "lower",
    once=True,
)


def _logistic_difference(e):
    # a logistic(-t) - a logistic(t) -> -a tanh(t/2);  k - 2k logistic(t) -> -k tanh(t/2)
    # (tanh itself, measured: sign(t) (1 - E)/(1 + E), E = exp(-|t|), which would share E with
    # logistic(t) logistic(-t), is 3.8 ulp off in sigmoid's second derivative where tanh is 3.0)
    if not e.is_Add or len(e.args) != 2:
        return None
    coeffs = e.as_coefficients_dict()
    found = [(term, c) for term, c in coeffs.items() if isinstance(term, logistic)]
    if len(found) == 2:
        (s1, c1), (s2, c2) = found
        if s1.args[0] == -s2.args[0] and c1 == -c2 and s1.args[0].free_symbols:
            t, a = (s2.args[0], c1) if s1.args[0].could_extract_minus_sign() else (s1.args[0], c2)
            return -a * sp.tanh(t / 2)
    if len(found) == 1 and len(coeffs) == 2:
        (s1, c1), = found
        k = coeffs.get(sp.S.One, 0)
        if k != 0 and c1 == -2 * k and s1.args[0].free_symbols:
            return -k * sp.tanh(s1.args[0] / 2)
    return None


LOGISTIC_DIFFERENCE = Rule(
    "logistic_difference",
    "a logistic(-t) - a logistic(t) = -a tanh(t/2) and k - 2k logistic(t) = -k tanh(t/2): no cancellation near t = 0",
    _logistic_difference,
    # by cases: t = u > 0 and t = -u
    tuple((lhs.subs(a, t), _logistic_difference(lhs).subs(a, t).rewrite(sp.exp))
          for t in (u, -u) for lhs in (logistic(-a) - logistic(a), 3 - 6 * logistic(2 * a))),
    "lower",
)

def _logistic_complement_difference(e):
    # c logistic(u) - c logistic(v) -> c (logistic(-v) - logistic(-u)) where u + v > 0: where both
    # arguments are large, logistic(u) and logistic(v) both round to near 1 and their difference
    # cancels (softclip's derivative logistic(a z) - logistic(a z - a) was 0 instead of 7e-66 at
    # z = 4, a = 50); their complements are small and each keeps its relative accuracy
    if not e.is_Add:
        return None
    coeffs = e.as_coefficients_dict()
    found = [(term, c) for term, c in coeffs.items() if isinstance(term, logistic)]
    if len(found) != 2 or len(coeffs) != 2:
        return None
    (s1, c1), (s2, c2) = found
    if c1 != -c2 or not c1.is_number:
        return None
    u, v = (s1.args[0], s2.args[0]) if c1.is_positive else (s2.args[0], s1.args[0])
    c = abs(c1)
    if sp.simplify(u + v) == 0 or not (u.free_symbols and v.free_symbols):
        return None  # logistic(t) - logistic(-t): logistic_difference's tanh
    return c * sp.Piecewise((logistic(-v) - logistic(-u), u + v > 0), (logistic(u) - logistic(v), True))


LOGISTIC_COMPLEMENT_DIFFERENCE = Rule(
    "logistic_complement_difference",
    "logistic(u) - logistic(v) = logistic(-v) - logistic(-u), taken where u + v > 0: no cancellation where both are near 1",
    _logistic_complement_difference,
    # each branch, on either side of the switch (the Piecewise is proved by its conditions' cases)
    ((logistic(-x) - logistic(-u), logistic(u) - logistic(x)),
     (_logistic_complement_difference(logistic(u) - logistic(x)).subs(x, u + 1), logistic(u) - logistic(u + 1)),
     (_logistic_complement_difference(logistic(u) - logistic(x)).subs(x, -u - 1), logistic(u) - logistic(-u - 1))),
    "lower",
    once=True,
)


_SERIES_X = sp.Dummy("x", real=True)  # one symbol for every fit, so that series.fit's cache serves each backend's lowering
_NOT_ANALYTIC = (sp.Piecewise, sp.Abs, sp.Min, sp.Max, sp.sign, sp.Heaviside, sign_select, ratio)


def _series_variable(e):
    """(t, f, x, side, k) with e = k f(t) for an expression f in a fresh symbol x, k free of the
    inputs, and t the one input, a clamped input (min(z, 0) or max(z, 0) of a branch: then ``side``
    is the sign of the values t takes, else 0), or either of these over one parameter (z/alpha,
    with k a power of alpha); else None."""
    inputs = _inputs(e)
    if len(inputs) != 1:
        return None
    (v,) = inputs
    x = _SERIES_X
    clamped = sorted((n for n in sp.preorder_traversal(e) if isinstance(n, (sp.Min, sp.Max)) and set(n.args) == {v, sp.S.Zero}), key=sp.default_sort_key)
    for base in clamped + [v]:
        f = e.xreplace({base: x})
        if v in f.free_symbols or f.has(*_NOT_ANALYTIC):
            continue
        side = (-1 if isinstance(base, sp.Min) else 1) if base != v else 0
        params = f.free_symbols - {x}
        if not params:
            return base, f, x, side, sp.S.One
        if len(params) == 1:
            (p,) = params
            k, g = sp.factor_terms(f.xreplace({x: p * x})).as_independent(x, as_Add=False)
            # (a parameter of unknown sign would turn a one-sided fit around)
            if p not in g.free_symbols and (not side or p.is_positive):
                return base / p, g, x, side, k
        return None
    return None


def _cancellation_polynomial(e):
    # e = x**m h(x) near x = 0, where e's terms cancel: h by a fitted polynomial there
    if not e.is_Add or e.has(polynomial):
        return None
    found = _series_variable(e)
    if found is None:
        return None
    t, f, x, side, k = found
    try:
        if f.xreplace({x: sp.Integer(0)}) != 0:
            return None
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not (EXPM1.rewrite(f) or f).is_Add:
        return None  # k exp(r) - k: expm1 is exact and cheaper
    fitted = series.fit(f, x, side)
    if fitted is None:
        return None
    w = t**2 if fitted.even else t
    if fitted.even:
        cond = sp.Abs(t) < fitted.right
    else:
        cond = sp.And(*([t > -fitted.left] if fitted.left else []), *([t < fitted.right] if fitted.right else []))
    value = k * t**fitted.order * polynomial(w - sp.Float(fitted.centre), *(sp.Float(c) for c in fitted.coeffs))
    return sp.Piecewise((value, cond), (e, True))


def _order_pair(e, m, lead):
    """(e's series at 0 to order m, lead x**m): e vanishes at 0 to order m (its terms do not)."""
    return sp.series(e, x, 0, m + 1).removeO(), lead * x**m


CANCELLATION_POLYNOMIAL = Rule(
    "cancellation_polynomial",
    "e(t) = t**m h(t) for a sum e whose zero at t = 0 has a higher order m than its largest term (z - tanh(z) = z**3 h(z)): "
    "h is evaluated by a polynomial fitted with mpmath where the terms cancel (|t| below the point where their sum is "
    "accurate again), its error sampled below 0.75 ulp at build time (evidence; measured in ulps by actgen accuracy)",
    _cancellation_polynomial,
    # the symbolic part: e = t**m (e / t**m) on the branch, with m the order of e's zero (SymPy's series)
    (_order_pair(x - sp.tanh(x), 3, sp.Rational(1, 3)), _order_pair(1 - sp.cos(x), 2, sp.Rational(1, 2)), _order_pair(sp.exp(x) - 1 - x, 2, sp.Rational(1, 2))),
    "lower",
    top_down=True,
    once=True,
)

def _min_max_parts(s):
    """(t, a, b) with s = a min(t, 0) + b max(t, 0) for integers a >= 0 >= b, not both 0 (-|t| is
    min(t, 0) - max(t, 0); min(-t, 0) is -max(t, 0)); else None."""
    t, a, b = None, 0, 0
    for term, c in s.as_coefficients_dict().items():
        if not c.is_Integer:
            return None
        if isinstance(term, (sp.Min, sp.Max)) and len(term.args) == 2 and sp.S.Zero in term.args:
            arg = term.args[1] if term.args[0] == 0 else term.args[0]
            is_min = isinstance(term, sp.Min)
            if arg.could_extract_minus_sign():
                arg, is_min, c = -arg, not is_min, -c
            a, b = (a + c, b) if is_min else (a, b + c)
        elif isinstance(term, sp.Abs):
            arg = term.args[0]
            if arg.could_extract_minus_sign():
                arg = -arg
            a, b = a - c, b + c
        else:
            return None
        if t is not None and arg != t:
            return None
        t = arg
    if t is None or not t.free_symbols or a < 0 or b > 0 or (a == 0 and b == 0):
        return None
    return t, int(a), int(b)


def _family_member(node):
    if isinstance(node, sp.exp):
        return _min_max_parts(node.args[0])
    if isinstance(node, mul_exp):
        return _min_max_parts(node.args[1])
    return None


SHARED_MIN_FAMILY = 2  # distinct exponents: one exponential then replaces two or more


def _shared_exponential(e):
    # exp(a min(t, 0) + b max(t, 0)) for two or more (a, b) -> powers of A = exp(min(t, 0)) and
    # B = exp(-max(t, 0)), each chosen from E = exp(-|t|) by the sign of t
    families = {}
    for node in sp.preorder_traversal(e):
        parts = _family_member(node)
        if parts is not None:
            families.setdefault(parts[0], set()).add(parts[1:])
    chosen = sorted((t for t, members in families.items() if len(members) >= SHARED_MIN_FAMILY), key=sp.default_sort_key)
    if not chosen:
        return None
    t = chosen[0]
    E = sp.exp(-sp.Abs(t))
    A, B = sign_select(t, 1, E), sign_select(t, E, 1)

    def value(a, b):
        return E if (a, b) == (1, -1) else A**a * B ** (-b)

    def rewrite(node):
        parts = _family_member(node)
        if parts is None or parts[0] != t:
            return node
        _t, a, b = parts
        if isinstance(node, sp.exp):
            return value(a, b)
        return mul_exp_shared(node.args[0], value(a, b), t, a, b)

    return e.replace(lambda n: _family_member(n) is not None, rewrite)


_SA, _SB = sign_select(x, 1, sp.exp(-sp.Abs(x))), sign_select(x, sp.exp(-sp.Abs(x)), 1)
SHARED_EXPONENTIAL = Rule(
    "shared_exponential",
    "exp(a min(t, 0) + b max(t, 0)) = A**a B**(-b) with A = (1 if t >= 0 else E), B = (E if t >= 0 else 1), E = exp(-|t|) "
    "(integers a >= 0 >= b): one exponential for two or more of them",
    _shared_exponential,
    tuple((lhs.xreplace({x: v}), rhs.xreplace({x: v}))
          for v in (sp.Symbol("p", positive=True), sp.Symbol("m", negative=True), sp.Integer(0))
          for lhs, rhs in ((sp.exp(sp.Min(x, 0)), _SA),
                           (sp.exp(-sp.Max(x, 0)), _SB),
                           (sp.exp(sp.Min(x, 0) - 2 * sp.Max(x, 0)), _SA * _SB**2),
                           (mul_exp_shared(a, sp.exp(-sp.Abs(x)), x, 1, -1), a * sp.exp(-sp.Abs(x))))),
    "lower",
    top_down=True,
)


def _merge_powers(e):
    # b**p b**q -> b**(p + q) in a product, for a base that holds an input and exponents of which at
    # least one holds a parameter (SymPy merges numeric exponents itself): gamma y_hat**gamma / y_hat
    # is gamma y_hat**(gamma - 1), where the factors alone overflow and vanish (inf * 0 = NaN at a
    # subnormal y_hat) and the product is small
    if not e.is_Mul:
        return None
    groups: dict = {}
    for f in e.args:
        b, x = (f, sp.S.One) if isinstance(f, sp.exp) else f.as_base_exp()
        groups.setdefault(b, []).append(x)
    if not any(len(xs) > 1 and _inputs(b) and any(x.free_symbols for x in xs) for b, xs in groups.items()):
        return None
    return sp.Mul(*[b ** sp.Add(*xs) if len(xs) > 1 and _inputs(b) else sp.Mul(*[b**x for x in xs]) for b, xs in groups.items()])


_W = sp.Symbol("w", real=True)
MERGE_POWERS = Rule(
    "merge_powers",
    "b**p b**q = b**(p + q) for b > 0 (one power where the factors alone would overflow and vanish, for exponents with a parameter)",
    _merge_powers,
    ((a * sp.Mul(u**_W, 1 / u, evaluate=False), a * u ** (_W - 1)),
     (sp.Mul(u**_W, u ** (2 * _W), (1 + u) ** _W, 1 / (1 + u), evaluate=False), u ** (3 * _W) * (1 + u) ** (_W - 1))),
    "lower",
)


# a lower rule: log(cosh(t)) stays itself while deriving (its derivative is tanh(t), exact), and is
# evaluated in this form
LOG_COSH = Rule(
    "log_cosh",
    "log(cosh(t)) = log1p(2 sinh(t/2)**2) for |t| < 1 (no cancellation near 0), else |t| + softplus(-2|t|) - log(2) (no overflow of cosh)",
    _log_cosh,
    ((sp.log(sp.cosh(u)), _log_cosh_form(u)), (sp.log(sp.cosh(-u)), _log_cosh_form(-u))),
    "lower",
)

def _periodic_shift(e):
    # sin(t + a) -> sin_dd(t + a) for a t that the float computes exactly (z, 2 z) and a numeric shift
    # a: t + a rounds by up to half an ulp of |t + a|, an absolute error that sin and cos keep (|z|
    # ulps of the result, unbounded next to their zeros: |cos(z + 1.702)|' was 4.6e18 ulp off at
    # z = -4.1e227, where z + 1.702 is z); in double-double, sin(high + low) = sin(high) cos(low) +
    # cos(high) sin(low) is within an ulp everywhere. A shift with a parameter (not evaluable in
    # double-double) is written by angle addition: sin(t) cos(a) + cos(t) sin(a), exact for large t
    if not isinstance(e, (sp.sin, sp.cos)) or not e.args[0].is_Add:
        return None
    arg = e.args[0]
    inputs = [s_ for s_ in arg.free_symbols if is_input(s_)]
    if len(inputs) != 1:
        return None
    a_, t = arg.as_independent(*inputs, as_Add=True)
    if a_ == 0 or t == 0 or not t.free_symbols <= set(inputs) or _rounds(t):
        return None
    if a_.is_number:
        return (sin_dd if isinstance(e, sp.sin) else cos_dd)(arg)
    if isinstance(e, sp.sin):
        return sp.sin(t) * sp.cos(a_) + sp.cos(t) * sp.sin(a_)
    return sp.cos(t) * sp.cos(a_) - sp.sin(t) * sp.sin(a_)


PERIODIC_SHIFT = Rule(
    "periodic_shift",
    "sin(t + a) = sin(h) cos(l) + cos(h) sin(l) with t + a = h + l in double-double (cos likewise), for an exact t and a numeric "
    "shift a (a parameter: sin(t) cos(a) + cos(t) sin(a)): t + a would round by half an ulp of |t + a|, an absolute error that sin and cos keep",
    _periodic_shift,
    ((sp.sin(x + sp.Rational(851, 500)), sin_dd(x + sp.Rational(851, 500))), (sp.cos(2 * x - sp.Rational(1, 3)), cos_dd(2 * x - sp.Rational(1, 3))),
     (sp.sin(x + a), sp.sin(x) * sp.cos(a) + sp.cos(x) * sp.sin(a))),
    "lower",
)


def _exact_constant_sum(e):
    # k s + c -> add_exact_constant(k s, c) for an input s, a number k and a rational c that float64
    # cannot hold (a decimal such as 4.702 or 1/3): the constant's low part is added last, so that
    # where k s + c cancels the result keeps its accuracy
    if not e.is_Add or len(e.args) != 2:
        return None
    c_, rest = e.as_coeff_Add()
    if not (c_.is_Rational and c_ != 0) or sp.Rational(float(c_)) == c_:
        return None
    k, s_ = rest.as_coeff_Mul()
    if not (s_.is_Symbol and (s_.name in _INPUT_NAMES or is_input(s_))) or not (k.is_Rational and sp.Rational(float(k)) == k):
        return None
    return add_exact_constant(rest, c_)


EXACT_CONSTANT_SUM = Rule(
    "exact_constant_sum",
    "k s + c = (k s + c_hi) + c_lo for an input s, a float k and a rational c that float64 cannot hold (c_hi the nearest float, "
    "c_lo = c - c_hi): next to s = -c/k, where k s + c_hi is exact, the result is not the rounding of the constant",
    _exact_constant_sum,
    ((x + sp.Rational(2351, 500), add_exact_constant(x, sp.Rational(2351, 500))), (2 * x - sp.Rational(1, 3), add_exact_constant(2 * x, -sp.Rational(1, 3)))),
    "lower",
)


def _square_over(e):
    # c u**2 / v -> u ratio(c u, v) for an input variable v (a variance) and a number 0 < |c| <= 1:
    # u**2 overflows past 1.3e154 (1.8e19 in float32) where the quotient is finite whenever v is
    # large; c u / v first never overflows where the result does not, and c u cannot (|c| <= 1)
    if not e.is_Mul:
        return None
    coeff, rest = e.as_coeff_Mul()
    factors = sp.Mul.make_args(rest)
    squares = [f for f in factors if f.is_Pow and f.exp == 2 and _inputs(f.base)]
    over = [f for f in factors if f.is_Pow and f.exp == -1 and f.base.is_Symbol and _inputs(f.base)]
    if len(squares) != 1 or len(over) != 1 or not (0 < abs(coeff) <= 1):
        return None
    u, v = squares[0].base, over[0].base
    others = [f for f in factors if f is not squares[0] and f is not over[0]]
    if any(_inputs(f) for f in others):
        return None  # only a square over a variable, times numbers and parameters
    # (u / v) / (1/c) as nested divisions: SymPy would distribute c over a sum u, and the order
    # (u / v first) is the one that cannot overflow
    if abs(coeff) == 1:
        return coeff * sp.Mul(*others) * u * ratio(u, v)
    return sp.Mul(*others) * u * ratio(ratio(u, v), 1 / coeff)


SQUARE_OVER = Rule(
    "square_over",
    "c u**2 / v = u ((u / v) / (1/c)) for a variable v and a number 0 < |c| <= 1: no overflow of u**2 where the quotient is finite",
    _square_over,
    ((a**2 / b, a * ratio(a, b)), (-(a - b) ** 2 / (2 * u), (a - b) * ratio(ratio(a - b, u), -2))),
    "lower",
)


LOWER = (MERGE_POWERS, XLOGY, LOG_RATIO, SCALED_ARGUMENT, PIECEWISE_MAX, NAN_OTHERWISE, NAN_DEFAULT, CLAMP_BRANCHES, LOG_COSH, LINEAR_ROOT, SQRT_COMPLEMENT, ROOT_CONJUGATE, LOGISTIC_DIFFERENCE, LOGISTIC_COMPLEMENT_DIFFERENCE, CANCELLATION_POLYNOMIAL, HYPOT, RATIO_FIRST, RATIONAL_ROOTS, LOG_TAIL, RATIONAL_TAIL, EXP_SUM_POWER, SCALED_POWER, HYPERBOLIC_SOFTPLUS, SOFTPLUS_LOG1P, NORMAL_CDF_ERFCX, EXP_SQUARE, HYPERBOLIC_RATIO, HYPERBOLIC_QUOTIENT, SECH_SQUARED_COSH, HYPERBOLIC_EXP, LOGISTIC_PRODUCT, LOGISTIC_PAIR_SUM, LOGISTIC_RECIPROCAL, STABLE_LOGISTIC, SPLIT_EXP, DAMPED_EXPONENT, COMPENSATED_EXPONENT, SHARED_EXPONENTIAL, SQUARE_OVER, EXACT_CONSTANT_SUM, PERIODIC_SHIFT, ERFC_TAIL)


def lower(expr, fired=None):
    """Prepare ``expr`` for a NumPy printer; returns the lowered expression."""
    fired = [] if fired is None else fired
    expr = apply_rules(expr, (MERGE_POWERS,), fired)
    # before any rule rewrites a sum (linear_root, exact_constant_sum) inside sin or cos
    expr = apply_rules(expr, (PERIODIC_SHIFT,), fired)
    # branches are clamped before primitives are expanded, so the expansions stay untouched
    expr = apply_rules(expr, (XLOGY, PIECEWISE_MAX, CLAMP_BRANCHES), fired)
    expr = apply_rules(expr, (LOG_RATIO,), fired)
    # after piecewise_max (max(t, c) passes NaN on by itself) and before the printers' choices
    expr = apply_rules(expr, (NAN_OTHERWISE, NAN_DEFAULT), fired)
    expr = apply_rules(expr, (LINEAR_ROOT, SQRT_COMPLEMENT), fired)
    expr = apply_rules(expr, (ROOT_CONJUGATE,), fired)
    # exact forms first; then a polynomial where a sum still cancels at a zero of its variable
    expr = apply_rules(expr, (LOGISTIC_DIFFERENCE,), fired)
    expr = apply_rules(expr, (LOGISTIC_COMPLEMENT_DIFFERENCE,), fired)
    expr = apply_rules(expr, (CANCELLATION_POLYNOMIAL,), fired)
    expr = apply_rules(expr, (HYPOT,), fired)
    expr = apply_rules(expr, (RATIO_FIRST,), fired)
    expr = apply_rules(expr, (RATIONAL_ROOTS,), fired)
    expr = apply_rules(expr, (LOG_TAIL,), fired)
    expr = apply_rules(expr, (SCALED_ARGUMENT,), fired)
    expr = apply_rules(expr, (RATIONAL_TAIL,), fired)
    # rational_tail's t/|t| (proved as a ratio; it appears only where |t| >= 2**60) evaluated as
    # sign(t): the same for every t != 0, and +-1 at t = +-inf, where inf/inf is nan
    expr = expr.replace(lambda e: isinstance(e, ratio) and e.args[1] == sp.Abs(e.args[0]), lambda e: sp.sign(e.args[0]))
    expr = apply_rules(expr, (EXP_SUM_POWER,), fired)
    expr = apply_rules(expr, (SCALED_POWER,), fired)
    expr = apply_rules(expr, (SQUARE_OVER,), fired)
    expr = apply_rules(expr, (HYPERBOLIC_SOFTPLUS,), fired)
    expr = apply_rules(expr, (LOG_COSH,), fired)
    expr = apply_rules(expr, (SOFTPLUS_LOG1P,), fired)
    expr = apply_rules(expr, (NORMAL_CDF_ERFCX,), fired)
    expr = apply_rules(expr, (ERFC_TAIL,), fired)
    expr = apply_rules(expr, (EXP_SQUARE,), fired)
    expr = apply_rules(expr, (HYPERBOLIC_RATIO,), fired)
    expr = apply_rules(expr, (HYPERBOLIC_QUOTIENT,), fired)
    expr = apply_rules(expr, (SECH_SQUARED_COSH,), fired)
    expr = apply_rules(expr, (HYPERBOLIC_EXP,), fired)
    expr = apply_rules(expr, (LOGISTIC_PRODUCT,), fired)
    expr = apply_rules(expr, (LOGISTIC_PAIR_SUM,), fired)
    new = _logistic_reciprocal(expr)  # top level only: the value itself or its terms
    if new is not None:
        expr = new
        fired.append(LOGISTIC_RECIPROCAL.name)
    expr = apply_rules(expr, (STABLE_LOGISTIC,), fired)
    expr = apply_rules(expr, (SPLIT_EXP,), fired)
    expr = apply_rules(expr, (DAMPED_EXPONENT,), fired)
    expr = apply_rules(expr, (COMPENSATED_EXPONENT,), fired)
    expr = apply_rules(expr, (EXPM1, LOG1P), fired)
    expr = apply_rules(expr, (LOG1MEXP,), fired)
    expr = apply_rules(expr, (SHARED_EXPONENTIAL,), fired)
    expr = apply_rules(expr, (EXACT_CONSTANT_SUM,), fired)
    # the fitted polynomials, kept as one node through the rules above, by Horner's scheme
    return expr.replace(lambda e: isinstance(e, polynomial), lambda e: series.horner(e.args[1:], e.args[0]))


# -- class-axis rules ------------------------------------------------------------------------------


def _weight(arg, base):
    """The total coefficient of the components of ``base`` in ``arg`` (1 for z_k, -1 for -z_k,
    1/T for z_k/T); NaN where ``arg`` is not linear in them (no shift is then possible)."""
    comps = [t for t in arg.atoms(sp.Indexed) if t.base == base]
    coeffs = [sp.expand(arg).coeff(t) for t in comps]  # not diff: d z[k] / d z[i] is delta(i, k)
    rest = sp.expand(arg - sum((c * t for c, t in zip(coeffs, comps)), sp.Integer(0)))
    if any(t.base == base for e in (*coeffs, rest) for t in e.atoms(sp.Indexed)):
        return sp.nan
    return sum(coeffs, sp.Integer(0))


def _shift_bound(expr, base, M, M_low):
    """M (the max) when every exponential of ``base`` in ``expr`` has a positive weight, M_low (the
    min) when every one has a negative weight (softmin's exp(-z)): then every shifted exponent
    c (z - M) is <= 0. None for mixed signs or non-numeric weights."""
    weights = {_weight(e.args[0], base) for e in expr.atoms(sp.exp)} - {0}
    if not weights:
        return None
    # the sign of a weight with a parameter (exp(z/T)) comes from the parameter's assumptions
    if all(w.is_positive for w in weights):
        return M
    if M_low is not None and all(w.is_negative for w in weights):
        return M_low
    return None


def max_shift(expr, base, M, M_low=None):
    """exp(a) -> exp(a - c M) throughout, where c is the total coefficient of the components of
    ``base`` in a (1 for exp(z_k), 2 for exp(z_i + z_k)), when that leaves ``expr`` unchanged
    (proved).

    True exactly when ``expr`` is homogeneous of degree 0 in exp(z) (softmax and its derivatives);
    with M = max_j z[j] (or the min, ``M_low``, where every weight is negative, as in softmin) no
    exponential can overflow.
    """
    bound = _shift_bound(expr, base, M, M_low)
    if bound is None:
        return expr, False
    M = bound

    def weight(arg):
        return _weight(arg, base)

    shifted = expr.replace(
        lambda e: isinstance(e, sp.exp) and weight(e.args[0]) != 0,
        lambda e: sp.exp(e.args[0] - weight(e.args[0]) * M),
    )
    if shifted == expr:
        return expr, False
    ok, _ = prove_equal(shifted, expr)
    return (shifted, True) if ok else (expr, False)


_LAMBDA = sp.Symbol("lam", positive=True)


def _scaled(expr, base, factor):
    return expr.replace(lambda t: isinstance(t, sp.Indexed) and t.base == base, lambda t: factor * t)


def _degree(expr, base, limit=4):
    """d with expr(lam x) = lam**d expr(x) for the components x of ``base`` (|d| <= limit), or
    None; proved by simplification with lam > 0."""
    lam = _LAMBDA
    for d in sorted(range(-limit, limit + 1), key=abs):
        if sp.simplify(_scaled(expr, base, lam) - lam**d * expr) == 0:
            return d
    return None


def homogeneous_degree(expr, base):
    """(d, largest degree of a summand) when ``expr`` is homogeneous of degree d in the components of
    ``base``: each class sum is replaced by a symbol times lam**a (a, its summand's degree, proved
    without the sum), and the rest is proved by simplification in those symbols. None otherwise."""
    lam = _LAMBDA
    sums = sorted(expr.atoms(sp.Sum), key=sp.default_sort_key)
    plain, scaled, degrees = {}, {}, [0]
    for k, s in enumerate(sums):
        if s.function.has(sp.Sum):
            return None
        a = _degree(s.function, base)
        if a is None:
            return None
        sym = sp.Symbol(f"_sum{k}", real=True)
        plain[s], scaled[s] = sym, lam**a * sym
        degrees.append(a)
    f0 = expr.xreplace(plain)
    f1 = _scaled(expr.xreplace(scaled), base, lam)
    for d in sorted(range(-4, 5), key=abs):
        if sp.simplify(f1 - lam**d * f0) == 0:
            return d, max(degrees)
    return None


def _quadratic(summand, base):
    """A product of two or more components of ``base`` in ``summand`` (x[i]**2, x[i] x[j]): a
    cheap test before the proofs of homogeneous_degree."""
    def count(e):
        return sum(int(f.exp) if f.is_Pow and f.exp.is_Integer else 1
                   for f in sp.Mul.make_args(e) if (f.base if f.is_Pow else f).has(base) and isinstance(f.base if f.is_Pow else f, sp.Indexed))
    return any(count(m) >= 2 for m in summand.atoms(sp.Mul, sp.Pow))


def scale_free(expr, base, S):
    """expr(x) -> S**d expr(x / S) for an expression homogeneous of degree d in the components x of
    ``base``, with S = max |x| over the class axis, where a class sum has a summand of degree 2 or
    more (a sum of squares, which overflows past |x| = 1.3e154 and underflows below 1e-154 while the
    expression is moderate: a cosine similarity, a normalised vector). An identity wherever S > 0
    (homogeneity, proved by :func:`homogeneous_degree`); the printers take S = 1 where max |x| = 0
    (an all-zero vector), so that a norm is 0 there and a normalised vector 0/0, as written."""
    if not expr.has(base) or not any(_quadratic(t.function, base) for t in expr.atoms(sp.Sum)):
        return expr, False
    found = homogeneous_degree(expr, base)
    if found is None or found[1] < 2:
        return expr, False
    d, _ = found
    # x/S as one division (ratio): SymPy would distribute (x/S)**2 into x**2/S**2, which overflows
    scaled = expr.replace(lambda t: isinstance(t, sp.Indexed) and t.base == base, lambda t: ratio(t, S))
    return S**d * scaled, True


def mean_inside(expr, K):
    """c Sum(t, (i, 1, K)) -> Sum(c t, (i, 1, K)) for a factor c free of the class index and of every
    vector (a mean's 1/K, a constant, a parameter): the mean of finite terms is finite where their
    sum can overflow (multi-class margins: every term holds -y_hat[true class], so K - 1 terms near
    the largest float overflow their sum). Applied only where c holds 1/K (a mean; a sum scaled by
    c > 1 would overflow term by term instead), and each application is proved by simplification
    (linearity of the sum)."""

    def plain(f):
        return not f.has(sp.Sum) and not f.atoms(sp.Indexed)

    def is_mean(e):
        if not e.is_Mul:
            return False
        sums = [f for f in e.args if isinstance(f, sp.Sum)]
        rest = [f for f in e.args if not isinstance(f, sp.Sum)]
        # sums of exponentials are left to max_shift and logsumexp (log(Sum(exp)/K) is theirs)
        return len(sums) == 1 and not isinstance(sums[0].function, sp.exp) and all(plain(f) for f in rest) and sp.Pow(K, -1) in rest

    def inside(e):
        (total,) = [f for f in e.args if isinstance(f, sp.Sum)]
        c = e / total
        if c.has(*(lim[0] for lim in total.limits)):
            return e
        new = sp.Sum(c * total.function, *total.limits)
        return new if sp.simplify(new - e) == 0 else e

    new = expr.replace(is_mean, inside)
    return new, new != expr


def logsumexp(expr, base, M, M_low=None):
    """log(Sum(exp(c z[j]))) -> S + log(Sum(exp(c z[j] - S))), S = c M: the max-shifted
    log-sum-exp (S = c M_low, the min, for a negative c)."""

    def parts(e):
        """(u, Sum(exp(...))) of log(u Sum(exp(...))) with u > 0 free of the vector (a mean's 1/K:
        log(u S) = log(u) + log(S)), or None."""
        if not isinstance(e, sp.log):
            return None
        sums = [f for f in sp.Mul.make_args(e.args[0]) if isinstance(f, sp.Sum) and isinstance(f.function, sp.exp)]
        if len(sums) != 1:
            return None
        u = e.args[0] / sums[0]
        if not (u == 1 or (u.is_positive and not u.has(base) and not u.has(sp.Sum))):
            return None
        return u, sums[0]

    def is_lse(e):
        found = parts(e)
        if found is None:
            return False
        c = _weight(found[1].function.args[0], base)
        return bool(c.is_positive or (c.is_negative and M_low is not None))

    def shift(e):
        u, s = parts(e)
        c = _weight(s.function.args[0], base)
        S = c * (M if c.is_positive else M_low)
        return sp.log(u) + S + sp.log(sp.Sum(sp.exp(s.function.args[0] - S), *s.limits))

    new = expr.replace(is_lse, shift)
    return new, new != expr


ALL_RULES = RAISE + LOWER + (EXPM1, LOG1P, LOG1MEXP, EXPONENT_GATE)
