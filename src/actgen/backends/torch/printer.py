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
from sympy.printing.precedence import PRECEDENCE

from ...printing import Emitted, _indicator, _indicator_parts, _late, _unit_interval
from ...printing import emit as _emit
from ..numpy.printer import ActgenNumPyPrinter, _is_shift


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

    def _print_Mul(self, expr, **kwargs):
        # x/100000 rounds once; x*1e-05 rounds the constant and then the product
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_Rational and not coeff.is_Integer and abs(coeff.p) == 1 and coeff.q < 2**53 and rest != 1:
            body = f"{self.parenthesize(rest, PRECEDENCE['Mul'])}/{coeff.q}"
            return f"(-{body})" if coeff.p < 0 else body
        return super()._print_Mul(expr, **kwargs)

    def _is_array_condition(self, cond):
        """A condition on tensors (not on parameters alone)."""
        return bool({s.name for s in cond.free_symbols} - self.scalars)

    def _indicator_code(self, cond, negated=False):
        """The 0/1 indicator of ``cond`` as a tensor of the working dtype (a comparison and a cast:
        ~0.5 ns per element on a CPU, where torch.where takes ~2 on an unsorted mask)."""
        code = self._print(cond)
        return f"(~({code})).to({self.like}.dtype)" if negated else f"({code}).to({self.like}.dtype)"

    def _print_Piecewise(self, expr):
        (value, cond), rest = expr.args[0], expr.args[1:]
        if cond is sp.true:
            return self._print(value)
        if len(rest) == 1 and rest[0][1] is sp.true and self._is_array_condition(cond):
            other = rest[0][0]
            if _indicator(expr):
                # two numbers: offset + scale h, exact (see actgen.printing._indicator)
                negated, scale, offset = _indicator_parts(expr)
                code = self._indicator_code(cond, negated)
                code = code if scale == 1 else f"{self._print(scale)}*{code}"
                return f"({self._print(offset)} + {code})" if offset != 0 else code
            a, b = self._expanded(value), self._expanded(other)
            # a branch in [0, 1] against 1 or 0: max/min or a product with the 0/1 indicator, exact
            if value == 1 and _unit_interval(b):
                return f"torch.maximum({self._print(other)}, {self._indicator_code(cond)})"
            if other == 1 and _unit_interval(a):
                return f"torch.maximum({self._print(value)}, {self._indicator_code(cond, True)})"
            if value == 0 and _unit_interval(b):
                return f"{self.parenthesize(other, PRECEDENCE['Mul'])}*{self._indicator_code(cond, True)}"
            if other == 0 and _unit_interval(a):
                return f"{self.parenthesize(value, PRECEDENCE['Mul'])}*{self._indicator_code(cond)}"
        other = self._print(sp.Piecewise(*rest)) if rest else "torch.nan"
        first = self._print(value)
        scalar = lambda e: {s.name for s in e.free_symbols} <= self.scalars  # noqa: E731 - numbers and parameters
        if scalar(value) and (not rest or scalar(sp.Piecewise(*rest))):
            first = f"_scalar({first}, {self.like})"  # two numbers: keep the input's dtype
        condition = self._print(cond)
        if cond.free_symbols and {s.name for s in cond.free_symbols} <= self.scalars:
            # a condition on parameters alone may be a Python bool: a tensor on the input's device
            condition = f"torch.as_tensor({condition}, device={self.like}.device)"
        return f"torch.where({condition}, {first}, {other})"

    def _minmax(self, expr, fn):
        numbers = [a for a in expr.args if a.is_number]
        # a parameter may be a Python number, which torch.maximum does not take: clamp by it
        scalars = [a for a in expr.args if not a.is_number and {s.name for s in a.free_symbols} <= self.scalars]
        others = [a for a in expr.args if not a.is_number and a not in scalars]
        clamp = f"torch.clamp_{'min' if fn == 'maximum' else 'max'}"
        if not others:  # parameters alone: the first as a tensor of the input's dtype
            others, scalars = [scalars[0]], scalars[1:]
            out = f"_scalar({self._print(others[0])}, {self.like})"
        else:
            out = self._print(others[0])
        for a in others[1:]:
            out = f"torch.{fn}({out}, {self._print(a)})"
        for a in scalars:
            out = f"{clamp}({out}, {self._print(a)})"
        if numbers:
            bound = (max if fn == "maximum" else min)(float(n) for n in numbers)
            out = f"{clamp}({out}, {bound!r})"
        return out

    def _print_format_tiny(self, expr):
        return f"torch.finfo({self.like}.dtype).tiny"

    def _print_format_max(self, expr):
        return f"torch.finfo({self.like}.dtype).max"

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

    def _print_hypot(self, expr):
        # torch.hypot takes two tensors: a number becomes a 0-d tensor of the input's dtype
        # (and a function of parameters alone, such as sqrt(b), is computed on such tensors: torch
        # functions do not take Python numbers)
        def tensor(a):
            if not a.free_symbols:
                return f"_scalar({self._print(a)}, {self.like})"
            if {s.name for s in a.free_symbols} <= self.scalars:
                return self._print(a.xreplace({s: sp.Symbol(f"_scalar({s.name}, {self.like})") for s in a.free_symbols}))
            return self._print(a)

        args = [tensor(a) for a in expr.args]
        return f"torch.hypot({args[0]}, {args[1]})"

    def _print_softplus(self, expr):
        return f"_softplus({self._print(expr.args[0])})"

    def _print_normal_cdf(self, expr):
        return f"torch.special.ndtr({self._print(expr.args[0])})"

    def _print_xlogy(self, expr):
        return f"torch.special.xlogy({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_xlog1py(self, expr):
        return f"torch.special.xlog1py({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_erf(self, expr):
        return f"torch.erf({self._print(expr.args[0])})"

    def _print_erfc(self, expr):
        return f"torch.erfc({self._print(expr.args[0])})"

    def _print_class_count(self, expr):
        # a 0-d tensor, not a Python int: torch.log and the other torch functions take tensors only
        x = self._print(expr.args[0])
        return f"{x}.new_full((), {x}.shape[{self.axis}])"

    def _print_axis_sum(self, expr):
        outer, self._in_reduction = getattr(self, "_in_reduction", False), True
        try:
            inner = f"torch.sum({self._print(expr.args[0])}, dim={self.axis}, keepdim=True)"
        finally:
            self._in_reduction = outer
        return f"{inner}[..., None]" if self.jacobian and not outer else inner

    def _print_Add(self, expr, order=None):
        # a shift by the class max comes right after the plain terms: (z - M) - log sum exp(z - M)
        # is exact for the largest logits, (z - log sum exp(z - M)) - M cancels
        full = {t: self._expanded(t) for t in expr.args}
        shifts = [t for t in expr.args if _is_shift(full[t])]
        if not shifts or len(shifts) == len(expr.args):
            return super()._print_Add(expr, order)
        rest = sp.Add(*[t for t in expr.args if t not in shifts])
        plain = [t for t in rest.args if not _late(t, self.late)] if rest.is_Add else ([] if _late(rest, self.late) else [rest])
        late = [t for t in (rest.args if rest.is_Add else [rest]) if t not in plain]
        head = sp.Add(*plain, *shifts, evaluate=False) if plain else sp.Add(*shifts)
        out = super()._print_Add(head) if head.is_Add else self._print(head)
        for t in sorted(late, key=sp.default_sort_key):
            if t.could_extract_minus_sign():
                out = f"({out} - {self.parenthesize(-t, PRECEDENCE['Add'])})"
            else:
                out = f"({out} + {self.parenthesize(t, PRECEDENCE['Add'])})"
        return out

    def _print_axis_max(self, expr):
        inner = f"_amax({self._print(expr.args[0])}, {self.axis})"
        return f"{inner}[..., None]" if self.jacobian and any(s.name.endswith("__top") for s in expr.args[0].free_symbols) else inner


def emit(expr, printer=None, fired=None) -> Emitted:
    """:func:`actgen.printing.emit` with the torch printer: straight-line torch code."""
    return _emit(expr, printer or ActgenTorchPrinter(), fired)


__all__ = ["ActgenTorchPrinter", "emit"]
