"""The NumPy backend's renderer: a view of each generated function for the package templates.

Each view holds the printed body (:mod:`.printer`), the docstring lines and an example whose
expected output is computed exactly by SymPy. Elementwise bodies are printed as ufunc passes into
reused buffers and, when long, run block by block (the runtime's ``_blockwise``).
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import sympy as sp

from ... import model as M
from ...derive import Y_OUT
from ...pipeline import Derived, Entry
from ...primitives import axis_max, elementary, erfcx_table, exp_shifted
from ...printing import COL, ROW, Emitted, latex, to_array
from ...render import (LOSS_BASES, class_axis_scaled, class_call, class_doc, class_keywords, ARRAYS, MAX_UNSHIFTED_DEGREE, UNSHIFTED_BOUND, _class_axis_stable, always_shifted, shift_exponentials, split_dominant, _computed_as, _conventions,
                       _defaults, _exact, _fmt_array, _kw_sig, _loss_conventions, _math, _param_sig, environment,
                       example_literal, example_points, exp_degree, header, input_examples, loss_examples, _fmt_significant, package_files, param_prologue)
from .printer import ActgenNumPyPrinter, emit, emit_inplace


@dataclasses.dataclass(frozen=True)
class FunctionView:
    name: str
    signature: str
    summary: str
    doc_lines: tuple[str, ...]
    prologue: tuple[str, ...]
    body: Emitted
    result_name: str
    epilogue: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    arrays: tuple[str, ...] = ()  # set by _with_blocking for elementwise bodies: the array arguments
    params: tuple[str, ...] = ()  # and the scalar parameters
    blocked: bool = False  # the body runs block by block (the runtime's _blockwise)
    helper_blocks: bool = False  # on the runtime's smaller _HELPER_BLOCK (see _with_blocking)
    # the body for inputs computed in float32, where it differs (see _unary_body); blocked bodies only
    narrow_body: Emitted | None = None


FLOAT32_DOC = ("any shape; float32 in, float32 out, computed in float32 with the double-double terms (compensated "
               "exponents) in float64; float16 computed in float32; integers become float64")


def _unary_body(expr, arg, params, fn, check_sign, printer):
    """(prologue, body) of an elementwise activation body in ``arg`` (z, or y for an output form),
    computed in the input's precision: buffers, constant arrays and parameters in the working
    array's dtype (float32 for a float32 or float16 input, else float64). Where the printer uses
    double-double arithmetic (a compensated exponent), a float32 input gets float64 instead (the
    runtime's "wide" values: 53 bits, more than a float32 pair's 48)."""
    name = str(arg)  # z, or y (derive.Y_OUT)
    body = emit_inplace(expr, [arg], printer, workspace=True, float_dtype=f"{name}.dtype")
    return (f"{name}, _dtype = _working({name}, native=True)", *param_prologue(params, fn, check_sign, dtype=f"{name}.dtype")), body


def _narrow_body(view: FunctionView, expr, arg, printer) -> FunctionView:
    """``view`` with the body for float32 inputs where it differs from the float64 one: where
    rules.EXPONENT_GATE computes a double-double exponent only on the elements that need it, a
    float32 input's "double-double" is plain float64 arithmetic (the runtime's wide values), cheaper
    everywhere than gathering and scattering (gelu_tanh, 1e6 float32: 9.9 ms gated, 8.2 ms not)."""
    if "exponent_gate" not in view.body.rules:
        return view
    return dataclasses.replace(view, narrow_body=emit_inplace(expr, [arg], printer, workspace=True, float_dtype=f"{arg}.dtype", gate=False))


def activation_views(entry: Entry, act: M.Activation) -> list[FunctionView]:
    if act.split:
        return split_views(entry, act)
    if act.reduces:
        return reduction_views(entry, act)
    if act.vector:
        return vector_views(entry, act)
    views = []
    printer = ActgenNumPyPrinter()
    fwd = entry.get("forward")
    grad = entry.get("grad")
    kw = _kw_sig(act.params)
    defaults = _defaults(act.params)
    conv = _conventions(act.expr, grad.expr, act.params)
    example_in = example_literal(act)
    points = example_points(act)
    forward_values = [_exact(act.expr, {M.Z: sp.Float(v), **defaults}) for v in points]
    grad_values = [_exact(grad.expr, {M.Z: sp.Float(v), **defaults}) for v in points]
    param_doc = tuple(f"{p.name}: parameter (default {p.default_float!r})." for p in act.params)
    common_args = ("", "Args:", f"    z: array of inputs ({FLOAT32_DOC}).") + tuple("    " + d for d in param_doc)

    narrow = {}  # body -> what _narrow_body needs to print it for float32

    def unary(expr, arg=M.Z, fn="", check_sign=False):
        prologue, body = _unary_body(expr, arg, act.params, fn, check_sign, printer)
        narrow[body] = (expr, arg)
        return prologue, body

    prologue, body = unary(fwd.expr)
    views.append(FunctionView(
        act.name, "z" + kw,
        f"{act.prose.title}, elementwise.",
        _math("f(z)", act.expr) + _math("f'(z)", grad.expr) + _computed_as(fwd.rules) + common_args
        + ("", "Returns:", "    f(z), with the shape and dtype of z.", "", "Example:", f"    >>> np.round({act.name}({example_in}), 6) + 0.0", f"    {_fmt_array(forward_values)}"),
        prologue, body, "out", ("return _result(out, z, _dtype)",), act.aliases,
    ))
    prologue, body = unary(grad.expr)
    views.append(FunctionView(
        f"{act.name}_grad", "z" + kw,
        f"Derivative of {act.name} with respect to z, elementwise.",
        _math("f'(z)", grad.expr) + _computed_as(grad.rules) + conv + common_args
        + ("", "Returns:", "    f'(z), with the shape and dtype of z.", "", "Example:", f"    >>> np.round({act.name}_grad({example_in}), 6) + 0.0", f"    {_fmt_array(grad_values)}"),
        prologue, body, "out", ("return _result(out, z, _dtype)",), tuple(f"{a}_grad" for a in act.aliases),
    ))
    grad2 = entry.get("grad2")
    if grad2 is not None:
        grad2_values = [_exact(grad2.expr, {M.Z: sp.Float(v), **defaults}) for v in points]
        prologue, body = unary(grad2.expr)
        views.append(FunctionView(
            grad2.name, "z" + kw,
            f"Second derivative of {act.name} with respect to z, elementwise.",
            _math("f''(z)", grad2.expr) + _computed_as(grad2.rules)
            + ("", "At a kink the second derivative is that of the branch whose condition holds (no Dirac delta).")
            + common_args
            + ("", "Returns:", "    f''(z), with the shape and dtype of z.", "", "Example:", f"    >>> np.round({grad2.name}({example_in}), 6) + 0.0", f"    {_fmt_array(grad2_values)}"),
            prologue, body, "out", ("return _result(out, z, _dtype)",), tuple(f"{a}_grad2" for a in act.aliases),
        ))
    for d in entry.derivations:
        if d.kind == "grad_param":
            p = next(p for p in act.params if p.name == d.wrt)
            values = [_exact(d.expr, {M.Z: sp.Float(v), **defaults}) for v in points]
            prologue, body = unary(d.expr)
            views.append(FunctionView(
                d.name, "z" + kw,
                f"Derivative of {act.name} with respect to its parameter {p.name}, elementwise.",
                _math(r"\frac{\partial f}{\partial %s}" % latex(p.symbol), d.expr) + _computed_as(d.rules) + common_args
                + ("", "Returns:", f"    df/d{p.name} at each z, with the shape and dtype of z.", "", "Example:", f"    >>> np.round({d.name}({example_in}), 6) + 0.0", f"    {_fmt_array(values)}"),
                prologue, body, "out", ("return _result(out, z, _dtype)",),
            ))
    of = entry.get("grad_from_output")
    if of is not None:
        lossy = of.expr.has(Y_OUT) and not isinstance(of.expr, sp.Piecewise)
        prologue, body = unary(of.expr, Y_OUT, of.name, True)
        views.append(FunctionView(
            of.name, "y" + kw,
            f"Derivative of {act.name}, computed from its output y = {act.name}(z).",
            _math("f'(z)", of.expr.xreplace({Y_OUT: sp.Symbol("y")})) + ("", "where y = f(z); found and proved by actgen (f'(z) = g(f(z)))."
            + (" Where y is rounded to a constant (e.g. y = 1.0 in float64 for large z) this form loses the information that the input-form "
               f"{act.name}_grad keeps: prefer {act.name}_grad when z is available." if lossy else ""),)
            + ("", "Args:", f"    y: outputs of the forward function ({FLOAT32_DOC}).") + tuple("    " + d for d in param_doc)
            + ("", "Example:", f"    >>> z = {example_in}", f"    >>> bool(np.allclose({of.name}({act.name}(z)), {act.name}_grad(z)))", "    True"),
            prologue, body, "out", ("return _result(out, y, _dtype)",), tuple(f"{a}_grad_from_output" for a in act.aliases),
        ))
    return [_narrow_body(v, *narrow[v.body], printer) for v in views]


def _class_axis_body(stable, free, printer):
    """The body of a class-axis function. Where every max shift sits in exp(z - M) and the body's
    exponentials allow it (see UNSHIFTED_BOUND), those become exp_shifted(z): the runtime takes
    M = 0 when every |z| is within the bound, else M = max z."""
    arr = to_array(stable, free)
    z = sp.Symbol("z", real=True)
    shifted = shift_exponentials(arr)
    if shifted.has(axis_max):
        # a shift outside exp(z - M): log-sum-exp (z - log sum exp z cancels, where the shifted
        # (z - M) - log sum exp(z - M) has arguments near 0 for the largest terms), or a weight
        return emit_inplace(split_dominant(always_shifted(shifted)), ARRAYS, printer)
    if any(len(e.args) > 1 or e.args[0] != z for e in shifted.atoms(exp_shifted)):
        return emit_inplace(split_dominant(shifted), ARRAYS, printer)  # weighted: always shifted (the runtime compensates the weight)
    degree = exp_degree(shifted.xreplace({exp_shifted(z): sp.exp(z)}), ARRAYS)
    if degree is None or degree > MAX_UNSHIFTED_DEGREE:
        return emit_inplace(split_dominant(arr), ARRAYS, printer)
    return emit_inplace(split_dominant(shifted), ARRAYS, printer)


def _vector_example(act, values):
    n = len(values)
    out = []
    for i in range(1, n + 1):
        e = act.expr.xreplace({M.I: sp.Integer(i), M.K: sp.Integer(n), **_defaults(act.params)}).doit()
        e = e.replace(lambda t: isinstance(t, sp.Indexed) and t.base == M.ZV, lambda t: sp.Float(values[int(t.indices[0]) - 1]))
        out.append(float(sp.N(e, 40)))
    return out


def vector_views(entry: Entry, act: M.Activation) -> list[FunctionView]:
    fwd, vjp, jac = entry.get("forward"), entry.get("vjp"), entry.get("jacobian")
    views = []
    kw = _kw_sig(act.params)
    params = param_prologue(act.params, "", False)
    param_doc = tuple(f"    {p.name}: parameter (default {p.default_float!r})." for p in act.params)
    expr, fired = _class_axis_stable(fwd.expr)
    printer = ActgenNumPyPrinter(axis="axis")
    body = _class_axis_body(expr, {M.I: None}, printer)
    sample = _vector_example(act, (2.0, 1.0))
    views.append(FunctionView(
        act.name, "z, axis=-1" + kw,
        f"{act.prose.title} over the class axis.",
        _math("f(z)_i", act.expr) + _computed_as(tuple(fired))
        + ("", "Args:", "    z: logits; the classes lie along ``axis``.", "    axis: the class axis (default: the last).") + param_doc + ("", "Returns:", "    An array of the shape and dtype of z.",
           "", "Example:", f"    >>> np.round({act.name}(np.array([2.0, 1.0])), 6) + 0.0", f"    {_fmt_array(sample)}"),
        ("z, _dtype = _working(z)", *params), body, "out", ("return _result(out, z, _dtype)",),
    ))
    vexpr, vfired = _class_axis_stable(vjp.expr)
    vbody = _class_axis_body(vexpr, {M.KK: None}, printer)
    views.append(FunctionView(
        f"{act.name}_vjp", "z, g, axis=-1" + kw,
        f"Vector-Jacobian product of {act.name}: the gradient with respect to z given the gradient g with respect to its output.",
        _math(r"\left(g^\top J\right)_k = \sum_i g_i \frac{\partial f_i}{\partial z_k}", vjp.expr) + _computed_as(tuple(vfired))
        + ("", "Args:", "    z: logits; the classes lie along ``axis``.", "    g: gradient with respect to the output, broadcastable to z.", "    axis: the class axis (default: the last).") + param_doc + (
           "", "Example:", "    >>> z, g = np.array([2.0, 1.0, 0.5]), np.array([1.0, 0.0, 0.0])", f"    >>> bool(np.allclose({act.name}_vjp(z, g), g @ {act.name}_jacobian(z)))", "    True"),
        ("z, g, _dtype = _working_all(z, g)", *params), vbody, "out", ("return _result(out, z, _dtype)",),
    ))
    jexpr, jfired = _class_axis_stable(jac.expr, scale=False)
    jarr = to_array(jexpr, {M.I: ROW, M.KK: COL})
    jprinter = ActgenNumPyPrinter(axis="-1", jacobian=True)
    views.append(FunctionView(
        f"{act.name}_jacobian", "z" + kw,
        f"Jacobian of {act.name} over the last axis: J[..., i, k] = d f_i / d z_k.",
        _math(r"J_{ik} = \frac{\partial f_i}{\partial z_k}", jac.expr) + _computed_as(tuple(jfired))
        + ("", "Args:", "    z: logits, classes along the last axis.") + param_doc + ("", "Returns:", "    An array of shape z.shape + (K,).",
           "", "Example:", "    >>> J = " + act.name + "_jacobian(np.array([2.0, 1.0]))", "    >>> J.shape", "    (2, 2)"),
        ("z, _dtype = _working(z)", *params, "if z.ndim == 0:", f"    raise ValueError('{act.name}_jacobian needs z with a class axis (the last); got a scalar')", "_eye = np.eye(z.shape[-1], dtype=z.dtype)"), emit(jarr, jprinter), "out", ("return np.asarray(out, dtype=_dtype)",),
    ))
    return views


def split_views(entry: Entry, act: M.Activation) -> list[FunctionView]:
    """A split activation f(a, b) of the two halves of its input along ``axis``: NAME (the
    halves' shape), NAME_grad_a and NAME_grad_b (the partial derivatives, of the same shape) and
    NAME_vjp (g times each, joined along the axis: the gradient with respect to the input)."""
    n = act.name
    kw = _param_sig(act.params)
    sig = "z, axis=-1" + ((", *" + kw) if kw else "")
    call = "".join(f", {p.name}={p.name}" for p in act.params)
    param_doc = tuple(f"    {p.name}: parameter (default {p.default_float!r})." for p in act.params)
    prologue = (f"a, b, _dtype = _split_working(z, axis, {n!r})", *param_prologue(act.params, "", False))
    args_doc = ("", "Args:", "    z: array of inputs; ``axis`` (default: the last) has even length and is split into the halves a and b.") + param_doc
    printer = ActgenNumPyPrinter(axis="-1")
    fwd = entry.get("forward")
    example = "np.array([1.0, -2.0, 0.5, 3.0])"
    value = [round(float(_exact(fwd.expr, {M.HALF_A: sp.Float(x), M.HALF_B: sp.Float(y), **_defaults(act.params)})), 6) + 0.0 for x, y in ((1.0, 0.5), (-2.0, 3.0))]
    views = [FunctionView(
        n, sig, f"{act.prose.title}: f(a, b) of the two halves a, b of z along ``axis``.",
        _math("f(a, b)", act.expr) + _computed_as(fwd.rules) + args_doc
        + ("", "Returns:", "    f(a, b), elementwise: z's shape with ``axis`` halved, in z's dtype.",
           "", "Example:", f"    >>> np.round({n}({example}), 6) + 0.0", f"    {_fmt_array(value)}"),
        prologue, emit_inplace(fwd.expr, [M.HALF_A, M.HALF_B], printer, workspace=True), "out", ("return _result(out, a, _dtype)",), act.aliases,
    )]
    for d in entry.derivations:
        if d.kind == "grad_half":
            views.append(FunctionView(
                d.name, sig, f"Partial derivative of {n} with respect to its half {d.wrt}, elementwise (of the halves' shape).",
                _math(r"\frac{\partial f}{\partial %s}" % d.wrt, d.expr) + _computed_as(d.rules) + args_doc
                + ("", "Example:", f"    >>> {d.name}({example}).shape", "    (2,)"),
                prologue, emit_inplace(d.expr, [M.HALF_A, M.HALF_B], printer, workspace=True), "grad", ("return _result(grad, a, _dtype)",),
            ))
    vjp = entry.get("vjp")
    views.append(FunctionView(
        vjp.name, "z, g, axis=-1" + ((", *" + kw) if kw else ""),
        f"Vector-Jacobian product of {n}: the gradient with respect to z given g, the gradient with respect to its output.",
        _math(r"\left(g \frac{\partial f}{\partial a}, g \frac{\partial f}{\partial b}\right)", vjp.expr)
        + ("", "Args:", "    z: array of inputs, split along ``axis`` into the halves a and b.", f"    g: gradient with respect to {n}(z), broadcastable to its shape.") + param_doc
        + ("", "Returns:", "    An array of z's shape and dtype: g df/da and g df/db, joined along ``axis``.",
           "", "Example:", f"    >>> z = {example}", f"    >>> bool(np.allclose({vjp.name}(z, 1.0)[:2], {n}_grad_a(z)))", "    True"),
        ("_like, _dtype = _working(z)", "g = np.asarray(g, dtype=np.float64)"),
        Emitted((), f"_split_join(g * {n}_grad_a(z, axis{call}), g * {n}_grad_b(z, axis{call}), axis)", ()), "out", ("return _result(out, _like, _dtype)",),
    ))
    return views


def reduction_views(entry: Entry, act: M.Activation) -> list[FunctionView]:
    """A row reduction f(z_1, ..., z_K): NAME (one value per row), NAME_grad (its gradient over
    the row, shaped like z) and NAME_vjp (g times NAME_grad, g one number per row: the derived
    VJP is that product)."""
    fwd, vjp, grad = entry.get("forward"), entry.get("vjp"), entry.get("jacobian")
    kw = _kw_sig(act.params)
    params = param_prologue(act.params, "", False)
    param_doc = tuple(f"    {p.name}: parameter (default {p.default_float!r})." for p in act.params)
    axis_doc = ("    axis: the axis reduced (default: the last); None reduces every element as one row.",)
    printer = ActgenNumPyPrinter(axis="axis")
    rows = ("z, _dtype = _working(z)", "_like, _axis = z, axis")
    expr, fired = _class_axis_stable(fwd.expr)
    sample = _vector_example(act, (2.0, 1.0))[0]
    views = [FunctionView(
        act.name, "z, axis=-1, keepdims=False" + kw,
        f"{act.prose.title}: one value per row of the axis ``axis``.",
        _math("f(z)", act.expr) + _computed_as(tuple(fired))
        + ("", "Args:", "    z: array of inputs; the rows lie along ``axis``.") + axis_doc + ("    keepdims: keep the reduced axis, with length 1.",) + param_doc
        + ("", "Returns:", "    An array of z's shape without ``axis`` (with it, of length 1, for keepdims), in z's dtype.",
           "", "Example:", f"    >>> print(f\"{{float({act.name}(np.array([2.0, 1.0]))):.6g}}\")", f"    {_fmt_significant(sample)}"),
        (*rows, "z, axis = _rows(z, axis)", *params), _class_axis_body(expr, {}, printer), "out", ("return _row_result(out, _like, _axis, _dtype, keepdims)",), act.aliases,
    )]
    gexpr, gfired = _class_axis_stable(grad.expr)
    views.append(FunctionView(
        grad.name, "z, axis=-1" + kw,
        f"Gradient of {act.name} over each row: d f / d z_k, shaped like z.",
        _math(r"\frac{\partial f}{\partial z_k}", grad.expr) + _computed_as(tuple(gfired))
        + ("", "Args:", "    z: array of inputs; the rows lie along ``axis``.") + axis_doc + param_doc
        + ("", "Example:", "    >>> z = np.array([2.0, 1.0, 0.5])", f"    >>> bool(np.allclose({grad.name}(z), {act.name}_vjp(z, 1.0)))", "    True"),
        (*rows, "z, axis = _rows(z, axis)", *params), _class_axis_body(gexpr, {M.KK: None}, printer), "out", ("return _row_full(out, z, _like, _dtype)",),
    ))
    pass_on = "".join(f", {p.name}={p.name}" for p in act.params)
    views.append(FunctionView(
        vjp.name, "z, g, axis=-1" + kw,
        f"Vector-Jacobian product of {act.name}: the gradient with respect to z given g, the gradient with respect to its output (one number per row).",
        _math(r"g \frac{\partial f}{\partial z_k}", vjp.expr) + _computed_as(tuple(gfired))
        + ("", "Args:", "    z: array of inputs; the rows lie along ``axis``.", f"    g: gradient with respect to {act.name}(z), broadcastable to its shape (with or without keepdims).") + axis_doc + param_doc
        + ("", "Returns:", "    An array of the shape and dtype of z.",
           "", "Example:", "    >>> z = np.array([[2.0, 1.0, 0.5], [0.0, 1.0, -1.0]])", f"    >>> bool(np.allclose({vjp.name}(z, np.array([1.0, 3.0])), np.array([[1.0], [3.0]]) * {grad.name}(z)))", "    True"),
        # the derived VJP is g times the gradient: computed as that product, not printed again
        ("z, _dtype = _working(z)", "g = _row_g(g, z, axis)"), Emitted((), f"g * {grad.name}(z, axis{pass_on})", ()), "out", ("return _result(out, z, _dtype)",),
    ))
    return views


def _loss_vars_doc(target="y_pred"):
    return ("", "Args:", "    y_true: targets.", f"    {target}: predictions, broadcastable with y_true.",
            '    reduction: "mean" (default), "sum" or "none".')


def loss_views(entry: Entry, loss: M.Loss) -> list[FunctionView]:
    views = []
    value, grad = entry.get("loss"), entry.get("loss_grad")
    kw = _param_sig(loss.params)
    sig = f'y_true, y_pred, reduction="mean"{(", *" + kw) if kw else ""}'
    printer = ActgenNumPyPrinter(axis="-1")
    prologue = ("_check_reduction(reduction)", "y_hat, y, _dtype = _working_all(y_pred, y_true)", *param_prologue(loss.params, loss.name, True))
    defaults = _defaults(loss.params)
    param_doc = tuple(f"    {p.name}: parameter (default {p.default_float!r})." for p in loss.params)
    if loss.class_axis:
        sig = f'y_true, y_pred, reduction="mean", *{kw}, axis=-1' + class_keywords(loss)
        prologue = ("_check_reduction(reduction)", f"y_hat, y, _dtype, _keep = _class_inputs(y_pred, y_true, {class_call(loss, 'axis', loss.name)})", *param_prologue(loss.params, loss.name, True))
        ys, hats = (0.0, 1.0, 0.0), (0.2, 0.7, 0.1)
        example = f"np.array([{', '.join(map(repr, ys))}]), np.array([{', '.join(map(repr, hats))}])"
        sub = {M.K: 3}
        def at(expr, k=None):
            e = expr.xreplace({**sub, **defaults, **({M.KK: k} if k else {})}).doit()
            e = e.replace(lambda t: isinstance(t, sp.Indexed) and t.base == M.YV, lambda t: sp.Float(ys[int(t.indices[0]) - 1]))
            e = e.replace(lambda t: isinstance(t, sp.Indexed) and t.base == M.Y_HATV, lambda t: sp.Float(hats[int(t.indices[0]) - 1]))
            return float(sp.N(elementary(e), 40))  # primitives (softplus) evaluated through their definitions
        loss_value = at(value.expr)
        grad_values = [at(grad.expr, k) for k in (1, 2, 3)]
        views.append(FunctionView(
            loss.name, sig, f"{loss.prose.title}, over the last (class) axis, reduced over samples.",
            _math("L(y, \\hat{y})", loss.expr) + _computed_as(class_axis_scaled(value.expr, LOSS_BASES)[1]) + class_doc(loss, "y_pred", "y_true", "axis", "any shape", True) + param_doc + ("", "Example:", f"    >>> print(f\"{{float({loss.name}({example})) + 0.0:.6g}}\")", f"    {_fmt_significant(loss_value)}"),
            prologue, emit_inplace(to_array(class_axis_scaled(value.expr, LOSS_BASES)[0], {}, "y_hat"), ARRAYS, printer), "loss",
            ("loss = np.asarray(loss, dtype=y_hat.dtype).reshape(y_hat.shape[:-1])", "return _class_reduce(loss, reduction, _dtype, _keep)"),
        ))
        views.append(FunctionView(
            grad.name, sig, f"Gradient of {loss.name} with respect to y_pred (scaled by 1/N samples for the mean).",
            _math("\\frac{\\partial L}{\\partial \\hat{y}_k}", grad.expr) + _computed_as(class_axis_scaled(grad.expr, LOSS_BASES)[1]) + class_doc(loss, "y_pred", "y_true", "axis", "any shape", True) + param_doc + ("", "Example:", f"    >>> np.round({grad.name}({example}), 6) + 0.0", f"    {_fmt_array(grad_values)}"),
            prologue, emit_inplace(to_array(class_axis_scaled(grad.expr, LOSS_BASES)[0], {M.KK: None}, "y_hat"), ARRAYS, printer), "grad",
            ("return _class_grad(grad, y_hat, reduction, _dtype, _keep, axis)",),
        ))
        for d in entry.derivations:
            if d.kind == "loss_grad_param":
                views.append(FunctionView(
                    d.name, sig, f"Gradient of {loss.name} with respect to its parameter {d.wrt}, per sample, reduced like the loss.",
                    _math("\\frac{\\partial L}{\\partial %s}" % d.wrt, d.expr) + class_doc(loss, "y_pred", "y_true", "axis", "any shape", True) + param_doc
                    + ("", "Example:", f"    >>> print(f\"{{float({d.name}({example})) + 0.0:.6g}}\")", f"    {_fmt_significant(at(d.expr))}"),
                    prologue, emit_inplace(to_array(class_axis_scaled(d.expr, LOSS_BASES)[0], {}, "y_hat"), ARRAYS, printer), "grad",
                    ("grad = np.asarray(grad, dtype=y_hat.dtype).reshape(y_hat.shape[:-1])", "return _class_reduce(grad, reduction, _dtype, _keep)"),
                ))
        return views
    ys, hats = loss_examples(loss)
    extra = input_examples(loss)
    syms = dict(zip(loss.inputs, loss.input_symbols))
    example = f"np.array([{ys[0]!r}, {ys[1]!r}]), np.array([{hats[0]!r}, {hats[1]!r}])" + "".join(f", np.array([{v[0]!r}, {v[1]!r}])" for v in extra.values())
    if loss.inputs:
        names = ", ".join(loss.inputs)
        sig = f'y_true, y_pred, {names}, reduction="mean"{(", *" + kw) if kw else ""}'
        prologue = ("_check_reduction(reduction)", f"y_hat, y, {names}, _dtype = _working_all(y_pred, y_true, {names})", *param_prologue(loss.params, loss.name, True))
    arrays = [M.Y, M.Y_HAT, *syms.values()]
    owned = ", ".join(["y_hat", "y", *loss.inputs])

    def at(expr, k):
        return _exact(expr, {M.Y: sp.Float(ys[k]), M.Y_HAT: sp.Float(hats[k]), **{syms[n]: sp.Float(v[k]) for n, v in extra.items()}, **defaults})

    vars_doc = _loss_vars_doc() + tuple(f"    {n}: the further input {n} of the loss, broadcastable with y_pred." for n in loss.inputs)
    loss_value = sum(at(loss.expr, k) for k in (0, 1)) / 2
    grad_values = [at(grad.expr, k) / 2 for k in (0, 1)]
    conv = _loss_conventions(loss.expr, grad.expr, loss.params) if not loss.inputs else ()
    views.append(FunctionView(
        loss.name, sig, f"{loss.prose.title}, elementwise, then reduced.",
        _math("L(y, \\hat{y})", loss.expr) + _computed_as(value.rules) + vars_doc + param_doc
        + ("", "Example:", f"    >>> print(f\"{{float({loss.name}({example})) + 0.0:.6g}}\")", f"    {_fmt_significant(loss_value)}"),
        prologue, emit_inplace(value.expr, arrays, printer, workspace=True), "loss", ("return _reduce(_result(loss, y_hat), reduction, _dtype)",),
    ))
    views.append(FunctionView(
        grad.name, sig, f"Gradient of {loss.name} with respect to y_pred (divided by N elements for the mean).",
        _math("\\frac{\\partial L}{\\partial \\hat{y}}", grad.expr) + _computed_as(grad.rules) + conv + vars_doc + param_doc
        + ("", "Example:", f"    >>> np.round({grad.name}({example}), 6) + 0.0", f"    {_fmt_array(grad_values)}"),
        prologue, emit_inplace(grad.expr, arrays, printer, workspace=True), "grad", (f"return _scale(_result(grad, y_hat), reduction, y_hat.size, _dtype, ({owned}))",),
    ))
    for d in entry.derivations:
        if d.kind == "loss_grad_input":
            values = [at(d.expr, k) / 2 for k in (0, 1)]
            views.append(FunctionView(
                d.name, sig, f"Gradient of {loss.name} with respect to its input {d.wrt} (divided by N elements for the mean).",
                _math("\\frac{\\partial L}{\\partial %s}" % d.wrt, d.expr) + _computed_as(d.rules) + vars_doc + param_doc
                + ("", "Example:", f"    >>> np.round({d.name}({example}), 6) + 0.0", f"    {_fmt_array(values)}"),
                prologue, emit_inplace(d.expr, arrays, printer, workspace=True), "grad", (f"return _scale(_result(grad, y_hat), reduction, y_hat.size, _dtype, ({owned}))",),
            ))
    for d in entry.derivations:
        if d.kind == "loss_grad_param":
            values = sum(at(d.expr, k) for k in (0, 1)) / 2
            views.append(FunctionView(
                d.name, sig, f"Gradient of {loss.name} with respect to its parameter {d.wrt} (reduced like the loss).",
                _math("\\frac{\\partial L}{\\partial %s}" % d.wrt, d.expr) + _computed_as(d.rules) + vars_doc + param_doc
                + ("", "Example:", f"    >>> print(f\"{{float({d.name}({example})) + 0.0:.6g}}\")", f"    {_fmt_significant(values)}"),
                prologue, emit_inplace(d.expr, arrays, printer, workspace=True), "grad", ("return _reduce(_result(grad, y_hat), reduction, _dtype)",),
            ))
    return views


def head_views(entry: Entry, act: M.Activation, loss: M.Loss) -> list[FunctionView]:
    value, grad = entry.get("head"), entry.get("head_grad")
    sig = 'y_true, logits, reduction="mean"'
    printer = ActgenNumPyPrinter(axis="-1")
    prologue = ("_check_reduction(reduction)", "z, y, _dtype = _working_all(logits, y_true)")
    doc_args = _loss_vars_doc("logits")
    if loss.class_axis:
        sig = 'y_true, logits, reduction="mean", *, axis=-1' + class_keywords(loss)
        prologue = ("_check_reduction(reduction)", f"z, y, _dtype, _keep = _class_inputs(logits, y_true, {class_call(loss, 'axis', entry.name)})")
        doc_args = class_doc(loss, "logits", "y_true", "axis", "any shape", True)
        ys, zs = (0.0, 1.0, 0.0), (1.0, 2.0, 0.5)
        example = f"np.array([{', '.join(map(repr, ys))}]), np.array([{', '.join(map(repr, zs))}])"

        def at(expr, k=None):
            e = expr.xreplace({M.K: 3, **({M.KK: k} if k else {})}).doit()
            e = e.replace(lambda t: isinstance(t, sp.Indexed) and t.base == M.YV, lambda t: sp.Float(ys[int(t.indices[0]) - 1]))
            e = e.replace(lambda t: isinstance(t, sp.Indexed) and t.base == M.ZV, lambda t: sp.Float(zs[int(t.indices[0]) - 1]))
            return float(sp.N(elementary(e), 40))  # primitives (softplus) evaluated through their definitions
        vexpr, vf = _class_axis_stable(value.expr)
        gexpr, gf = _class_axis_stable(grad.expr)
        vbody = _class_axis_body(vexpr, {}, printer)
        gbody = _class_axis_body(gexpr, {M.KK: None}, printer)
        return [
            FunctionView(entry.name, sig, f"{loss.prose.title} of {act.name}(logits), fused and computed from the logits.",
                         _math("L(y, z)", value.expr) + _computed_as(tuple(vf)) + doc_args
                         + ("", "Example:", f"    >>> print(f\"{{float({entry.name}({example})) + 0.0:.6g}}\")", f"    {_fmt_significant(at(value.raw))}"),
                         prologue, vbody, "loss",
                         ("loss = np.asarray(loss, dtype=z.dtype).reshape(z.shape[:-1])", "return _class_reduce(loss, reduction, _dtype, _keep)")),
            FunctionView(grad.name, sig, f"Gradient of {entry.name} with respect to the logits (1/N samples for the mean).",
                         _math("\\frac{\\partial L}{\\partial z_k}", grad.expr) + _computed_as(tuple(gf)) + doc_args
                         + ("", "Example:", f"    >>> np.round({grad.name}({example}), 6) + 0.0", f"    {_fmt_array([at(grad.expr, k) for k in (1, 2, 3)])}"),
                         prologue, gbody, "grad",
                         ("return _class_grad(grad, z, reduction, _dtype, _keep, axis)",)),
        ]
    ys, zs = (0.0, 1.0), (-1.0, 2.0)
    example = f"np.array([{ys[0]!r}, {ys[1]!r}]), np.array([{zs[0]!r}, {zs[1]!r}])"
    sub = lambda a, b: {M.Y: sp.Float(a), M.Z: sp.Float(b)}  # noqa: E731
    lv = sum(_exact(value.raw, sub(a, b)) for a, b in zip(ys, zs)) / 2
    gv = [_exact(grad.expr, sub(a, b)) / 2 for a, b in zip(ys, zs)]
    return [
        FunctionView(entry.name, sig, f"{loss.prose.title} of {act.name}(logits), fused and computed from the logits.",
                     _math("L(y, z)", value.expr) + _computed_as(value.rules) + doc_args
                     + ("", "Example:", f"    >>> print(f\"{{float({entry.name}({example})) + 0.0:.6g}}\")", f"    {_fmt_significant(lv)}"),
                     prologue, emit_inplace(value.expr, [M.Y, M.Z], printer, workspace=True), "loss", ("return _reduce(_result(loss, z), reduction, _dtype)",)),
        FunctionView(grad.name, sig, f"Gradient of {entry.name} with respect to the logits (1/N elements for the mean).",
                     _math("\\frac{\\partial L}{\\partial z}", grad.expr) + _computed_as(grad.rules) + doc_args
                     + ("", "Example:", f"    >>> np.round({grad.name}({example}), 6) + 0.0", f"    {_fmt_array(gv)}"),
                     prologue, emit_inplace(grad.expr, [M.Y, M.Z], printer, workspace=True), "grad", ("return _scale(_result(grad, z), reduction, z.size, _dtype, (z, y))",)),
    ]


def _table_view(table):
    """A PolynomialTable as the text the runtime template lays out: the nodes, then the low parts,
    then the coefficient rows, as little-endian float64 in base64 (a few hundred string tokens
    compile in well under a millisecond; two thousand float literals take 10 ms on every import
    that cannot use a cached .pyc)."""
    import base64

    values = np.array([*table.nodes, *table.low, *(v for row in table.coeffs for v in row)], dtype="<f8")
    text = base64.b64encode(values.tobytes()).decode("ascii")
    return {
        "segments": repr(tuple(tuple(float(v) for v in seg) for seg in table.segments)),
        "count": len(table.nodes),
        "rows": len(table.coeffs),
        "data": [text[i:i + 92] for i in range(0, len(text), 92)],
    }


def _with_lowering(view: FunctionView) -> FunctionView:
    """Docstrings list every rewrite behind the code: those of the derivation and those applied
    when printing (one block, in order, without repeats)."""
    lines = list(view.doc_lines)
    fired = []
    if "Computed with these rewrites (each proven equal to the formula):" in lines:
        start = lines.index("Computed with these rewrites (each proven equal to the formula):") - 1
        end = start + 3
        while end < len(lines) and lines[end].startswith("- ``"):
            fired.append(lines[end][4:].split("``")[0])
            end += 1
        del lines[start:end]
    fired += [r for r in view.body.rules if r not in fired]
    block = list(_computed_as(tuple(fired)))
    at = next((i for i, l in enumerate(lines) if l == "Args:" or l.startswith(("Convention at kinks", "At the switching points"))), len(lines))
    at = at - 1 if at > 0 and lines[at - 1] == "" else at
    return dataclasses.replace(view, doc_lines=tuple(lines[:at] + block + lines[at:]))


BLOCK_MIN_PASSES = 6  # fewer passes over memory gain nothing from blocking (measured: softplus_grad)
HELPER_PASSES = BLOCK_MIN_PASSES  # a runtime helper call makes several passes (_select 5, _mul_exp_square about 20)


def _with_blocking(view: FunctionView) -> FunctionView:
    """An elementwise body of several passes, or with a minimum/maximum against a constant, runs on
    blocks of the arrays (the runtime's _blockwise): its temporaries then stay in the CPU's cache
    and are allocated once per block size, not once per 8 MB pass (measured 2.3-2.9x faster on 1e6
    float64 for tanh_grad, sigmoid_grad, silu_grad, mish_grad). Class-axis bodies (reductions,
    Jacobians) are left whole."""
    unpack = next((line for line in view.prologue if "_working" in line), "")
    code = " ".join(c for _, c in view.body.assignments) + " " + view.body.result
    # calls: ufunc passes, and runtime helpers (not _filled, a shared constant array), each of
    # which makes several passes of its own (_mul_exp_square about twenty: gaussian_grad on 1e6
    # float64 took 23 ms whole)
    passes = len(re.findall(r"\bnp\.\w+\(", code)) + HELPER_PASSES * len(re.findall(r"\b_(?!filled\()\w+\(", code))
    if not unpack or "axis" in code or "_eye" in code:
        return view
    arrays = tuple(name.strip() for name in unpack.split("=")[0].split(",") if name.strip() != "_dtype")
    keyword = view.signature.split("*,")[1] if "*," in view.signature else ""
    params = tuple(part.split("=")[0].strip() for part in keyword.split(",") if part.strip())
    # a minimum/maximum against a constant runs its SIMD loop only against _filled's arrays, which
    # exist for blocks and small inputs: such a body is blocked at any length (relu 1.8x, relu6 and
    # hard_tanh 2.5x faster on 1e6 float64)
    blocked = passes >= BLOCK_MIN_PASSES or "_filled(" in code
    # runtime helpers that allocate temporaries of their own, tens per element (double-double
    # arithmetic, the erfcx table, exactly split squares), run on blocks whose float64 temporaries
    # stay below glibc's default mmap threshold (the runtime's _HELPER_BLOCK): measured on 1e6
    # float64 with glibc's initial thresholds, gelu 132 -> 78 ms and gelu_tanh 232 -> 57 ms, the
    # same within 10% where freed memory is reused; bodies without them are unaffected by the size
    helpers = bool(re.search(r"\b_(dd_\w+|erfcx|exp_dd|mul_exp_dd|exp_square|mul_exp_square)\(", code))
    # a float32 body of its own (see _narrow_body) is chosen per call, by the blockwise call
    narrow = view.narrow_body if blocked else None
    return dataclasses.replace(view, arrays=arrays, params=params, blocked=blocked, helper_blocks=helpers, narrow_body=narrow)


def render_package(derived: Derived, package: str) -> dict[str, str]:
    """Relative path -> content, for the Python package."""
    spec = derived.spec
    env = environment("templates", __package__)
    h = header("#", spec.sources)
    modules = {}
    act_views = []
    for entry in derived.activations:
        act_views += activation_views(entry, spec.activation(entry.name))
    loss_views_ = []
    for entry in derived.losses:
        loss_views_ += loss_views(entry, spec.loss(entry.name))
    head_views_ = []
    for entry in derived.heads:
        head_views_ += head_views(entry, spec.activation(entry.activation), spec.loss(entry.loss))
    groups = (
        ("activations", "Activation functions and their derivatives.", act_views),
        ("losses", "Loss functions and their gradients with respect to the prediction.", loss_views_),
        ("heads", "Fused output heads: an output activation and its loss, with gradients at the logits.", head_views_),
    )
    names, aliases = [], {}
    files = {}
    for module, doc, views in groups:
        if not views:
            continue
        views = [_with_blocking(_with_lowering(v)) for v in views]
        files[f"{package}/{module}.py"] = env.get_template("module.py.j2").render(header=h, doc=doc, functions=views)
        exported = sorted({v.name for v in views} | {a for v in views for a in v.aliases})
        modules[module] = exported
        names += exported
        aliases.update({a: v.name for v in views for a in v.aliases})
    files.update(package_files(derived, "numpy", package, names, aliases))
    files[f"{package}/_runtime.py"] = env.get_template("runtime.py.j2").render(header=h, erfcx=_table_view(erfcx_table()), unshifted_bound=UNSHIFTED_BOUND)
    files[f"{package}/__init__.py"] = env.get_template("init.py.j2").render(
        header=h, package=package, sources=spec.sources, modules=sorted(modules.items()), all_names=sorted(names)
    )
    return files


