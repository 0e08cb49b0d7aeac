"""The JAX backend's printer: SymPy expressions to jax.numpy operations.

:class:`ActgenJaxPrinter` subclasses the PyTorch printer (itself a NumPy printer) and overrides only
what differs: the ``jnp.`` prefix, ``jnp.where`` selections (Python numbers are weakly typed in
JAX, so a selection between two numbers takes the input's dtype where it meets it: no helper is
needed), ``jnp.maximum``/``jnp.minimum`` against a number, and ``jax.scipy.special`` for the special
functions; tanh, cosh and sinh are the runtime's ``_tanh``, ``_cosh`` and ``_sinh`` (XLA's lose up to 7,
350 and 16 ulp in float64 where they saturate or grow), and log1p is its ``_log1p`` (XLA's loses up to
127 ulp on [-0.5, -0.1]). Bodies are straight-line code (:func:`actgen.printing.emit`), which ``jax.jit`` traces
once into one XLA computation; the runtime helpers keep their NumPy names and meaning and are
written without Python branches on values, so they trace under jit, vmap and grad.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from ...primitives import mul_exp, mul_exp_square
from ...printing import Emitted
from ...printing import emit as _emit
from ..torch.printer import ActgenTorchPrinter


class ActgenJaxPrinter(ActgenTorchPrinter):
    """``axis``: the class axis in class-axis bodies (always the last: the public functions move
    it there)."""

    printmethod = "_actgen_jax"

    def __init__(self, axis="-1", jacobian=False, like="z"):
        super().__init__(axis=axis, jacobian=jacobian, like=like)

    def _print_Integer(self, expr):
        # JAX makes a Python int a (weakly typed) int32 where x64 is off: one beyond its range is an
        # OverflowError, so it is printed as the float it becomes anyway (exact below 2**53)
        n = int(expr)
        return str(n) if abs(n) < 2**31 else repr(float(n))

    def _print_Mul(self, expr, **kwargs):
        # XLA on CPU flushes subnormal intermediates to zero: a product with an exponential is one
        # _mul_exp (exp(t) scaled into the normal range where it would be subnormal), and number
        # factors of a _mul_exp or _mul_exp_square join its u (2 (z exp(-z**2)) with z exp(-z**2)
        # subnormal in float32 but the product normal)
        carriers = [a for a in expr.args if isinstance(a, (mul_exp, mul_exp_square)) or (isinstance(a, sp.exp) and a.args[0].free_symbols)]
        if len(carriers) == 1:
            (carrier,) = carriers
            others = [a for a in expr.args if a is not carrier]
            if isinstance(carrier, sp.exp):
                # the numerator's factors are u; a denominator divides the product
                below = [a for a in others if a.is_Pow and a.exp.is_negative]
                u = sp.Mul(*[a for a in others if a not in below])
                if u == 1:  # exp(t)/d with exp(t) subnormal: the result is subnormal too (d >= 1 in the bodies)
                    return super()._print_Mul(expr, **kwargs)
                product = f"_mul_exp({self._print(u)}, {self._print(carrier.args[0])})"
                if not below:
                    return product
                return f"{product}/{self.parenthesize(sp.Mul(*[1 / a for a in below]), PRECEDENCE['Mul'] + 1)}"
            numbers = [a for a in others if a.is_number]
            if numbers:
                u = carrier.args[0]
                u = sp.Mul(*numbers, u, evaluate=False) if u.is_Add else sp.Mul(*numbers, u)
                folded = carrier.func(u, *carrier.args[1:])
                rest = [a for a in others if not a.is_number]
                return self._print(sp.Mul(*rest, folded)) if rest else self._print(folded)
        # x/q as the torch printer has it (one rounding), with a q beyond int32 as a float literal
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_Rational and not coeff.is_Integer and abs(coeff.p) == 1 and 2**31 <= coeff.q < 2**53 and rest != 1:
            body = f"{self.parenthesize(rest, PRECEDENCE['Mul'])}/{float(coeff.q)!r}"
            return f"(-{body})" if coeff.p < 0 else body
        return super()._print_Mul(expr, **kwargs)

    def _module_format(self, fqn, register=True):
        for prefix in ("numpy.", "math.", "torch."):
            if fqn.startswith(prefix):
                return "jnp." + fqn[len(prefix):]
        return super()._module_format(fqn, register)

    def _print_Piecewise(self, expr):
        (value, cond), rest = expr.args[0], expr.args[1:]
        if cond is sp.true:
            return self._print(value)
        other = self._print(sp.Piecewise(*rest)) if rest else "jnp.nan"
        return f"jnp.where({self._print(cond)}, {self._print(value)}, {other})"

    def _print_Not(self, expr):
        return f"jnp.logical_not({self._print(expr.args[0])})"

    def _minmax(self, expr, fn):
        numbers = [a for a in expr.args if a.is_number]
        others = [a for a in expr.args if not a.is_number]
        out = self._print(others[0])
        for a in others[1:]:
            out = f"jnp.{fn}({out}, {self._print(a)})"
        if numbers:
            bound = (max if fn == "maximum" else min)(float(n) for n in numbers)
            out = f"jnp.{fn}({out}, {bound!r})"
        return out

    def _print_format_tiny(self, expr):
        return f"jnp.finfo({self.like}.dtype).tiny"

    def _print_format_max(self, expr):
        return f"jnp.finfo({self.like}.dtype).max"

    def _print_Abs(self, expr):
        return f"jnp.abs({self._print(expr.args[0])})"

    def _print_sign(self, expr):
        return f"jnp.sign({self._print(expr.args[0])})"

    def _print_sech(self, expr):
        return f"1/_cosh({self._print(expr.args[0])})"

    def _print_cosh(self, expr):
        return f"_cosh({self._print(expr.args[0])})"

    def _print_tanh(self, expr):
        return f"_tanh({self._print(expr.args[0])})"

    def _print_sinh(self, expr):
        return f"_sinh({self._print(expr.args[0])})"

    def _print_expm1(self, expr):
        return f"jnp.expm1({self._print(expr.args[0])})"

    def _print_log1p(self, expr):
        # XLA's log1p loses up to 127 ulp in float64 on [-0.5, -0.1] and 2 ulp elsewhere (2.4 float32
        # ulps; measured against mpmath): the runtime's _log1p is within 1 (1.6)
        return f"_log1p({self._print(expr.args[0])})"

    def _print_hypot(self, expr):
        return f"jnp.hypot({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_normal_cdf(self, expr):
        return f"jsp.ndtr({self._print(expr.args[0])})"

    def _print_xlogy(self, expr):
        return f"jsp.xlogy({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_xlog1py(self, expr):
        return f"_xlog1py({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_erf(self, expr):
        return f"jsp.erf({self._print(expr.args[0])})"

    def _print_erfc(self, expr):
        return f"jsp.erfc({self._print(expr.args[0])})"

    def _print_class_count(self, expr):
        return f"{self._print(expr.args[0])}.shape[{self.axis}]"

    def _print_axis_sum(self, expr):
        outer, self._in_reduction = getattr(self, "_in_reduction", False), True
        try:
            inner = f"jnp.sum({self._print(expr.args[0])}, axis={self.axis}, keepdims=True)"
        finally:
            self._in_reduction = outer
        return f"{inner}[..., None]" if self.jacobian and not outer else inner


def emit(expr, printer=None, fired=None) -> Emitted:
    """:func:`actgen.printing.emit` with the JAX printer: straight-line jax.numpy code."""
    return _emit(expr, printer or ActgenJaxPrinter(), fired)


__all__ = ["ActgenJaxPrinter", "emit"]
