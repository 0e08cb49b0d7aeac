"""The PyTorch backend's printer: SymPy expressions to torch operations.

:class:`ActgenTorchPrinter` overrides only what differs from the NumPy printer it subclasses (as
SymPy's own CuPy and JAX printers subclass its NumPy printer): the module prefix, selections that
must keep the input's dtype, minimum/maximum against a number, and the class-axis reductions.
Bodies are printed as straight-line code (:func:`actgen.printing.emit`): PyTorch has no ``out=``
discipline worth imitating, and a straight line is what ``torch.compile`` fuses best. Runtime
helpers (``_mul_exp``, ``_erfcx``, double-double ``_dd_*``) keep their NumPy names and meaning;
the torch ``_runtime`` implements them without data-dependent Python branches, so nothing forces
a device synchronisation.
"""
from __future__ import annotations

import sympy as sp

from ...printing import Emitted
from ...printing import emit as _emit
from ..numpy.printer import ActgenNumPyPrinter


class ActgenTorchPrinter(ActgenNumPyPrinter):
    """``like``: the name of a tensor of the working dtype and device in scope (the body's first
    input), so that a selection between two numbers is a tensor of that dtype, never of PyTorch's
    default dtype."""

    printmethod = "_actgen_torch"

    def __init__(self, axis="dim", jacobian=False, like="z"):
        super().__init__(axis=axis, jacobian=jacobian)
        self.like = like
        self.scalars = frozenset()  # names of parameters (Python numbers or tensors)

    def _module_format(self, fqn, register=True):
        for prefix in ("numpy.", "math."):
            if fqn.startswith(prefix):
                return "torch." + fqn[len(prefix):]
        return super()._module_format(fqn, register)

    def _print_Pow(self, expr, rational=False):
        code = super()._print_Pow(expr, rational)
        return code.replace("np.sqrt(", "torch.sqrt(")

    def _print_Piecewise(self, expr):
        (value, cond), rest = expr.args[0], expr.args[1:]
        if cond is sp.true:
            return self._print(value)
        other = self._print(sp.Piecewise(*rest)) if rest else "torch.nan"
        first = self._print(value)
        if value.is_number and (not rest or sp.Piecewise(*rest).is_number):
            first = f"{self.like}.new_full((), {first})"  # two numbers: keep the input's dtype
        condition = self._print(cond)
        if cond.free_symbols and {s.name for s in cond.free_symbols} <= self.scalars:
            # a condition on parameters alone may be a Python bool: a tensor on the input's device
            condition = f"torch.as_tensor({condition}, device={self.like}.device)"
        return f"torch.where({condition}, {first}, {other})"

    def _minmax(self, expr, fn):
        numbers = [a for a in expr.args if a.is_number]
        others = [a for a in expr.args if not a.is_number]
        out = self._print(others[0])
        for a in others[1:]:
            out = f"torch.{fn}({out}, {self._print(a)})"
        if numbers:
            bound = (max if fn == "maximum" else min)(float(n) for n in numbers)
            out = f"torch.clamp_{'min' if fn == 'maximum' else 'max'}({out}, {bound!r})"
        return out

    def _print_Abs(self, expr):
        return f"torch.abs({self._print(expr.args[0])})"

    def _print_sign(self, expr):
        return f"torch.sign({self._print(expr.args[0])})"

    def _print_sech(self, expr):
        return f"1/torch.cosh({self._print(expr.args[0])})"

    def _print_expm1(self, expr):
        return f"torch.expm1({self._print(expr.args[0])})"

    def _print_log1p(self, expr):
        return f"torch.log1p({self._print(expr.args[0])})"

    def _print_softplus(self, expr):
        return f"_softplus({self._print(expr.args[0])})"

    def _print_normal_cdf(self, expr):
        return f"torch.special.ndtr({self._print(expr.args[0])})"

    def _print_xlogy(self, expr):
        return f"torch.special.xlogy({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_erf(self, expr):
        return f"torch.erf({self._print(expr.args[0])})"

    def _print_erfc(self, expr):
        return f"torch.erfc({self._print(expr.args[0])})"

    def _print_axis_sum(self, expr):
        outer, self._in_reduction = getattr(self, "_in_reduction", False), True
        try:
            inner = f"torch.sum({self._print(expr.args[0])}, dim={self.axis}, keepdim=True)"
        finally:
            self._in_reduction = outer
        return f"{inner}[..., None]" if self.jacobian and not outer else inner

    def _print_axis_max(self, expr):
        inner = f"torch.amax({self._print(expr.args[0])}, dim={self.axis}, keepdim=True)"
        return f"{inner}[..., None]" if self.jacobian and expr.args[0].name.endswith("__top") else inner


def emit(expr, printer=None, fired=None) -> Emitted:
    """:func:`actgen.printing.emit` with the torch printer: straight-line torch code."""
    return _emit(expr, printer or ActgenTorchPrinter(), fired)


__all__ = ["ActgenTorchPrinter", "emit"]
