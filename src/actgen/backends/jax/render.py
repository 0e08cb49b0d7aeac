"""The JAX backend's renderer: view models for the ``actgen_jax`` templates.

Every elementwise function of the spec becomes a ``jax.custom_jvp`` whose JVP rule is the
derivative actgen derived (each parameter an ordinary argument with its own tangent), and whose
derivatives are themselves ``custom_jvp`` functions with the derived second derivatives as their
rules, so ``jax.grad(jax.grad(f))`` and ``jax.hessian`` use proven rules at both orders; reverse
mode transposes the (linear) JVP rules. Class-axis functions have the derived Jacobian-vector
product as their rule; losses and fused heads their derived gradient, contracted with the tangent.

Views hold printed bodies (:mod:`.printer`) and names; the templates lay out the rules and the
public functions around them.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import sympy as sp

from ... import model as M
from ...pipeline import Derived, Entry
from ...primitives import erfcx_table
from ...printing import COL, ROW, latex, to_array
from ...render import LOSS_BASES, class_axis_scaled, class_call, class_doc, class_keywords, example_literal, example_points, _class_axis_stable, _computed_as, _conventions, _defaults, _exact, _math, environment, header, package_files, sign_checks
from ..numpy.render import _table_view
from ..torch.render import Body, Public, _kw_only, _rules
from ..torch.render import _body as _torch_body
from ..torch.render import _class_axis_emit as _torch_class_axis_emit
from ..torch.render import _printer as _torch_printer
from ..torch.render import reduction_group as _torch_reduction_group
from ..torch.render import split_parts as _torch_split_parts
from .printer import ActgenJaxPrinter, emit


@dataclasses.dataclass(frozen=True)
class Rule:
    """A ``jax.custom_jvp`` function: its value is a body; its JVP rule, by ``kind``:
    ``sum`` -- the sum over arguments of derivative(*primals) * tangent (``derivatives``: one name
    per argument, a custom_jvp function or a body, or "None" where actgen derives none: a target);
    ``linear`` -- a body of (primals..., tangent) for the first argument (a Jacobian-vector product);
    ``per_sample`` -- as ``sum``, contracted over the class axis (a loss per sample)."""

    name: str
    args: tuple[str, ...]
    value: str
    derivatives: tuple[str, ...]
    summary: str
    kind: str = "sum"


@dataclasses.dataclass(frozen=True)
class Group:
    bodies: list
    rules: list
    publics: list


# -- printing --------------------------------------------------------------------------------------


# the torch renderer's printing steps, with the JAX printer
_printer = functools.partial(_torch_printer, printer_class=ActgenJaxPrinter)
_body = functools.partial(_torch_body, printer_class=ActgenJaxPrinter)
_class_axis_emit = functools.partial(_torch_class_axis_emit, printer_class=ActgenJaxPrinter)


TANH_SMALL_RADIUS = 0.55  # below it the runtime's tanh is a fitted odd polynomial
SINH_SMALL_RADIUS = 1.0  # and its sinh (above, exp(|x| - ln 2) - exp(-|x|)/2 cancels by less than a bit)


def _odd_small(name, radius):
    """A runtime function's polynomial near 0 (tanh, sinh): radius, centre and coefficients as exact
    float literals (the first one less 1: the runtime adds x itself)."""
    from ...series import odd_fit

    centre, coeffs = odd_fit(name, radius)
    return {"radius": repr(radius), "centre": repr(centre), "coeffs": [repr(coeffs[0] - 1)] + [repr(c) for c in coeffs[1:]]}


def _decimals(values, places=6, spread=1e-6):
    """The most decimal places (at most ``places``) at which no example value lies within
    ``spread`` (relative; about 8 float32 ulps) of a rounding boundary: float32 evaluation then
    prints the same digits as the true value (-3.9176985 at 6 places would not)."""
    for d in range(places, 1, -1):
        if all(round(v * (1 - spread), d) == round(v * (1 + spread), d) for v in map(float, values)):
            return d
    return 1


def _values(values, decimals=6):
    return repr([round(float(np.float32(v)), decimals) + 0.0 for v in values])


def _param_doc(params):
    return tuple(f"    {p.name}: parameter (default {p.default_float!r}): a Python number or an array broadcastable to z; "
                 "it may be traced and differentiated (its tangent contributes the derived derivative)." for p in params)


Z_DOC = ("    z: array of inputs (any shape and floating dtype; float16/bfloat16 are computed in float32 and rounded once;",
         "        integers become JAX's default floating dtype).")


# -- elementwise activations -----------------------------------------------------------------------


def split_group(entry: Entry, act: M.Activation) -> Group:
    """A split activation: a custom_jvp of the two halves whose rule is the sum of the derived
    partial derivatives times the halves' tangents (see the torch renderer's split_parts)."""
    bodies, publics = _torch_split_parts(entry, act, axis="axis", array="array", body=_body, apply="")
    pn = tuple(p.name for p in act.params)
    rule = Rule(f"_{act.name}_fn", ("a", "b") + pn, bodies[0].name, tuple(b.name for b in bodies[1:]) + ("None",) * len(pn),
                f"{act.name} of the two halves, with its derived partial derivatives as its JVP rule")
    first = publics[0]
    doc = first.doc_lines + ("", "A ``jax.custom_jvp`` function of the halves: its rule is the derived partial derivatives times the",
                             "halves' tangents; second derivatives differentiate the derived partial derivatives.")
    return Group(bodies, [rule], [dataclasses.replace(first, doc_lines=doc)] + publics[1:])


def reduction_group(entry: Entry, act: M.Activation) -> Group:
    """A row reduction: a custom_jvp whose rule is the derived JVP (the gradient contracted with
    the tangent over each row), NAME_grad and NAME_vjp (see the torch renderer's reduction_group)."""
    value, gbody, publics = _torch_reduction_group(entry, act, axis="axis", keep="keepdims", array="array", emit_class=_class_axis_emit, apply="")
    pn = tuple(p.name for p in act.params)
    jvp = entry.get("jvp")
    texpr, tfired = _class_axis_stable(jvp.expr)
    tbody = Body(f"_{act.name}_jvp_value", ("z",) + pn + ("t",), _class_axis_emit(texpr, {}, act.params), f"the JVP of {act.name} over the last axis", "z")
    rule = Rule(f"_{act.name}_fn", ("z",) + pn, value.name, (tbody.name,), f"{act.name} over the last axis, with the derived Jacobian-vector product as its JVP rule", "linear")
    first = publics[0]
    doc = first.doc_lines + ("", "A ``jax.custom_jvp`` function: its rule is the derived Jacobian-vector product",
                             *_math(r"\sum_k \frac{\partial f}{\partial z_k} t_k", jvp.expr), *_computed_as(tuple(tfired)),
                             "", "printed as jax.numpy operations linear in the tangent, so reverse mode transposes it and second",
                             "derivatives differentiate it.")
    publics = [dataclasses.replace(first, doc_lines=doc)] + publics[1:]
    return Group([dataclasses.replace(value, reshape="z"), gbody, tbody], [rule], publics)


def activation_group(entry: Entry, act: M.Activation) -> Group:
    if act.split:
        return split_group(entry, act)
    if act.reduces:
        return reduction_group(entry, act)
    if act.vector:
        return vector_group(entry, act)
    P = act.params
    n = act.name
    variables = ["z"] + [p.name for p in P]
    first = {v: entry.first_derivative(v) for v in variables}

    def hess(v, w):
        return entry.second_derivative(v, w, variables)

    def hess_body(v, w):
        d = hess(v, w)
        return f"_{d.name}_value" if d.kind == "hessian" else f"_{n}_d_z_z"

    fwd = entry.get("forward")
    bodies = [_body(f"_{n}_value", ["z"], fwd.expr, P, f"{n}(z)")]
    for v in variables:
        bodies.append(_body(f"_{n}_d_{v}", ["z"], first[v].expr, P, f"d {n} / d {v}"))
    done = set()
    for v in variables:
        for w in variables:
            d = hess(v, w)
            if d.name not in done:
                done.add(d.name)
                bodies.append(_body(hess_body(v, w), ["z"], d.expr, P, f"second derivative {d.name}"))

    rules = [Rule(f"_{n}_fn", tuple(variables), f"_{n}_value", tuple(f"_{n}_d_{v}_fn" for v in variables),
                  f"{n} with the derived first derivatives as its JVP rule")]
    for v in variables:
        rules.append(Rule(f"_{n}_d_{v}_fn", tuple(variables), f"_{n}_d_{v}", tuple(hess_body(v, w) for w in variables),
                          f"d {n} / d {v}, with the derived second derivatives as its JVP rule"))

    defaults = _defaults(P)
    call = ", ".join(["z"] + [f"_param({p.name}, z)" for p in P])
    conv = _conventions(act.expr, first["z"].expr, P)
    args_doc = ("", "Args:") + Z_DOC + _param_doc(P)

    def public(name, summary, label, d, fn_call, aliases=(), extra=()):
        values = [_exact(d.expr if d is not fwd else act.expr, {M.Z: sp.Float(v), **defaults}) for v in example_points(act)]
        return Public(
            name, "z" + _kw_only(P), summary,
            _math(label, d.expr if d is not fwd else act.expr) + _rules(d.rules, body=next(b for b in bodies if b.name == fn_call[1])) + extra + args_doc
            + ("", "Returns:", "    An array of z's shape (broadcast with the parameters') and dtype.", "", "Example:",
               f"    >>> [round(v, {_decimals(values)}) + 0.0 for v in {name}({example_literal(act, 'jnp.array', ', dtype=jnp.float32')}).tolist()]",
               f"    {_values(values, _decimals(values))}"),
            ("z, _dtype = _working(z)", f"return _result({fn_call[0]}, _dtype)"), aliases,
        )

    rule_doc = ("", "A ``jax.custom_jvp`` function: its JVP rule is the derived derivative (a parameter's tangent contributes",
                f"``{n}_grad_<parameter>`` times it), itself a custom_jvp function whose rule is the derived second derivative; reverse",
                "mode transposes the rule. Works under jit, vmap, grad, jacfwd and jacrev.")
    publics = [
        public(n, f"{act.prose.title}, elementwise, differentiable with actgen's derived derivatives.", "f(z)", fwd,
               (f"_{n}_fn({call})", f"_{n}_value"), act.aliases, rule_doc),
        public(f"{n}_grad", f"Derivative of {n} with respect to z, elementwise (itself differentiable with the derived second derivatives).",
               "f'(z)", first["z"], (f"_{n}_d_z_fn({call})", f"_{n}_d_z"), tuple(f"{a}_grad" for a in act.aliases), conv),
        public(f"{n}_grad2", f"Second derivative of {n} with respect to z, elementwise.", "f''(z)", entry.get("grad2"),
               (f"_{n}_d_z_z({call})", f"_{n}_d_z_z"), tuple(f"{a}_grad2" for a in act.aliases),
               ("", "At a kink the second derivative is that of the branch whose condition holds (no Dirac delta).",
                "Differentiating it differentiates the printed operations (there is no third derivative in the spec).")),
    ]
    for p in P:
        publics.append(public(f"{n}_grad_{p.name}", f"Derivative of {n} with respect to its parameter {p.name}, elementwise.",
                              r"\frac{\partial f}{\partial %s}" % latex(p.symbol), first[p.name],
                              (f"_{n}_d_{p.name}_fn({call})", f"_{n}_d_{p.name}")))
    return Group(bodies, rules, publics)


# -- class-axis activations ------------------------------------------------------------------------


def vector_group(entry: Entry, act: M.Activation) -> Group:
    n = act.name
    P = act.params
    pn = tuple(p.name for p in P)
    fwd, vjp, jac = entry.get("forward"), entry.get("vjp"), entry.get("jacobian")
    jvp = entry.get("jvp")
    expr, fired = _class_axis_stable(fwd.expr)
    vexpr, vfired = _class_axis_stable(vjp.expr)
    jexpr, jfired = _class_axis_stable(jac.expr, scale=False)
    texpr, tfired = _class_axis_stable(jvp.expr)
    value = Body(f"_{n}_value", ("z",) + pn, _class_axis_emit(expr, {M.I: None}, P), f"{n}(z) over the last axis")
    vbody = Body(f"_{n}_vjp_value", ("z",) + pn + ("g",), _class_axis_emit(vexpr, {M.KK: None}, P), f"the VJP of {n} over the last axis")
    tbody = Body(f"_{n}_jvp_value", ("z",) + pn + ("t",), _class_axis_emit(texpr, {M.I: None}, P), f"the JVP of {n} over the last axis")
    jarr = to_array(jexpr, {M.I: ROW, M.KK: COL})
    jprinter = ActgenJaxPrinter(axis="-1", jacobian=True, like="z")
    jprinter.scalars = frozenset(pn)
    jbody = Body(f"_{n}_jacobian_value", ("z", "_eye") + pn, emit(jarr, jprinter),
                 f"the Jacobian of {n}", like="(z[..., None] * _eye)")
    rules = [Rule(f"_{n}_fn", ("z",) + pn, value.name, (tbody.name,),
                  f"{n} over the last axis, with the derived Jacobian-vector product as its JVP rule", "linear")]
    axis_doc = ("    axis: the class axis (default: the last).",) + tuple(f"    {p.name}: parameter (default {p.default_float!r}); not differentiated (a tangent for it raises ValueError)." for p in P)
    kw = _kw_only(P)
    call = "".join(f", _param({p}, zl)" for p in pn)
    publics = [
        Public(n, "z, axis=-1" + kw, f"{act.prose.title} over the class axis ``axis``, with the derived Jacobian-vector product as its JVP rule.",
               _math("f(z)_i", act.expr) + _computed_as(tuple(fired)) + ("", "Args:", "    z: logits, classes along ``axis``.") + axis_doc
               + ("", "A ``jax.custom_jvp`` function: its rule is the derived Jacobian-vector product",
                  *_math(r"\left(J t\right)_i", jvp.expr), *_computed_as(tuple(tfired)),
                  "", "printed as jax.numpy operations linear in the tangent, so reverse mode transposes it and second",
                  "derivatives differentiate it. ``" + n + "_vjp`` is the derived vector-Jacobian product itself."),
               ("z, _dtype = _working(z)", "zl = _class_last(z, axis)", f"return _result(_class_back(_{n}_fn(zl{call}), z, axis), _dtype)")),
        Public(f"{n}_vjp", "z, g, axis=-1" + kw, f"Vector-Jacobian product of {n}: the gradient with respect to z given g, the gradient with respect to its output.",
               _math(r"\left(g^\top J\right)_k", vjp.expr) + _computed_as(tuple(vfired)) + ("", "Args:", "    z: logits, classes along ``axis``.", "    g: gradient with respect to the output, broadcastable to z.") + axis_doc,
               ("z, _dtype = _working(z)", "g = jnp.broadcast_to(_like(g, z), z.shape)", "zl, gl = _class_last(z, axis), _class_last(g, axis)",
                f"return _result(_class_back({vbody.name}(zl{call}, gl), z, axis), _dtype)")),
        Public(f"{n}_jacobian", "z" + kw, f"Jacobian of {n} over the last axis: J[..., i, k] = d f_i / d z_k.",
               _math(r"J_{ik}", jac.expr) + _computed_as(tuple(jfired)) + ("", "Args:", "    z: logits, classes along the last axis.") + axis_doc[1:] + ("", "Returns:", "    An array of shape z.shape + (K,)."),
               ("z, _dtype = _working(z)", "if z.ndim == 0:", f"    raise ValueError('{n}_jacobian needs z with a class axis (the last); got a 0-d array')",
                "_eye = jnp.eye(z.shape[-1], dtype=z.dtype)", f"return _result({jbody.name}(z, _eye{''.join(f', _param({p}, z)' for p in pn)}), _dtype)")),
    ]
    return Group([value, vbody, tbody, jbody], rules, publics)


# -- losses and heads ------------------------------------------------------------------------------


def _reduction_doc(first="predictions", second="targets"):
    return ("", "Args:", f"    {first}: predictions (any shape and floating dtype).", f"    {second}: targets, broadcastable to {first} (not differentiated:",
            "        a tangent for them raises ValueError).", '    reduction: "mean" (default), "sum" or "none".')


def loss_group(entry: Entry, loss: M.Loss) -> Group:
    n = loss.name
    P = loss.params
    value, grad = entry.get("loss"), entry.get("loss_grad")
    gparams = {d.wrt: d for d in entry.derivations if d.kind == "loss_grad_param"}
    args = ("y_hat", "y") + tuple(p.name for p in P)
    call = ", ".join(["y_hat", "y"] + [f"_param({p.name}, y_hat)" for p in P])
    prologue = ("_check_reduction(reduction)", "y_hat, _dtype = _working(predictions)", "y = _like(targets, y_hat)", *sign_checks(P, n))
    mapping = ("", "The argument order is (predictions, targets), as PyTorch's (input, target) and optax's losses; the NumPy package's",
               f"``{n}(y_true, y_pred)`` takes them the other way round. Parameters other than the targets may be differentiated",
               "where actgen derived their gradient.")
    if loss.class_axis:
        vb = Body(f"_{n}_value", args, emit(to_array(class_axis_scaled(value.expr, LOSS_BASES)[0], {}, "y_hat"), _printer("y_hat", P)), f"{n} per sample (classes last)", "y_hat")
        gb = Body(f"_{n}_d_y_hat", args, emit(to_array(class_axis_scaled(grad.expr, LOSS_BASES)[0], {M.KK: None}, "y_hat"), _printer("y_hat", P)), f"d {n} / d y_hat (classes last)")
        pbodies = [Body(f"_{n}_d_{p.name}", args, emit(to_array(class_axis_scaled(gparams[p.name].expr, LOSS_BASES)[0], {}, "y_hat"), _printer("y_hat", P)),
                        f"d {n} / d {p.name} per sample (classes last)", "y_hat") for p in P if p.name in gparams]
        derivs = (gb.name, "None") + tuple(f"_{n}_d_{p.name}" if p.name in gparams else "None" for p in P)
        rule = Rule(f"_{n}_fn", args, vb.name, derivs, f"{n} per sample, with the derived gradients as its JVP rule", "per_sample")
        lines = (*prologue[:2], f"y_hat, y, _keep = _class_inputs(y_hat, targets, {class_call(loss, 'axis', n)})", *prologue[3:],
                 f"return _result(_class_reduce(_{n}_fn({call}), reduction, _keep), _dtype)")
        publics = [Public(n, 'predictions, targets, reduction="mean", axis=-1' + _kw_only(P) + class_keywords(loss, not P),
                          f"{loss.prose.title} over the class axis ``axis``, reduced over samples, with the derived gradient as its JVP rule.",
                          _math(r"L(y, \hat{y})", loss.expr) + class_doc(loss, "predictions", "targets", "axis", "any floating dtype") + tuple(f"    {p.name}: parameter (default {p.default_float!r})." for p in P) + mapping, lines)]
        return Group([vb, gb] + pbodies, [rule], publics)
    ins = tuple(loss.inputs)
    arrays = ["y_hat", "y", *ins]
    args = tuple(arrays) + tuple(p.name for p in P)
    call = ", ".join(arrays + [f"_param({p.name}, y_hat)" for p in P])
    prologue = prologue[:3] + tuple(f"{x} = _like({x}, y_hat)" for x in ins) + prologue[3:]
    vb = _body(f"_{n}_value", arrays, value.expr, P, f"{n} per element")
    gb = _body(f"_{n}_d_y_hat", arrays, grad.expr, P, f"d {n} / d y_hat")
    ibodies = [_body(f"_{n}_d_{d.wrt}", arrays, d.expr, P, f"d {n} / d {d.wrt}") for d in entry.derivations if d.kind == "loss_grad_input"]
    pbodies = [_body(f"_{n}_d_{p.name}", arrays, gparams[p.name].expr, P, f"d {n} / d {p.name}") for p in P if p.name in gparams]
    derivs = (gb.name, "None") + tuple(b.name for b in ibodies) + tuple(f"_{n}_d_{p.name}" if p.name in gparams else "None" for p in P)
    rule = Rule(f"_{n}_fn", args, vb.name, derivs, f"{n} per element, with the derived gradient as its JVP rule")
    lines = prologue + (f"return _result(_reduce(_{n}_fn({call}), reduction), _dtype)",)
    inputs_doc = tuple(f"    {x}: the further input {x} of the loss, broadcastable to predictions; differentiated with its derived gradient." for x in ins)
    publics = [Public(n, "predictions, targets, " + "".join(f"{x}, " for x in ins) + 'reduction="mean"' + _kw_only(P),
                      f"{loss.prose.title}, elementwise, then reduced, with the derived gradient as its JVP rule.",
                      _math(r"L(y, \hat{y})", loss.expr) + _rules(value.rules, body=vb) + _math(r"\frac{\partial L}{\partial \hat{y}}", grad.expr)
                      + _reduction_doc() + inputs_doc + tuple(f"    {p.name}: parameter (default {p.default_float!r})." for p in P) + mapping, lines)]
    return Group([vb, gb] + ibodies + pbodies, [rule], publics)


def optax_names(act: M.Activation, loss: M.Loss) -> tuple[str, ...]:
    """optax's names for a fused head, from its activation: an elementwise head is optax's
    ``<activation>_binary_cross_entropy(logits, labels)``, a class-axis one its
    ``<activation>_cross_entropy(logits, labels)`` (probabilities) and
    ``<activation>_cross_entropy_with_integer_labels(logits, labels)``."""
    if loss.class_axis:
        return (f"{act.name}_cross_entropy", f"{act.name}_cross_entropy_with_integer_labels")
    return (f"{act.name}_binary_cross_entropy",)


def head_group(entry: Entry, act: M.Activation, loss: M.Loss, optax=()) -> Group:
    """``optax``: the optax-style names this head provides (see :func:`optax_names`; empty where
    another head took them)."""
    n = entry.name
    value, grad = entry.get("head"), entry.get("head_grad")
    prologue = ("_check_reduction(reduction)", "z, _dtype = _working(logits)")
    if loss.class_axis:
        torch_name = "torch.nn.functional.cross_entropy(input, target)"
    else:
        torch_name = "torch.nn.functional.binary_cross_entropy_with_logits(input, target)"
    mapping = ("", f"Conventions: (logits, targets) as PyTorch's ``{torch_name}``; the NumPy package's ``{n}(y_true, logits)`` takes",
               "them the other way round" + (f"; optax's ``{'``, ``'.join(optax)}`` (also in this package) take (logits, labels) and" if optax else "."),
               *(("return the loss per " + ("sample" if loss.class_axis else "element") + ", unreduced.",) if optax else ()))
    if loss.class_axis:
        vexpr, vf = _class_axis_stable(value.expr)
        gexpr, gf = _class_axis_stable(grad.expr)
        vb = Body(f"_{n}_value", ("z", "y"), _class_axis_emit(vexpr, {}), f"{n} per sample (classes last)", "z")
        gb = Body(f"_{n}_d_z", ("z", "y"), _class_axis_emit(gexpr, {M.KK: None}), f"d {n} / d z (classes last)")
        rule = Rule(f"_{n}_fn", ("z", "y"), vb.name, (gb.name, "None"), f"{n} per sample, with the derived gradient as its JVP rule", "per_sample")
        lines = prologue + (f"z, y, _keep = _class_inputs(z, targets, {class_call(loss, 'axis', n)})",
                            f"return _result(_class_reduce(_{n}_fn(z, y), reduction, _keep), _dtype)")
        doc = (_math("L(y, z)", value.expr) + _computed_as(tuple(vf)) + _math(r"\frac{\partial L}{\partial z_k}", grad.expr) + _computed_as(tuple(gf))
               + class_doc(loss, "logits", "targets", "axis", "any floating dtype") + mapping)
        publics = [Public(n, 'logits, targets, reduction="mean", axis=-1' + class_keywords(loss, True), f"{loss.prose.title} of {act.name}(logits), fused, computed from the logits.", doc, lines)]
        if optax:
            probs, integer = optax
            publics.append(Public(probs, "logits, labels, axis=-1", f"{loss.prose.title} of {act.name}(logits) per sample, in optax's convention: ``{n}(logits, labels, reduction=\"none\", axis=axis)``.",
                                  ("", "Args:", "    logits: scores, classes along ``axis``.", "    labels: class probabilities, broadcastable to logits.", "",
                                   "Returns:", "    The loss per sample (the logits' shape without ``axis``).", "", f"Same derived rules as ``{n}``."),
                                  (f"return {n}(logits, labels, reduction=\"none\", axis=axis)",)))
            publics.append(Public(integer, "logits, labels, axis=-1", f"{loss.prose.title} of {act.name}(logits) per sample, for integer class labels, in optax's convention.",
                                  ("", "Args:", "    logits: scores, classes along ``axis``.", "    labels: integer class indices, of the logits' shape without ``axis``.", "",
                                   "Returns:", "    The loss per sample.", "", f"Same derived rules as ``{n}`` (the labels become one-hot probabilities)."),
                                  ("labels = _integer_labels(labels)", f"return {n}(logits, labels, reduction=\"none\", axis=axis{', ignore_index=None' if loss.class_indices else ''})")))
        return Group([vb, gb], [rule], publics)
    vb = _body(f"_{n}_value", ["z", "y"], value.expr, (), f"{n} per element")
    gb = _body(f"_{n}_d_z", ["z", "y"], grad.expr, (), f"d {n} / d z")
    rule = Rule(f"_{n}_fn", ("z", "y"), vb.name, (gb.name, "None"), f"{n} per element, with the derived gradient as its JVP rule")
    lines = prologue + ("y = _like(targets, z)", f"return _result(_reduce(_{n}_fn(z, y), reduction), _dtype)")
    doc = (_math("L(y, z)", value.expr) + _rules(value.rules, body=vb) + _math(r"\frac{\partial L}{\partial z}", grad.expr) + _rules(grad.rules, body=gb)
           + ("", "Args:", "    logits: scores (any shape and floating dtype).", "    targets: targets, broadcastable to logits.",
              '    reduction: "mean" (default), "sum" or "none".') + mapping)
    publics = [Public(n, 'logits, targets, reduction="mean"', f"{loss.prose.title} of {act.name}(logits), fused, computed from the logits.", doc, lines)]
    for alias in optax:
        publics.append(Public(alias, "logits, labels", f"{loss.prose.title} of {act.name}(logits) per element, in optax's convention: ``{n}(logits, labels, reduction=\"none\")``.",
                              ("", "Args:", "    logits: scores.", "    labels: targets, broadcastable to logits.", "", "Returns:", "    The loss per element, unreduced.",
                               "", f"Same derived rules as ``{n}``."),
                              (f"return {n}(logits, labels, reduction=\"none\")",)))
    return Group([vb, gb], [rule], publics)


def _head_groups(derived: Derived) -> list[Group]:
    spec = derived.spec
    taken, groups = set(), []
    for e in derived.heads:
        act, loss = spec.activation(e.activation), spec.loss(e.loss)
        names = optax_names(act, loss)
        clash = taken & set(names) or any(spec_has(derived, name) for name in names)
        taken |= set(names)
        groups.append(head_group(e, act, loss, () if clash else names))
    return groups


def spec_has(derived: Derived, name: str) -> bool:
    """A name the spec's own entries already use (an optax-style alias never shadows one)."""
    return any(e.name == name for e in (*derived.activations, *derived.losses, *derived.heads))


# -- files -----------------------------------------------------------------------------------------


def render_package(derived: Derived, package: str) -> dict[str, str]:
    spec = derived.spec
    env = environment("templates", __package__)
    h = header("#", spec.sources)
    groups = {
        "activations": ("Activation functions, their derivatives and second derivatives, as jax.custom_jvp functions.",
                        [activation_group(e, spec.activation(e.name)) for e in derived.activations]),
        "losses": ("Loss functions with the derived gradient as their JVP rule, in (predictions, targets) order.",
                   [loss_group(e, spec.loss(e.name)) for e in derived.losses]),
        "heads": ("Fused output heads on logits, with the derived gradient as their JVP rule, and optax's names for them.",
                  _head_groups(derived)),
    }
    files, modules, names, aliases = {}, {}, [], {}
    for module, (doc, gs) in groups.items():
        if not gs:
            continue
        bodies = [b for g in gs for b in g.bodies]
        rules = [r for g in gs for r in g.rules]
        publics = [p for g in gs for p in g.publics]
        files[f"{package}/{module}.py"] = env.get_template("module.py.j2").render(header=h, doc=doc, bodies=bodies, rules=rules, publics=publics)
        exported = sorted({p.name for p in publics} | {a for p in publics for a in p.aliases})
        modules[module] = exported
        names += exported
        aliases.update({a: p.name for p in publics for a in p.aliases})
    for e in derived.heads:  # optax's names: another convention of the head they were given to
        for name in optax_names(spec.activation(e.activation), spec.loss(e.loss)):
            aliases.setdefault(name, e.name)
    files.update(package_files(derived, "jax", package, names, aliases))
    files[f"{package}/_runtime.py"] = env.get_template("runtime.py.j2").render(header=h, erfcx=_table_view(erfcx_table()), tanh_small=_odd_small("tanh", TANH_SMALL_RADIUS), sinh_small=_odd_small("sinh", SINH_SMALL_RADIUS))
    files[f"{package}/__init__.py"] = env.get_template("init.py.j2").render(
        header=h, package=package, sources=spec.sources, modules=sorted(modules.items()), all_names=sorted(names))
    return files


__all__ = ["render_package", "optax_names"]
