"""Stage 8: what every target's files share, and the files beside the packages.

Templates own layout. This module holds what the backends' renderers (:mod:`actgen.backends`) have
in common: docstring pieces (formulas, the rewrites behind the code, kink conventions), examples
whose expected output is computed exactly by SymPy (so a doctest checks printed code against exact
mathematics), the class-axis rewrites, and the files written beside the packages (cheat sheet,
identities, properties, catalog). :func:`render_all` asks each selected target for its package.
"""
from __future__ import annotations

import functools
import json
import math

import jinja2
import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import log1p

from . import __version__
from . import model as M
from .pipeline import Derived, Entry
from .primitives import at_max, axis_max, axis_sum, centered, drop_max, elementary, exp_shifted
from .printing import Z_MAX, Z_MIN, latex, scale_of, to_array
from .properties import NAMES as PROPERTY_NAMES
from .properties import TITLES as PROPERTY_TITLES
from .properties import VECTOR_NAMES as PROPERTY_VECTOR_NAMES
from .properties import kinks
from .rules import ALL_RULES, logsumexp, max_shift, mean_inside, scale_free


RULE_TEXT = {r.name: r.identity for r in ALL_RULES}
# the array symbols of class-axis expressions after printing.to_array (whole arrays along the axis)
ARRAYS = tuple(sp.Symbol(name, real=True) for name in ("z", "y", "y_hat", "g"))
RULE_TEXT["max_shift"] = ("exp(z_k)/sum_j exp(z_j) = exp(z_k - M)/sum_j exp(z_j - M) for any M: M = max z (no overflow), "
                          "or M = 0 when every |z| <= 64 (no exponential can overflow or underflow; no max, and z - M needs no rounding)")
RULE_TEXT["scale_free"] = ("f(x) = S**d f(x/S) for f homogeneous of degree d in the class vector x, S = max |x| over the class "
                           "axis: a sum of squares of x (a norm) never overflows or underflows (proved by homogeneity)")
RULE_TEXT["mean_inside"] = ("sum_j t_j / K = sum_j (t_j / K) (linearity, proved by simplification): a mean of finite terms is finite "
                            "where their sum can overflow")
RULE_TEXT["logsumexp"] = "log sum_j exp(z_j) = M + log sum_j exp(z_j - M), with M as for max_shift"
RULE_TEXT["dominant_term"] = ("sum_j e_j x_j = e_m x_m + sum_{j != m} e_j x_j, m the largest e_j (e_m = 1 after the shift): "
                              "log sum_j e_j = log1p(sum_{j != m} e_j), and sum_j e_j x_j - x_k sum_j e_j = e_m (x_m - x_k) + "
                              "sum_{j != m} e_j (x_j - x_k), so that nothing cancels where one logit dominates; sum_j e_j = e_m + "
                              "sum_{j != m} e_j where the sum is squared or divides a term of a difference (one rounding near e_m)")

# max_shift and logsumexp hold for any shift M. With every |z| <= UNSHIFTED_BOUND, M = 0 is safe
# for a body whose exponentials have a total weight of at most MAX_UNSHIFTED_DEGREE in any product
# (exp(z) / sum exp(z) has 2): each such product lies in [exp(-d B), (K exp(B))^d], normal for
# d (B + log 2^40) < 709, so nothing overflows or becomes subnormal for up to 2^40 classes.
UNSHIFTED_BOUND = 64.0
MAX_UNSHIFTED_DEGREE = 7
assert MAX_UNSHIFTED_DEGREE * (UNSHIFTED_BOUND + 40 * math.log(2)) < 709


def environment(folder="templates", package="actgen"):
    """Jinja2 with StrictUndefined over a template folder of actgen (or of a backend's package, with
    actgen's own templates behind it for what the backends share)."""
    loader = jinja2.PackageLoader(package, folder)
    if package != "actgen":
        loader = jinja2.ChoiceLoader([loader, jinja2.PackageLoader("actgen", "templates")])
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
        autoescape=False,
    )


# -- exact example values --------------------------------------------------------------------------


def _exact(expr, subs):
    value = elementary(expr).xreplace(subs)
    value = value.doit() if value.has(sp.Sum) else value
    return float(sp.N(value, 40))


def _fmt_array(values):
    # "+ 0.0" turns -0.0 into 0.0, so that signed zeros do not make doctests brittle
    return repr(np.round(np.array(values, dtype=np.float64), 6) + 0.0)


def _fmt_significant(value):
    """A doctest's expected output of print(f"{x + 0.0:.6g}"): six significant digits, so that a
    large value (a gradient of 1e15) does not print its last rounding; + 0.0 makes -0.0 print 0."""
    return f"{float(value) + 0.0:.6g}"


EXAMPLE_Z = (-2.0, 0.0, 2.0)
# docstring example inputs on each activation domain (EXAMPLE_Z on the whole line)
# (interior points: a derivative may be infinite at a closed end, as sqrt's at 0)
_EXAMPLE_ON = {"positive": (0.5, 1.0, 2.0), "nonnegative": (0.5, 1.0, 2.0), "negative": (-2.0, -1.0, -0.5),
               "nonpositive": (-2.0, -1.0, -0.5), "(0, 1)": (0.25, 0.5, 0.75), "[0, 1]": (0.25, 0.5, 0.75),
               "(-1, 1)": (-0.5, 0.0, 0.5), "[-1, 1]": (-0.5, 0.0, 0.5)}


def example_points(act) -> tuple[float, ...]:
    """Three example inputs for an activation's docstrings, inside its domain."""
    return _EXAMPLE_ON.get(getattr(act, "domain", "real"), EXAMPLE_Z)


def example_literal(act, make="np.array", dtype="") -> str:
    """The example inputs as a literal of the target's array type, e.g. ``np.array([-2.0, 0.0, 2.0])``."""
    return f"{make}([{', '.join(repr(v) for v in example_points(act))}]{dtype})"
DOMAIN_SAMPLES = {
    "real": (0.0, 1.5), "positive": (0.5, 2.0), "nonnegative": (0.0, 2.0), "[0, 1]": (0.0, 1.0),
    "(0, 1)": (0.2, 0.7), "{0, 1}": (0.0, 1.0), "{-1, 1}": (-1.0, 1.0),
}
DOMAIN_SAMPLES_HAT = {**DOMAIN_SAMPLES, "real": (0.5, -0.5)}


def loss_examples(loss: M.Loss):
    dom = dict(loss.domain)
    ys = DOMAIN_SAMPLES[dom.get("y", "real")]
    hats = DOMAIN_SAMPLES_HAT[dom.get("y_hat", "real")]
    return ys, hats


def input_examples(loss: M.Loss) -> dict:
    """Two sample values of each further input of a loss, in its domain (for examples and plots)."""
    dom = dict(loss.domain)
    return {n: DOMAIN_SAMPLES_HAT[dom.get(n, "real")] for n in loss.inputs}


# -- function views --------------------------------------------------------------------------------


def _param_sig(params):
    return "".join(f", {p.name}={p.default_float!r}" for p in params)


def _kw_sig(params):
    return (", *" + _param_sig(params)) if params else ""


def param_prologue(params, fn, check_sign, convert="_param", dtype=""):
    """Lines that take each parameter through the runtime's ``convert``: as a float of the working
    precision (so that dividing by a zero parameter gives inf, which its branch then selects away,
    rather than Python's ZeroDivisionError) and, where ``check_sign``, refusing a negative value of
    a parameter that the derivation assumed positive (its default is): for losses and output forms,
    whose proofs use the sign, as PyTorch refuses a negative Huber delta or an ELU backward from the
    output with a negative alpha. ``dtype``: code of the working dtype, passed on as a keyword."""
    lines = []
    extra = f", dtype={dtype}" if dtype else ""
    for p in params:
        if check_sign and p.symbol.is_positive:
            lines.append(f"{p.name} = {convert}({p.name}, {fn!r}, {p.name!r}{extra})")
        else:
            lines.append(f"{p.name} = {convert}({p.name}{extra})")
    return tuple(lines)


def sign_checks(params, fn):
    """The frameworks' lines refusing a negative number for each parameter that the derivation of
    ``fn`` assumed positive (see param_prologue)."""
    return tuple(f"_nonnegative({p.name}, {fn!r}, {p.name!r})" for p in params if p.symbol.is_positive)


def _defaults(params):
    return {p.symbol: p.default for p in params}


def _computed_as(rules):
    if not rules:
        return ()
    lines = ["", "Computed with these rewrites (each proven equal to the formula):", ""]
    lines += [f"- ``{name}``: {RULE_TEXT.get(name, name)}" for name in rules]
    return tuple(lines)


def _math(label, expr):
    return ("", ".. math::", "", f"    {label} = {latex(expr)}")


def _conventions(expr_for_kinks, grad, params):
    """Kink conventions, computed: the derivative's value at each finite switching point."""
    lines = []
    grad = grad.xreplace(_defaults(params))
    for point in kinks(expr_for_kinks.xreplace(_defaults(params))):
        try:
            value = sp.nsimplify(sp.N(grad.xreplace({M.Z: point}), 20), rational=False)
        except (TypeError, ValueError):
            continue
        if value.is_number:
            shown = sp.sstr(value) if value.is_Rational or value.is_Integer else f"{float(value):.6g}"
            lines.append(f"z = {sp.sstr(point)}: derivative taken as {shown}")
    if not lines:
        return ()
    return ("", "Convention at kinks (the branch whose condition holds at the point; defaults for parameters):", "") + tuple(f"- {l}" for l in lines)


LOSS_CONVENTION_OPS = 60  # the gradient at a switching point is simplified below this size


def _switching_points(b):
    """The y_hat where b = 0, for b a polynomial of degree <= 2 in y_hat, or such a polynomial in
    y_hat and one |u| (each sign of u solved, the roots where b is 0 kept: |y_hat - y| - 1 gives
    y - 1 and y + 1); () otherwise. Closed-form roots, no search: the same text on any machine."""
    cases = [b]
    absolutes = [a for a in b.atoms(sp.Abs) if a.has(M.Y_HAT)]
    if len(absolutes) == 1:
        (a,) = absolutes
        cases = [b.xreplace({a: a.args[0]}), b.xreplace({a: -a.args[0]})]
    points = []
    for case in cases:
        if not case.is_polynomial(M.Y_HAT) or sp.degree(case, M.Y_HAT) > 2:
            return ()
        try:
            roots = sp.solve(sp.Eq(case, 0), M.Y_HAT)
        except (NotImplementedError, TypeError, ValueError):
            return ()
        points += [r for r in roots if r not in points and sp.expand(b.xreplace({M.Y_HAT: r})) == 0]
    return tuple(points)


def _loss_conventions(loss_expr, grad, params):
    """Kinks of a loss in y_hat (where a Piecewise condition, Max/Min, Abs or sign switches), each
    solved for y_hat and the gradient's value there, computed from the derived gradient."""
    from .derive import _piecewise_form

    defaults = _defaults(params)
    expr = _piecewise_form(loss_expr.xreplace(defaults))
    grad = grad.xreplace(defaults)
    boundaries = [r.lhs - r.rhs for r in expr.atoms(sp.core.relational.Relational) if r.has(M.Y_HAT)]
    boundaries += [f.args[0] for f in expr.atoms(sp.Abs, sp.sign) if f.has(M.Y_HAT)]
    lines = []
    for b in sorted(set(boundaries), key=sp.default_sort_key):
        for sol in _switching_points(b):
            value = grad.xreplace({M.Y_HAT: sol})
            value = sp.simplify(value) if sp.count_ops(value) <= LOSS_CONVENTION_OPS else value
            if not value.has(M.Y_HAT):
                lines.append(f"y_hat = {sp.sstr(sol)}: gradient taken as {sp.sstr(value)}")
    if not lines:
        return ()
    return ("", "At the switching points of the formula (a branch condition, Abs or sign changes there; a kink where the",
            "gradient jumps, else a smooth point), the gradient is that of the branch whose condition holds; defaults for parameters:", "") + tuple(f"- {l}" for l in dict.fromkeys(lines))


LOSS_BASES = (M.Y_HATV, M.YV)  # the class vectors of a class-axis loss


@functools.lru_cache(maxsize=None)
def class_keywords(loss: M.Loss, first=False) -> str:
    """The keywords a class-axis loss or head takes after its parameters where its targets may be
    one-hot rows (M.Loss.class_indices): integer class indices' ``ignore_index`` and
    ``label_smoothing`` (``first``: no keyword-only marker precedes them yet)."""
    if not loss.class_indices:
        return ""
    return (", *" if first else "") + ", ignore_index=-100, label_smoothing=0.0"


def class_call(loss: M.Loss, axis: str, name: str) -> str:
    """The arguments after (predictions, targets) of a runtime's _class_inputs."""
    return f"{axis}, {name!r}" + (", True, ignore_index, label_smoothing" if loss.class_indices else "")


def class_doc(loss: M.Loss, first: str, target: str, axis: str, kinds: str, target_first=False) -> tuple[str, ...]:
    """The Args of a class-axis loss or head: ``first`` names its predictions (``logits`` for a
    head), ``target`` its targets, ``axis`` the class-axis keyword; ``kinds``: the arrays it
    accepts; ``target_first``: the targets come first (the NumPy package's order)."""
    preds = (f"    {first}: {'scores' if first == 'logits' else 'predictions'}, classes along ``{axis}`` ({kinds}).",)
    if loss.class_indices:
        targets = (f"    {target}: class probabilities (broadcastable to the predictions), or integer class indices with the class axis",
                   "        left out (the sparse form: each index stands for its one-hot row, as torch.nn.functional.cross_entropy takes).")
        rest = ('    reduction: "mean" (default, over the samples kept), "sum" or "none".', f"    {axis}: the class axis (default: the last).",
                "    ignore_index: a class index whose samples are left out: zero loss and gradient, not counted by the mean",
                "        (default -100, as PyTorch; None keeps every sample).",
                "    label_smoothing: e in [0, 1]; the targets become (1 - e) y + e/K, as torch.nn.functional.cross_entropy.")
    else:
        targets = (f"    {target}: targets, broadcastable to the predictions.",)
        rest = ('    reduction: "mean" (default, over samples), "sum" or "none".', f"    {axis}: the class axis (default: the last).")
    return ("", "Args:") + (targets + preds if target_first else preds + targets) + rest


def class_axis_scaled(expr, bases):
    """``expr`` with rules.scale_free applied for each IndexedBase in ``bases``, and its name if it
    fired. Cached: every backend's renderer asks for the same class-axis loss, and each call proves
    homogeneity by simplification (0.3-2 s)."""
    fired = ()
    for base in bases:
        expr, did = scale_free(expr, base, scale_of(base))
        if did and "scale_free" not in fired:
            fired += ("scale_free",)
    expr, did = mean_inside(expr, M.K)
    if did:
        fired += ("mean_inside",)
    return expr, fired


def _class_axis_stable(expr, scale=True):
    """A class-axis activation's expression (or its VJP's) with its exponentials max-shifted and,
    with ``scale`` (not for Jacobians, whose (..., K, K) arrays the scale would not broadcast
    against), a sum of squares scaled by max |z|."""
    expr, fired = class_axis_scaled(expr, (M.ZV,)) if scale else (expr, ())
    fired = list(fired)
    new, did = logsumexp(expr, M.ZV, Z_MAX, Z_MIN)
    if did:
        fired.append("logsumexp")
    new2, did2 = max_shift(new, M.ZV, Z_MAX, Z_MIN)
    if did2:
        fired.append("max_shift")
    if did or did2:
        # the printers apply split_dominant to the array form (named here, for the docs)
        try:
            arr = to_array(new2, {M.I: None, M.KK: None})
        except ValueError:
            arr = None
        if arr is not None and split_dominant(shift_exponentials(arr)) != shift_exponentials(arr):
            fired.append("dominant_term")
    return new2, fired


def shift_exponentials(arr):
    """Every max-shifted exponential exp(c (u - max u)) of a class-axis array expression as
    exp_shifted(u) (c = 1) or exp_shifted(u, c): the runtimes evaluate u - max u exactly as a
    double-double pair and carry it through the weight c (a product, or a quotient for c = 1/T),
    since exp amplifies any rounding of its argument by the argument's size. softmin's
    exp(-z - max(-z)) is u = -z, c = 1. An identity: exp_shifted's definition, expanded."""

    def shifted(e):
        a = sp.expand(e.args[0])
        maxima = [m for m in a.atoms(axis_max)]
        if len(maxima) != 1:
            return None
        u = maxima[0].args[0]
        c = -a.coeff(maxima[0])
        if c == 0 or c.has(axis_max) or sp.expand(a - c * (u - maxima[0])) != 0:
            return None
        return exp_shifted(u) if c == 1 else exp_shifted(u, c)

    return arr.replace(lambda e: isinstance(e, sp.exp) and shifted(e) is not None, shifted)


def _is_shifted_exp(e):
    return isinstance(e, exp_shifted) or (isinstance(e, sp.exp) and e.has(axis_max))


def _largest_is_one(e):
    """exp(u - max u) (printed with the max), and exp_shifted with a weight (always shifted): the
    largest component is exp(0) = 1 exactly."""
    return isinstance(e, sp.exp) or (isinstance(e, exp_shifted) and len(e.args) == 2)


def always_shifted(arr):
    """exp_shifted(u) as exp_shifted(u, 1): shifted by the max whatever the size of u, for bodies
    that subtract the max outside the exponential too (log-sum-exp forms), so that both use the
    same M."""
    return arr.replace(lambda e: isinstance(e, exp_shifted) and len(e.args) == 1, lambda e: exp_shifted(e.args[0], sp.Integer(1)))


def split_dominant(arr):
    """The rule ``dominant_term`` for class-axis array expressions: sums of max-shifted
    exponentials E with their largest term taken out, where a difference would otherwise cancel.
    With m the position of the largest E_j (E_m = 1 after the shift) and R = E without it
    (drop_max), both identities for every m (one term of the sum written separately):

    - log(sum_j E_j) = log(E_m) + log1p(sum_j R_j / E_m). Where one logit dominates, sum_j E_j =
      1 + (others below an ulp) rounds to 1 and log_softmax's largest component becomes 0 instead
      of -(the others); log1p keeps them.
    - sum_j E_j X_j - X sum_j E_j = E_m (X_m - X) + sum_j R_j X_j - X sum_j R_j (and the same
      divided by sum_j E_j: X - sum_j E_j X_j / sum_j E_j). Where one logit dominates, softmax's
      VJP g_k - sum_j s_j g_j subtracts two nearly equal O(1) numbers for k = m (a true value
      of the size of the others, 1e-16 relative error of the terms: 1e15 ulps); in the split form
      X_m - X is exactly 0 there and the rest are products of the small R.
    - sum_j E_j = E_m + sum_j R_j where the sum is squared (a VJP's 1/(sum_j E_j)**2) or divides
      a term of a difference (log_softmax's VJP g - E sum(g)/sum_j E_j): the small terms are added
      to each other before E_m, one rounding near E_m instead of K - 1, which the square doubles
      and the difference amplifies (measured by actgen accuracy's grid: NumPy float64 softmax_vjp
      5.8 -> 3.5 ulp, log_softmax_vjp 4.6 -> 2.7).
    """
    def e_max(E):
        return sp.Integer(1) if _largest_is_one(E) else at_max(E, E)

    def split_log(e):
        E = e.args[0].args[0]
        em = e_max(E)
        R = axis_sum(drop_max(E))
        return log1p(R) if em == 1 else sp.log(em) + log1p(R / em)

    def is_log_sum(e):
        return isinstance(e, sp.log) and isinstance(e.args[0], axis_sum) and _is_shifted_exp(e.args[0].args[0])

    def pairs(add):
        """Split the first pair c sum(E X) and -c X sum(E) of ``add`` (after bringing it over a
        common denominator), or None."""
        num, den = sp.fraction(sp.together(add))
        num = sp.expand_mul(num)  # not sp.expand: exp(z - M) must stay one factor
        terms = sp.Add.make_args(num)
        for t in terms:
            for f in sp.Mul.make_args(t):
                if not (isinstance(f, axis_sum) and f.args[0].is_Mul):
                    continue
                for E in (g for g in f.args[0].args if _is_shifted_exp(g)):
                    X = f.args[0] / E
                    c = t / f
                    partner = sp.expand_mul(-c * X * axis_sum(E))
                    if partner in terms:
                        rest = sp.Add(*[u for u in terms if u != t and u != partner])
                        return (c * centered(E, X) + rest) / den  # centered: one node, nothing reorders it
        return None

    def is_split_add(e):
        return e.is_Add and e.has(axis_sum) and pairs(e) is not None

    def is_exp_sum(e):
        return isinstance(e, axis_sum) and _is_shifted_exp(e.args[0])

    def split_sum(e):
        E = e.args[0]
        return e_max(E) + axis_sum(drop_max(E))

    def is_amplified_power(e):
        # sum_j E_j squared (or its inverse square): the power doubles the sum's rounding
        return e.is_Pow and is_exp_sum(e.base) and e.exp.is_Integer and abs(e.exp) >= 2

    def is_difference_of_quotient(e):
        # X - Y / sum_j E_j: the difference amplifies the quotient's rounding
        return e.is_Add and any(f.is_Pow and f.exp == -1 and is_exp_sum(f.base) for t in e.args for f in sp.Mul.make_args(t))

    def split_in_terms(e):
        return sp.Add(*[t.replace(is_exp_sum, split_sum) for t in e.args])

    out = arr.replace(is_log_sum, split_log)
    out = out.replace(is_split_add, pairs)
    out = out.replace(is_amplified_power, lambda e: split_sum(e.base) ** e.exp)
    return out.replace(is_difference_of_quotient, split_in_terms)


def exp_degree(expr, arrays):
    """The largest total weight of exponentials of the ``arrays`` in any product within ``expr``
    (exp(z) counts 1, exp(2 z) and exp(z)**-2 count 2, a sum its largest term, log and class sums
    nothing more than their argument), or None when an exponential's weight is not known (a
    non-linear exponent, or an exponential inside another function)."""
    arrays = set(arrays)
    worst = [0]

    def deg(e):
        if not (e.free_symbols & arrays):
            d = 0
        elif isinstance(e, sp.exp):
            a = e.args[0]
            if not a.is_polynomial(*arrays) or sp.Poly(a, *(arrays & a.free_symbols)).total_degree() > 1:
                return None
            d = sum(abs(c) for t, c in a.as_coefficients_dict().items() if t in arrays)
        elif e.is_Pow:
            d = deg(e.base)
            if d is None or (d and not e.exp.is_number):
                return None
            d = abs(e.exp) * d
        elif e.is_Symbol:
            d = 0
        else:
            parts = [deg(a) for a in (e.args if not isinstance(e, sp.Piecewise) else [v for v, _ in e.args])]
            if any(p is None for p in parts):
                return None
            if e.is_Mul:
                d = sum(parts)
            elif e.is_Add or isinstance(e, (sp.Piecewise, axis_sum)):
                d = max(parts, default=0)
            elif isinstance(e, sp.log):
                d = 0  # log of a product of degree p: at most p (B + log K) in size
            else:
                return None if any(parts) else 0
        worst[0] = max(worst[0], d)
        return d

    return None if deg(expr) is None else worst[0]


# -- files -----------------------------------------------------------------------------------------


def header(comment, sources):
    text = f"Generated by actgen {__version__} from {', '.join(sources)}. Do not edit: run `actgen build`."
    if comment == "#":
        return f"# {text}"
    return f"<!-- {text} -->"



def _range_text(entry: Entry):
    prop = next((p for p in entry.properties if p.name == "range"), None)
    if prop is None or not prop.known:
        return "unknown" if prop is not None else ""
    return prop.value.text()


def split_derivative_latex(entry: Entry, render=None) -> str:
    """Both partial derivatives of a split activation f(a, b), as one line of LaTeX."""
    render = render or latex
    return r",\quad ".join(r"\frac{\partial f}{\partial %s} = %s" % (d.wrt, render(d.expr)) for d in entry.derivations if d.kind == "grad_half")


def render_cheatsheet(derived: Derived, package: str) -> str:
    spec = derived.spec
    acts = []
    for entry in derived.activations:
        act = spec.activation(entry.name)
        of = entry.get("grad_from_output")
        if act.split:
            deriv = split_derivative_latex(entry)
            rng = "(of a and b)"
        elif act.reduces:
            deriv = latex(entry.get("jacobian").expr)
            rng = _range_text(entry) + " (one value per row)"
        elif act.vector:
            deriv = latex(entry.get("jacobian").expr)
            rng = _range_text(entry)
            sums = next((p for p in entry.properties if p.name == "sums_to_one"), None)
            rng = f"{rng} each" + (", summing to 1" if sums is not None and sums.value is True else "")
        else:
            deriv = latex(entry.get("grad").expr)
            rng = _range_text(entry)
        acts.append(dict(
            name=act.name, title=act.prose.title, formula=latex(act.expr), derivative=deriv,
            from_output=f"${latex(of.expr)}$" if of is not None else ("needs input" if not act.vector else "see VJP"),
            range=rng, use=act.prose.use,
        ))
    losses = [dict(name=l.name, title=spec.loss(l.name).prose.title, formula=latex(spec.loss(l.name).expr), derivative=latex(l.get("loss_grad").expr), use=spec.loss(l.name).prose.use) for l in derived.losses]
    heads = {(h.activation, h.loss): h for h in derived.heads}
    tasks = []
    for t in spec.tasks:
        act = spec.activation(t.output) or next(a for a in spec.activations if t.output in a.aliases)
        parts = []
        for l in t.losses:
            h = heads.get((act.name, l))
            if h is not None:
                parts.append(f"`{h.name}`: ${latex(h.get('head_grad').expr)}$")
            else:
                parts.append(f"none needed (`{l}` on the raw outputs)")
        tasks.append(dict(title=t.title, output=act.prose.title, losses=" or ".join(spec.loss(l).prose.title for l in t.losses), head="; ".join(parts)))
    hidden = [a.prose.title for a in spec.activations if a.layer in ("hidden", "both")]
    output = [a.prose.title for a in spec.activations if a.layer in ("output", "both")]
    return environment().get_template("cheatsheet.md.j2").render(
        header=header("<!--", spec.sources), sources=spec.sources, package=package, activations=acts, losses=losses, tasks=tasks, hidden=hidden, output=output
    )


def render_properties(derived: Derived) -> str:
    """The activation × property table, with the reason for every value (and every unknown)."""
    spec = derived.spec
    rows, vector, undecided, general = [], [], [], []
    for entry in derived.activations:
        act = spec.activation(entry.name)
        if act.split:
            continue  # a function of two halves: the properties are those of functions of one input
        names = PROPERTY_VECTOR_NAMES if act.vector else PROPERTY_NAMES
        by_name = {p.name: p for p in entry.properties}
        props = [by_name[n] for n in names if n in by_name]
        notes = [dict(title=PROPERTY_TITLES[p.name], value=p.text(), reason=p.reason, general=p.general) for p in props]
        row = dict(name=act.name, title=act.prose.title, cells=[p.text() for p in props], notes=notes)
        (vector if act.vector else rows).append(row)
        undecided += [dict(name=act.name, property=PROPERTY_TITLES[p.name], reason=p.reason) for p in props if not p.known]
        general += [dict(name=act.name, property=PROPERTY_TITLES[p.name], text=p.general) for p in props if p.general]
    return environment().get_template("properties.md.j2").render(
        header=header("<!--", spec.sources), sources=spec.sources, columns=[PROPERTY_TITLES[n] for n in PROPERTY_NAMES],
        rows=rows, vector=vector, undecided=undecided, general=general,
    )


def _steps_view(steps):
    out = []
    for s in steps:
        text = latex(s.expr)
        if len(text) > 1500:  # very long intermediate forms are summarised; `actgen prove` shows all
            text = r"\text{(long expression, see actgen prove)}"
        out.append(dict(action=s.action, latex=text))
    return out


def proof_view(p):
    i = p.identity
    return dict(
        name=i.name, title=i.title, explain=i.explain, claim=i.claim, status=p.status,
        lhs=latex(i.lhs), rhs=latex(i.rhs),
        assumptions=[f"{latex(l)} = {latex(r)}" for l, r in i.assumptions],
        steps=_steps_view(p.steps),
    )


def render_identities(derived: Derived, proofs) -> str:
    spec = derived.spec
    return environment().get_template("identities.md.j2").render(
        header=header("<!--", spec.sources), sources=spec.sources, proofs=[proof_view(p) for p in proofs]
    )


def _primary(packages: dict[str, str]) -> str:
    """The package the sheets name: the NumPy one where it is built, else the first."""
    return packages.get("numpy") or next(iter(packages.values()))


def catalog(derived: Derived, packages: dict[str, str], proofs) -> dict:
    """Machine-readable summary of everything generated, for other tools."""
    spec = derived.spec
    package = _primary(packages)

    def params(entity):
        return [dict(name=p.name, default=p.default_float) for p in entity.params]

    def functions(entry):
        # the mixed and parameter second derivatives and the class-axis JVP serve the frameworks'
        # derivative rules only
        return {d.kind if d.kind not in ("grad_param", "loss_grad_param", "grad_half", "loss_grad_input") else f"grad_{d.wrt}": dict(name=d.name, latex=latex(d.expr), sympy=sp.sstr(d.expr), rules=list(d.rules))
                for d in entry.derivations if d.kind not in ("hessian", "jvp")}

    def props(entry):
        out = {}
        for p in entry.properties:
            out[p.name] = dict(value=(p.value.text() if hasattr(p.value, "text") else p.value), reason=p.reason) if p.known else dict(value="unknown", reason=p.reason)
            if p.general:
                out[p.name].update(general=p.general, general_reason=p.general_reason)
        return out

    acts = []
    for entry in derived.activations:
        a = spec.activation(entry.name)
        acts.append(dict(name=a.name, title=a.prose.title, vector=a.vector, reduces=a.reduces, split=a.split, domain=a.domain, layer=a.layer, aliases=list(a.aliases), params=params(a),
                         source=f"{a.location}", use=a.prose.use, pros=a.prose.pros, cons=a.prose.cons,
                         functions=functions(entry), properties=props(entry)))
    losses = []
    for entry in derived.losses:
        l = spec.loss(entry.name)
        losses.append(dict(name=l.name, title=l.prose.title, class_axis=l.class_axis, class_indices=l.class_indices, inputs=list(l.inputs), params=params(l), domain=dict(l.domain),
                           source=f"{l.location}", use=l.prose.use, pros=l.prose.pros, cons=l.prose.cons, functions=functions(entry)))
    heads = [dict(name=h.name, activation=h.activation, loss=h.loss, functions=functions(h)) for h in derived.heads]
    tasks = [dict(name=t.name, title=t.title, output=t.output, losses=list(t.losses), hidden=list(t.hidden), note=t.note) for t in spec.tasks]
    identities = [dict(**{k: v for k, v in proof_view(p).items() if k != "steps"}, steps=[s["action"] for s in proof_view(p)["steps"]]) for p in proofs]
    return dict(actgen=__version__, package=package, packages=dict(packages), sources=list(spec.sources), activations=acts, losses=losses, heads=heads, tasks=tasks, identities=identities)


def package_version(spec) -> str:
    """The generated packages' version: actgen's, with the spec's content hash as its local label
    (PEP 440), so two builds from different specs never share a version."""
    return f"{__version__}+spec.{spec.digest[:12]}" if spec.digest else __version__


def _catalog_records(derived: Derived, exported, aliases) -> list[dict]:
    """One record per exported function of a package: its entry, kind, what it computes, the
    spec's parameters with their defaults and, for activations, the derived properties."""
    spec = derived.spec
    exported = set(exported)
    records = {}
    for entry in derived.entries():
        if entry.kind == "activation":
            entities = (spec.activation(entry.name),)
        elif entry.kind == "loss":
            entities = (spec.loss(entry.name),)
        else:
            entities = (spec.activation(entry.activation), spec.loss(entry.loss))
        params = {p.name: p.default_float for e in entities for p in e.params}
        props = {p.name: (p.value.text() if hasattr(p.value, "text") else p.value) if p.known else "unknown" for p in entry.properties}
        for d in entry.derivations:
            if d.name not in exported or d.kind == "hessian":
                continue
            computes = f"grad_{d.wrt}" if d.kind in ("grad_param", "loss_grad_param", "grad_half", "loss_grad_input") else d.kind
            records[d.name] = dict(name=d.name, kind=entry.kind, entry=entry.name, computes=computes,
                                   params=params, properties=dict(sorted(props.items())), latex=latex(d.expr), same_as=None)
    for alias, target in sorted(aliases.items()):
        if alias in exported and target in records and alias not in records:
            records[alias] = {**records[target], "name": alias, "same_as": target}
    return [dict(sorted(records[name].items())) for name in sorted(records)]


def package_files(derived: Derived, target: str, package: str, exported, aliases=None) -> dict[str, str]:
    """The files every target's package has besides its code: ``_catalog.py`` (its functions as
    data, read by ``catalog()`` and ``__version__`` in ``__init__``) and ``pyproject.toml`` (so that
    ``pip install`` and ``pip install -e`` of the package folder work). ``exported``: the package's
    public function names; ``aliases``: other names -> the function they are another name or
    convention for."""
    import pprint

    from .backends import TARGETS

    spec = derived.spec
    records = _catalog_records(derived, exported, aliases or {})
    env = environment()
    return {
        f"{package}/_catalog.py": env.get_template("catalog.py.j2").render(
            header=header("#", spec.sources), package=package, version=package_version(spec),
            records=[pprint.pformat(r, width=100, sort_dicts=True) for r in records],
            kinds=sorted({r["kind"] for r in records})),
        f"{package}/pyproject.toml": env.get_template("pyproject.toml.j2").render(
            header=header("#", spec.sources), package=package, version=package_version(spec), target=TARGETS[target],
            sources=spec.sources),
    }


def render_all(derived: Derived, packages: dict[str, str], proofs=()) -> dict[str, str]:
    """Every file of a build: one package per target (``packages``: target name -> package name,
    see :mod:`actgen.backends`) and the sheets and catalog beside them."""
    from .backends import render_package

    files = {}
    for target, package in packages.items():
        files.update(render_package(target, derived, package))
    files["cheatsheet.md"] = render_cheatsheet(derived, _primary(packages))
    files["identities.md"] = render_identities(derived, proofs)
    files["catalog.json"] = json.dumps(catalog(derived, packages, proofs), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    files["properties.md"] = render_properties(derived)
    return files
