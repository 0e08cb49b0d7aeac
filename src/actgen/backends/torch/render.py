"""The PyTorch backend's renderer: view models for the ``actgen_torch`` templates.

Every elementwise function of the spec becomes a ``torch.autograd.Function`` whose backward is
the derivative actgen derived (not autograd's tape of the formula), and whose backward is itself
a Function with the derived second derivatives as its backward, so double backward uses proven
rules at both orders. Class-axis functions, losses and fused heads have the derived gradient (or
vector-Jacobian product) as their backward, printed as differentiable torch operations.

Views hold printed bodies (:mod:`.printer`) and names; the templates lay out the classes and the
public functions around them.
"""
from __future__ import annotations

import dataclasses
import keyword
import re

import sympy as sp

from ... import model as M
from ...derive import Y_OUT
from ...pipeline import Derived, Entry
from ...primitives import axis_max, erfcx_table
from ...printing import COL, ROW, Emitted, latex, to_array
from ...render import (LOSS_BASES, class_axis_scaled, class_call, class_doc, class_keywords, example_literal, example_points, always_shifted, shift_exponentials, split_dominant, _class_axis_stable, _computed_as, _conventions, _defaults, _exact, _math,
                       environment, header, package_files, sign_checks)
from ..numpy.render import _table_view
from .printer import ActgenTorchPrinter, emit


@dataclasses.dataclass(frozen=True)
class Body:
    """A private helper computing one expression from tensors (and parameters)."""

    name: str
    args: tuple[str, ...]
    emitted: Emitted
    summary: str
    reshape: str = ""  # a class-axis reduction: the result reshaped to the input's batch shape
    like: str = ""  # code of a tensor of the result's shape (default: the first argument)


@dataclasses.dataclass(frozen=True)
class Gradient:
    """How a Function's backward computes the gradient for one of its inputs: g times another
    Function (``function``) or body (``body``), summed to the input's shape; or nothing."""

    kind: str  # function | body | vjp (a body of the inputs and g) | none
    target: str = ""
    broadcast_g: bool = False  # a per-sample g against a class axis: g[..., None]


@dataclasses.dataclass(frozen=True)
class FunctionClass:
    """A torch.autograd.Function: forward is a body, backward one Gradient per input."""

    name: str
    args: tuple[str, ...]
    forward: str
    gradients: tuple[Gradient, ...]
    summary: str
    from_output: str = ""  # a body of the output computing the first derivative exactly, if any
    result_name: str = ""


@dataclasses.dataclass(frozen=True)
class Public:
    name: str
    signature: str
    summary: str
    doc_lines: tuple[str, ...]
    lines: tuple[str, ...]  # the function's code
    aliases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModuleView:
    name: str  # class name in actgen_torch.nn
    function: str  # the functional form it calls
    summary: str
    params: tuple[tuple[str, float], ...]  # constructor arguments (name, default)
    learnable: tuple[str, ...] = ()  # parameters held as nn.Parameter, one per channel
    kind: str = "activation"  # activation | vector | reduction | loss | class_loss | head | class_head
    aliases: tuple[str, ...] = ()
    class_indices: bool = False  # a class-axis loss or head that takes integer class indices (M.Loss.class_indices)
    inputs: tuple[str, ...] = ()  # a loss's further prediction inputs (M.Loss.inputs), after the target

    @property
    def module(self):
        """The package module that defines the functional form."""
        return {"activation": "activations", "vector": "activations", "reduction": "activations", "split": "activations", "loss": "losses", "class_loss": "losses"}.get(self.kind, "heads")


@dataclasses.dataclass(frozen=True)
class Group:
    bodies: list
    classes: list
    publics: list
    modules: list


# -- names -----------------------------------------------------------------------------------------


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _title_class(title: str) -> str:
    """A class name from a display title: 'Leaky ReLU' -> 'LeakyReLU', 'SiLU (swish)' -> 'SiLU'."""
    words = re.split(r"[\s\-]+", title.split("(")[0].strip())
    return "".join(w[:1].upper() + w[1:] for w in words if w and re.fullmatch(r"\w+", w))


def class_names(entries) -> dict[str, str]:
    """entry name -> nn class name: from the title where that gives an identifier that no earlier
    entry took, else from the entry's name (GELU, then its tanh approximation: 'GeluTanh')."""
    out, taken = {}, set()
    for name, title in entries:
        c = _title_class(title)
        if not (c.isidentifier() and not keyword.iskeyword(c) and c[:1].isupper()) or c in taken:
            c = camel(name)
        taken.add(c)
        out[name] = c
    return out


# -- printing --------------------------------------------------------------------------------------


def _printer(like, params=(), axis="-1", jacobian=False, printer_class=ActgenTorchPrinter):
    printer = printer_class(axis=axis, jacobian=jacobian, like=like)
    printer.scalars = frozenset(p.name for p in params)
    return printer


def _body(name, args, expr, params, summary, like=None, printer_class=ActgenTorchPrinter):
    return Body(name, tuple(args) + tuple(p.name for p in params), emit(expr, _printer(like or args[0], params, printer_class=printer_class)), summary)


def _class_axis_emit(stable, free, params=(), like="z", printer_class=ActgenTorchPrinter):
    """A class-axis body: every exp(z - M) becomes the runtime's compensated _exp_shifted."""
    arr = to_array(stable, free)
    shifted = shift_exponentials(arr)
    # a shift outside exp(z - M) too (log-sum-exp forms): the same M in both (always_shifted), and
    # sums with their largest term taken out where a difference would cancel (split_dominant)
    return emit(split_dominant(always_shifted(shifted) if shifted.has(axis_max) else shifted), _printer(like, params, printer_class=printer_class))


def _rules(*derivation_rules, body=None):
    fired = []
    for rules in derivation_rules:
        fired += [r for r in rules if r not in fired]
    if body is not None:
        fired += [r for r in body.emitted.rules if r not in fired]
    return _computed_as(tuple(fired))


def _values(values):
    return repr([round(float(v), 6) + 0.0 for v in values])


def _kw(params):
    return "".join(f", {p.name}={p.default_float!r}" for p in params)


def _kw_only(params):
    return (", *" + _kw(params)) if params else ""


def _param_doc(params):
    return tuple(f"    {p.name}: parameter (default {p.default_float!r}): a Python number or a tensor broadcastable to z; "
                 "a tensor with requires_grad gets the derived gradient." for p in params)


Z_DOC = ("    z: tensor of inputs (any shape, device and floating dtype; float16/bfloat16 are computed in float32 and "
         "rounded once; integers become the default dtype).",)


# -- elementwise activations -----------------------------------------------------------------------


def _exact_output_form(of, params) -> bool:
    """The derivative from the output is exact (it can replace the input form without loss) when
    it is a selection among numbers and parameters: relu, leaky_relu, hard_tanh. Forms such as
    y (1 - y) lose the tails where y rounds to a constant (sigmoid at z > 37 in float64)."""
    names = {p.symbol for p in params}
    return isinstance(of.expr, sp.Piecewise) and all(v.free_symbols <= names for v, _ in of.expr.args)


def activation_group(entry: Entry, act: M.Activation) -> Group:
    if act.split:
        return torch_split_group(entry, act)
    if act.reduces:
        return torch_reduction_group(entry, act)
    if act.vector:
        return vector_group(entry, act)
    P = act.params
    n = act.name
    variables = ["z"] + [p.name for p in P]
    first = {v: entry.first_derivative(v) for v in variables}

    def hess(v, w):
        return entry.second_derivative(v, w, variables)

    fwd = entry.get("forward")
    bodies = [_body(f"_{n}_value", ["z"], fwd.expr, P, f"{n}(z)")]
    for v in variables:
        bodies.append(_body(f"_{n}_d_{v}", ["z"], first[v].expr, P, f"d {n} / d {v}"))
    done = set()
    for v in variables:
        for w in variables:
            d = hess(v, w)
            if d.name in done:
                continue
            done.add(d.name)
            bodies.append(_body(f"_{d.name}_value" if d.kind == "hessian" else f"_{n}_d_z_z", ["z"], d.expr, P, f"second derivative {d.name}"))

    def hess_body(v, w):
        d = hess(v, w)
        return f"_{d.name}_value" if d.kind == "hessian" else f"_{n}_d_z_z"

    of = entry.get("grad_from_output")
    from_output = ""
    if of is not None and _exact_output_form(of, P):
        bodies.append(_body(f"_{n}_from_output", ["y"], of.expr.xreplace({Y_OUT: sp.Symbol("y", real=True)}), P, f"d {n} / d z from y = {n}(z)"))
        from_output = f"_{n}_from_output"

    classes = [FunctionClass(
        f"_{n}_fn", tuple(variables), f"_{n}_value",
        tuple(Gradient("function", f"_{n}_d_{v}_fn") for v in variables),
        f"{n} with the derived derivatives as its backward", from_output,
    )]
    for v in variables:
        classes.append(FunctionClass(
            f"_{n}_d_{v}_fn", tuple(variables), f"_{n}_d_{v}",
            tuple(Gradient("body", hess_body(v, w)) for w in variables),
            f"d {n} / d {v}, with the derived second derivatives as its backward",
        ))

    defaults = _defaults(P)
    call = ", ".join(["z"] + [f"_param({p.name}, z)" for p in P])
    prologue = ("z, _dtype = _working(z)",)
    example = example_literal(act, "torch.tensor", ", dtype=torch.float64")
    conv = _conventions(act.expr, first["z"].expr, P)
    args_doc = ("", "Args:") + Z_DOC + _param_doc(P)

    def public(name, summary, label, d, fn_call, aliases=(), extra=()):
        values = [_exact(d.expr if d is not fwd else act.expr, {M.Z: sp.Float(v), **defaults}) for v in example_points(act)]
        return Public(
            name, "z" + _kw_only(P), summary,
            _math(label, d.expr if d is not fwd else act.expr) + _rules(d.rules, body=next(b for b in bodies if b.name == fn_call[1])) + extra + args_doc
            + ("", "Returns:", "    A tensor of z's shape, dtype and device.", "", "Example:",
               f"    >>> [round(v, 6) + 0.0 for v in {name}({example}).tolist()]", f"    {_values(values)}"),
            prologue + (f"return _result({fn_call[0]}, _dtype)",), aliases,
        )

    saved = ("", "Autograd saves one tensor for backward: " + ("the output, where no parameter needs a gradient (the derivative from "
             "the output is exact here), else the input." if from_output else "the input (the backward evaluates the derived "
             "derivative at it)."), "Double backward uses the derived second derivative.")
    publics = [
        public(n, f"{act.prose.title}, elementwise, differentiable with actgen's derived backward.", "f(z)", fwd,
               (f"_{n}_fn.apply({call})", f"_{n}_value"), act.aliases, saved),
        public(f"{n}_grad", f"Derivative of {n} with respect to z, elementwise (itself differentiable with the derived second derivative).",
               "f'(z)", first["z"], (f"_{n}_d_z_fn.apply({call})", f"_{n}_d_z"), tuple(f"{a}_grad" for a in act.aliases), conv),
        public(f"{n}_grad2", f"Second derivative of {n} with respect to z, elementwise.", "f''(z)", entry.get("grad2"),
               (f"_{n}_d_z_z({call})", f"_{n}_d_z_z"), tuple(f"{a}_grad2" for a in act.aliases),
               ("", "At a kink the second derivative is that of the branch whose condition holds (no Dirac delta).")),
    ]
    for p in P:
        publics.append(public(f"{n}_grad_{p.name}", f"Derivative of {n} with respect to its parameter {p.name}, elementwise.",
                              r"\frac{\partial f}{\partial %s}" % latex(p.symbol), first[p.name],
                              (f"_{n}_d_{p.name}_fn.apply({call})", f"_{n}_d_{p.name}")))
    return Group(bodies, classes, publics, [])


# -- class-axis activations ------------------------------------------------------------------------


def vector_group(entry: Entry, act: M.Activation) -> Group:
    n = act.name
    P = act.params
    pn = tuple(p.name for p in P)
    fwd, vjp, jac = entry.get("forward"), entry.get("vjp"), entry.get("jacobian")
    expr, fired = _class_axis_stable(fwd.expr)
    vexpr, vfired = _class_axis_stable(vjp.expr)
    jexpr, jfired = _class_axis_stable(jac.expr, scale=False)
    value = Body(f"_{n}_value", ("z",) + pn, _class_axis_emit(expr, {M.I: None}, P), f"{n}(z) over the last axis")
    vbody = Body(f"_{n}_vjp_value", ("z",) + pn + ("g",), _class_axis_emit(vexpr, {M.KK: None}, P), f"the VJP of {n} over the last axis")
    jarr = to_array(jexpr, {M.I: ROW, M.KK: COL})
    jprinter = ActgenTorchPrinter(axis="-1", jacobian=True, like="z")
    jprinter.scalars = frozenset(pn)
    jbody = Body(f"_{n}_jacobian_value", ("z",), emit(jarr, jprinter), f"the Jacobian of {n}")
    classes = [FunctionClass(f"_{n}_fn", ("z",) + pn, value.name, (Gradient("vjp", vbody.name),) + tuple(Gradient("none") for _ in P),
                             f"{n} over the last axis, with the derived vector-Jacobian product as its backward")]
    dim_doc = ("    dim: the class axis (default: the last).",) + tuple(f"    {p.name}: parameter (default {p.default_float!r}); not differentiated." for p in P)
    kw = _kw_only(P)
    call = "".join(f", _param({p}, zl)" for p in pn)
    publics = [
        Public(n, "z, dim=-1" + kw, f"{act.prose.title} over the class axis ``dim``, with the derived vector-Jacobian product as its backward.",
               _math("f(z)_i", act.expr) + _computed_as(tuple(fired)) + ("", "Args:", "    z: logits, classes along ``dim``.") + dim_doc
               + ("", "Autograd saves the input; the backward is the derived VJP, printed as differentiable torch operations, so",
                  "double backward differentiates the derived VJP."),
               ("z, _dtype = _working(z)", "zl = _class_last(z, dim)", f"return _result(_class_back(_{n}_fn.apply(zl{call}), z, dim), _dtype)")),
        Public(f"{n}_vjp", "z, g, dim=-1" + kw, f"Vector-Jacobian product of {n}: the gradient with respect to z given g, the gradient with respect to its output.",
               _math(r"\left(g^\top J\right)_k", vjp.expr) + _computed_as(tuple(vfired)) + ("", "Args:", "    z: logits, classes along ``dim``.", "    g: gradient with respect to the output, broadcastable to z.") + dim_doc,
               ("z, _dtype = _working(z)", "g = _like(g, z).expand_as(z)", "zl, gl = _class_last(z, dim), _class_last(g, dim)",
                f"return _result(_class_back({vbody.name}(zl{call}, gl), z, dim), _dtype)")),
        Public(f"{n}_jacobian", "z" + kw, f"Jacobian of {n} over the last axis: J[..., i, k] = d f_i / d z_k.",
               _math(r"J_{ik}", jac.expr) + _computed_as(tuple(jfired)) + ("", "Args:", "    z: logits, classes along the last axis.") + dim_doc[1:] + ("", "Returns:", "    A tensor of shape z.shape + (K,)."),
               ("z, _dtype = _working(z)", "if z.dim() == 0:", f"    raise ValueError('{n}_jacobian needs z with a class axis (the last); got a 0-d tensor')",
                "_eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)", f"return _result({jbody.name}(z, _eye{''.join(f', _param({p}, z)' for p in pn)}), _dtype)")),
    ]
    jbody = dataclasses.replace(jbody, args=("z", "_eye") + pn, like="(z[..., None] * _eye)")
    return Group([value, vbody, jbody], classes, publics, [])


def split_parts(entry: Entry, act: M.Activation, axis="dim", array="tensor", body=_body, apply=".apply"):
    """A split activation f(a, b) of the two halves of its input: the bodies of f and of its
    partial derivatives, and the public functions (NAME calling ``_NAME_fn`` + ``apply``, the
    framework's differentiable function of the halves; NAME_grad_a, NAME_grad_b; NAME_vjp)."""
    n = act.name
    P = act.params
    pn = tuple(p.name for p in P)
    fwd, vjp = entry.get("forward"), entry.get("vjp")
    halves = [d for d in entry.derivations if d.kind == "grad_half"]
    value = body(f"_{n}_value", ["a", "b"], fwd.expr, P, f"{n}(a, b) elementwise")
    dbodies = [body(f"_{n}_d_{d.wrt}", ["a", "b"], d.expr, P, f"d {n} / d {d.wrt}") for d in halves]
    kw = _kw_only(P)
    call = "".join(f", _param({p}, a)" for p in pn)
    pass_on = "".join(f", {p}={p}" for p in pn)
    param_doc = tuple(f"    {p.name}: parameter (default {p.default_float!r}); not differentiated." for p in P)
    args_doc = ("", "Args:", f"    z: {array} of inputs; ``{axis}`` (default: the last) has even length and is split into the halves a and b.") + param_doc
    split = ("z, _dtype = _working(z)", f"a, b = _halves(z, {axis}, {n!r})")
    publics = [Public(n, f"z, {axis}=-1" + kw, f"{act.prose.title}: f(a, b) of the two halves a, b of z along ``{axis}``.",
                      _math("f(a, b)", act.expr) + _rules(fwd.rules, body=value) + args_doc,
                      (*split, f"return _result(_{n}_fn{apply}(a, b{call}), _dtype)"), act.aliases)]
    for d, db in zip(halves, dbodies):
        publics.append(Public(d.name, f"z, {axis}=-1" + kw, f"Partial derivative of {n} with respect to its half {d.wrt}, elementwise (of the halves' shape).",
                              _math(r"\frac{\partial f}{\partial %s}" % d.wrt, d.expr) + _rules(d.rules, body=db) + args_doc,
                              (*split, f"return _result({db.name}(a, b{call}), _dtype)")))
    publics.append(Public(vjp.name, f"z, g, {axis}=-1" + kw, f"Vector-Jacobian product of {n}: the gradient with respect to z given g, the gradient with respect to its output.",
                          _math(r"\left(g \frac{\partial f}{\partial a}, g \frac{\partial f}{\partial b}\right)", vjp.expr)
                          + ("", "Args:", f"    z: {array} of inputs, split along ``{axis}`` into the halves a and b.", f"    g: gradient with respect to {n}(z), broadcastable to its shape.") + param_doc,
                          ("z, _dtype = _working(z)", "g = _like(g, z)",
                           f"return _result(_split_join(g * {halves[0].name}(z, {axis}{pass_on}), g * {halves[1].name}(z, {axis}{pass_on}), {axis}), _dtype)")))
    return [value, *dbodies], publics


def torch_split_group(entry: Entry, act: M.Activation) -> Group:
    bodies, publics = split_parts(entry, act)
    n = act.name
    pn = tuple(p.name for p in act.params)
    cls = FunctionClass(f"_{n}_fn", ("a", "b") + pn, bodies[0].name, tuple(Gradient("body", b.name) for b in bodies[1:]) + tuple(Gradient("none") for _ in pn),
                        f"{n} of the two halves, with its derived partial derivatives as its backward")
    first = publics[0]
    doc = first.doc_lines + ("", "The halves are views of z (torch.chunk); the backward is g times the derived partial derivatives, printed",
                             "as differentiable torch operations, so double backward differentiates them.")
    return Group(bodies, [cls], [dataclasses.replace(first, doc_lines=doc)] + publics[1:], [])


def reduction_group(entry: Entry, act: M.Activation, axis="dim", keep="keepdim", array="tensor", emit_class=_class_axis_emit, apply=".apply"):
    """A row reduction (one value per row): the value and its gradient over the row as bodies; the
    public function (calling ``_NAME_fn`` + ``apply``), NAME_grad and NAME_vjp, which is g times
    the gradient (the derived VJP is that product). ``axis``/``keep``: the framework's names for
    the reduced axis and for keeping it."""
    n = act.name
    P = act.params
    pn = tuple(p.name for p in P)
    fwd, vjp, grad = entry.get("forward"), entry.get("vjp"), entry.get("jacobian")
    expr, fired = _class_axis_stable(fwd.expr)
    gexpr, gfired = _class_axis_stable(grad.expr)
    value = Body(f"_{n}_value", ("z",) + pn, emit_class(expr, {}, P), f"{n}(z) over the last axis", "z.shape[:-1]")
    gbody = Body(f"_{n}_grad_value", ("z",) + pn, emit_class(gexpr, {M.KK: None}, P), f"the gradient of {n} over the last axis")
    call = "".join(f", _param({p}, zl)" for p in pn)
    axis_doc = (f"    {axis}: the axis reduced (default: the last); None reduces every element as one row.",)
    param_doc = tuple(f"    {p.name}: parameter (default {p.default_float!r}); not differentiated." for p in P)
    kw = _kw_only(P)
    rows = ("z, _dtype = _working(z)", f"zl = _class_last(z, {axis})")
    publics = [
        Public(n, f"z, {axis}=-1, {keep}=False" + kw, f"{act.prose.title}: one value per row of the axis ``{axis}``.",
               _math("f(z)", act.expr) + _computed_as(tuple(fired)) + ("", "Args:", f"    z: {array} of inputs; the rows lie along ``{axis}``.") + axis_doc
               + (f"    {keep}: keep the reduced axis, with length 1.",) + param_doc,
               (*rows, f"return _result(_row_result(_{n}_fn{apply}(zl{call}), z, {axis}, {keep}), _dtype)"), act.aliases),
        Public(grad.name, f"z, {axis}=-1" + kw, f"Gradient of {n} over each row: d f / d z_k, shaped like z.",
               _math(r"\frac{\partial f}{\partial z_k}", grad.expr) + _computed_as(tuple(gfired)) + ("", "Args:", f"    z: {array} of inputs; the rows lie along ``{axis}``.") + axis_doc + param_doc,
               (*rows, f"return _result(_class_back({gbody.name}(zl{call}), z, {axis}), _dtype)")),
        Public(vjp.name, f"z, g, {axis}=-1" + kw, f"Vector-Jacobian product of {n}: the gradient with respect to z given g, the gradient with respect to its output (one number per row).",
               _math(r"g \frac{\partial f}{\partial z_k}", vjp.expr) + _computed_as(tuple(gfired)) + ("", "Args:", f"    z: {array} of inputs; the rows lie along ``{axis}``.",
                                                                                                     f"    g: gradient with respect to {n}(z), broadcastable to its shape (with or without {keep})." ) + axis_doc + param_doc,
               (*rows, f"gl = _row_g(_like(g, z), z, {axis})", f"return _result(_class_back(gl * {gbody.name}(zl{call}), z, {axis}), _dtype)")),
    ]
    return value, gbody, publics


def torch_reduction_group(entry: Entry, act: M.Activation) -> Group:
    value, gbody, publics = reduction_group(entry, act)
    pn = tuple(p.name for p in act.params)
    cls = FunctionClass(f"_{act.name}_fn", ("z",) + pn, value.name, (Gradient("body", gbody.name, True),) + tuple(Gradient("none") for _ in pn),
                        f"{act.name} over the last axis, with its derived gradient as its backward")
    first = publics[0]
    doc = first.doc_lines + ("", "Autograd saves the input; the backward is g times the derived gradient, printed as differentiable torch",
                             "operations, so double backward differentiates the derived gradient.")
    publics = [dataclasses.replace(first, doc_lines=doc)] + publics[1:]
    return Group([value, gbody], [cls], publics, [])


# -- losses and heads ------------------------------------------------------------------------------


def _reduction_doc(first="input", second="target"):
    return ("", "Args:", f"    {first}: predictions (any shape, device and floating dtype).", f"    {second}: targets, broadcastable to {first}.",
            '    reduction: "mean" (default), "sum" or "none".')


def loss_group(entry: Entry, loss: M.Loss) -> Group:
    n = loss.name
    P = loss.params
    value, grad = entry.get("loss"), entry.get("loss_grad")
    gparams = {d.wrt: d for d in entry.derivations if d.kind == "loss_grad_param"}
    call = ", ".join(["y_hat", "y"] + [f"_param({p.name}, y_hat)" for p in P])
    prologue = ("_check_reduction(reduction)", f"_check_target(target, '{n}')", "y_hat, _dtype = _working(input)", "y = _like(target, y_hat)", *sign_checks(P, n))
    mapping = ("", f"PyTorch's argument order (input, target); the NumPy package's ``{n}(y_true, y_pred)`` takes them the other way round.")
    if loss.class_axis:
        vb = Body(f"_{n}_value", ("y_hat", "y") + tuple(p.name for p in P), emit(to_array(class_axis_scaled(value.expr, LOSS_BASES)[0], {}, "y_hat"), _printer("y_hat", P)), f"{n} per sample (classes last)", "y_hat.shape[:-1]")
        gb = Body(f"_{n}_d_y_hat", ("y_hat", "y") + tuple(p.name for p in P), emit(to_array(class_axis_scaled(grad.expr, LOSS_BASES)[0], {M.KK: None}, "y_hat"), _printer("y_hat", P)), f"d {n} / d y_hat (classes last)")
        pbodies = [Body(f"_{n}_d_{p.name}", ("y_hat", "y") + tuple(q.name for q in P), emit(to_array(class_axis_scaled(gparams[p.name].expr, LOSS_BASES)[0], {}, "y_hat"), _printer("y_hat", P)),
                        f"d {n} / d {p.name} per sample (classes last)", "y_hat.shape[:-1]") for p in P if p.name in gparams]
        grads = (Gradient("body", gb.name, True), Gradient("none")) + tuple(Gradient("body", f"_{n}_d_{p.name}") if p.name in gparams else Gradient("none") for p in P)
        cls = FunctionClass(f"_{n}_fn", ("y_hat", "y") + tuple(p.name for p in P), vb.name, grads, f"{n} per sample, with the derived gradient as its backward")
        lines = (*prologue[:3], f"y_hat, y, _keep = _class_inputs(y_hat, target, {class_call(loss, 'dim', n)})", *prologue[4:],
                 f"return _result(_class_reduce(_{n}_fn.apply({call}), reduction, _keep), _dtype)")
        publics = [Public(n, 'input, target, reduction="mean", dim=-1' + _kw_only(P) + class_keywords(loss, not P),
                          f"{loss.prose.title} over the class axis ``dim``, reduced over samples, with the derived gradient as its backward.",
                          _math(r"L(y, \hat{y})", loss.expr) + class_doc(loss, "input", "target", "dim", "any device and floating dtype")
                          + tuple(f"    {p.name}: parameter (default {p.default_float!r}): a Python number or a tensor; with requires_grad it gets the derived gradient." for p in P) + mapping, lines)]
        return Group([vb, gb] + pbodies, [cls], publics, [])
    ins = tuple(loss.inputs)
    arrays = ["y_hat", "y", *ins]
    call = ", ".join(arrays + [f"_param({p.name}, y_hat)" for p in P])
    prologue = prologue[:4] + tuple(f"{x} = _like({x}, y_hat)" for x in ins) + prologue[4:]
    vb = _body(f"_{n}_value", arrays, value.expr, P, f"{n} per element")
    gb = _body(f"_{n}_d_y_hat", arrays, grad.expr, P, f"d {n} / d y_hat")
    ibodies = [_body(f"_{n}_d_{d.wrt}", arrays, d.expr, P, f"d {n} / d {d.wrt}") for d in entry.derivations if d.kind == "loss_grad_input"]
    pbodies = [_body(f"_{n}_d_{p.name}", arrays, gparams[p.name].expr, P, f"d {n} / d {p.name}") for p in P if p.name in gparams]
    grads = ((Gradient("body", gb.name), Gradient("none")) + tuple(Gradient("body", b.name) for b in ibodies)
             + tuple(Gradient("body", f"_{n}_d_{p.name}") if p.name in gparams else Gradient("none") for p in P))
    cls = FunctionClass(f"_{n}_fn", tuple(arrays) + tuple(p.name for p in P), vb.name, grads, f"{n} per element, with the derived gradient as its backward")
    lines = prologue + (f"return _result(_reduce(_{n}_fn.apply({call}), reduction), _dtype)",)
    inputs_doc = tuple(f"    {x}: the further input {x} of the loss, broadcastable to input; with requires_grad it gets the derived gradient." for x in ins)
    publics = [Public(n, "input, target, " + "".join(f"{x}, " for x in ins) + 'reduction="mean"' + _kw_only(P),
                      f"{loss.prose.title}, elementwise, then reduced, with the derived gradient as its backward.",
                      _math(r"L(y, \hat{y})", loss.expr) + _rules(value.rules, body=vb) + _math(r"\frac{\partial L}{\partial \hat{y}}", grad.expr)
                      + _reduction_doc() + inputs_doc + tuple(f"    {p.name}: parameter (default {p.default_float!r})." for p in P) + mapping, lines)]
    return Group([vb, gb] + ibodies + pbodies, [cls], publics, [])


def head_group(entry: Entry, act: M.Activation, loss: M.Loss) -> Group:
    n = entry.name
    value, grad = entry.get("head"), entry.get("head_grad")
    prologue = ("_check_reduction(reduction)", f"_check_target(target, '{n}')", "z, _dtype = _working(logits)")
    mapping = ("", f"PyTorch's argument order (logits, target); the NumPy package's ``{n}(y_true, logits)`` takes them the other way round.")
    if loss.class_axis:
        vexpr, vf = _class_axis_stable(value.expr)
        gexpr, gf = _class_axis_stable(grad.expr)
        vb = Body(f"_{n}_value", ("z", "y"), _class_axis_emit(vexpr, {}), f"{n} per sample (classes last)", "z.shape[:-1]")
        gb = Body(f"_{n}_d_z", ("z", "y"), _class_axis_emit(gexpr, {M.KK: None}), f"d {n} / d z (classes last)")
        cls = FunctionClass(f"_{n}_fn", ("z", "y"), vb.name, (Gradient("body", gb.name, True), Gradient("none")), f"{n} per sample, with the derived gradient as its backward")
        lines = prologue + (f"z, y, _keep = _class_inputs(z, target, {class_call(loss, 'dim', n)})",
                            f"return _result(_class_reduce(_{n}_fn.apply(z, y), reduction, _keep), _dtype)")
        doc = (_math("L(y, z)", value.expr) + _computed_as(tuple(vf)) + _math(r"\frac{\partial L}{\partial z_k}", grad.expr) + _computed_as(tuple(gf))
               + class_doc(loss, "logits", "target", "dim", "any device and floating dtype") + mapping)
        return Group([vb, gb], [cls], [Public(n, 'logits, target, reduction="mean", dim=-1' + class_keywords(loss, True), f"{loss.prose.title} of {act.name}(logits), fused, computed from the logits.", doc, lines)], [])
    vb = _body(f"_{n}_value", ["z", "y"], value.expr, (), f"{n} per element")
    gb = _body(f"_{n}_d_z", ["z", "y"], grad.expr, (), f"d {n} / d z")
    cls = FunctionClass(f"_{n}_fn", ("z", "y"), vb.name, (Gradient("body", gb.name), Gradient("none")), f"{n} per element, with the derived gradient as its backward")
    lines = prologue + ("y = _like(target, z)", f"return _result(_reduce(_{n}_fn.apply(z, y), reduction), _dtype)")
    doc = (_math("L(y, z)", value.expr) + _rules(value.rules, body=vb) + _math(r"\frac{\partial L}{\partial z}", grad.expr) + _rules(grad.rules, body=gb)
           + ("", "Args:", "    logits: scores (any shape, device and floating dtype).", "    target: targets, broadcastable to logits.",
              '    reduction: "mean" (default), "sum" or "none".') + mapping)
    return Group([vb, gb], [cls], [Public(n, 'logits, target, reduction="mean"', f"{loss.prose.title} of {act.name}(logits), fused, computed from the logits.", doc, lines)], [])


# -- modules ---------------------------------------------------------------------------------------


def module_views(derived: Derived) -> list[ModuleView]:
    spec = derived.spec
    acts = [spec.activation(e.name) for e in derived.activations]
    losses = [spec.loss(e.name) for e in derived.losses]
    act_names = class_names([(a.name, a.prose.title) for a in acts])
    loss_names = class_names([(l.name, l.prose.title) for l in losses])
    out = []
    for a in acts:
        params = tuple((p.name, p.default_float) for p in a.params)
        out.append(ModuleView(act_names[a.name], a.name, f"{a.prose.title} as a module (calls ``{a.name}``).", params,
                              a.learnable, "split" if a.split else "reduction" if a.reduces else "vector" if a.vector else "activation", tuple(camel(al) for al in a.aliases)))
    for l in losses:
        name = loss_names[l.name]
        name = name if name.endswith("Loss") else name + "Loss"
        out.append(ModuleView(name, l.name, f"{l.prose.title} as a module (calls ``{l.name}``).", tuple((p.name, p.default_float) for p in l.params),
                              (), "class_loss" if l.class_axis else "loss", class_indices=l.class_indices, inputs=l.inputs))
    for h in derived.heads:
        act, loss = spec.activation(h.activation), spec.loss(h.loss)
        out.append(ModuleView(f"{act_names[act.name]}{loss_names[loss.name].removesuffix('Loss')}Loss", h.name,
                              f"{loss.prose.title} of {act.name}(logits) as a module (calls ``{h.name}``).", (), (),
                              "class_head" if loss.class_axis else "head", class_indices=loss.class_indices))
    return out


# -- files -----------------------------------------------------------------------------------------


def render_package(derived: Derived, package: str) -> dict[str, str]:
    spec = derived.spec
    env = environment("templates", __package__)
    h = header("#", spec.sources)
    groups = {
        "activations": ("Activation functions, their derivatives and second derivatives, as differentiable torch functions.",
                        [activation_group(e, spec.activation(e.name)) for e in derived.activations]),
        "losses": ("Loss functions with the derived gradient as their backward, in PyTorch's (input, target) order.",
                   [loss_group(e, spec.loss(e.name)) for e in derived.losses]),
        "heads": ("Fused output heads on logits, with the derived gradient as their backward.",
                  [head_group(e, spec.activation(e.activation), spec.loss(e.loss)) for e in derived.heads]),
    }
    files, modules, names, aliases = {}, {}, [], {}
    for module, (doc, gs) in groups.items():
        if not gs:
            continue
        bodies = [b for g in gs for b in g.bodies]
        classes = [c for g in gs for c in g.classes]
        publics = [p for g in gs for p in g.publics]
        files[f"{package}/{module}.py"] = env.get_template("module.py.j2").render(header=h, doc=doc, bodies=bodies, classes=classes, publics=publics)
        exported = sorted({p.name for p in publics} | {a for p in publics for a in p.aliases})
        modules[module] = exported
        names += exported
        aliases.update({a: p.name for p in publics for a in p.aliases})
    mods = module_views(derived)
    files[f"{package}/nn.py"] = env.get_template("nn.py.j2").render(header=h, modules=mods, imports=sorted({m.module for m in mods}))
    files.update(package_files(derived, "torch", package, names, aliases))
    files[f"{package}/_runtime.py"] = env.get_template("runtime.py.j2").render(header=h, erfcx=_table_view(erfcx_table()))
    files[f"{package}/__init__.py"] = env.get_template("init.py.j2").render(
        header=h, package=package, sources=spec.sources, modules=sorted(modules.items()), all_names=sorted(names + ["nn"]))
    return files


__all__ = ["render_package", "class_names", "module_views"]
