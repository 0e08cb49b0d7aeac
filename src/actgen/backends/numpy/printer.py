"""The NumPy backend's printer: SymPy expressions to NumPy source.

:class:`ActgenNumPyPrinter` subclasses SymPy's NumPyPrinter and is strict: a node it cannot print is
an error, never partial code. It owns every expression in the generated package; templates only
place the printed lines. :func:`emit_inplace` prints a body as ufunc calls that write into buffers no
longer needed (``out=``), the form every NumPy function of the package takes.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from ...primitives import at_max, axis_max, axis_sum, drop_max, erfcx, exp_damped, exp_shifted, exp_dd, mul_exp, mul_exp_dd, mul_exp_shared, sign_select
from ...printing import COL, ROW, TOP, Emitted, _bounded, _indicator, _indicator_parts, _late, _lowered_cse, _unit_interval
from ...printing import emit as _emit
from ...rules import EXPONENT_GATE, wants_double_double


class ActgenNumPyPrinter(NumPyPrinter):
    """NumPy printer for actgen's lowered expressions: ``np.`` prefix, float literals, no
    ``select`` (nested ``where`` instead), ufuncs for Max/Min, stable primitives, class-axis sums."""

    printmethod = "_actgen_numpy"

    def __init__(self, axis="axis", jacobian=False):
        super().__init__({"strict": True, "fully_qualified_modules": True})
        self.axis = axis
        self.jacobian = jacobian
        self.late = frozenset()  # CSE symbols whose values hold exponentials (see _late)
        self.definitions = {}  # CSE symbol -> its value, to print double-double arguments in full
        self.dd_names = {}  # double-double values computed so far -> their names
        self.pending = []  # (name, code) of double-double values not yet written out
        self.dd_prefix = "_d"  # names of double-double values: prefix and a number
        self.renamed = {}  # input symbol -> the name of its gathered elements (see _InPlace._sparse_branch)
        self.float_dtype = "np.float64"  # code for the dtype the body computes in (see emit_inplace)

    def _module_format(self, fqn, register=True):
        if fqn.startswith("numpy."):
            return "np." + fqn[len("numpy."):]
        return super()._module_format(fqn, register)

    # numbers: plain Python literals stay "weak" under NumPy's promotion rules, so float32 stays float32
    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_NumberSymbol(self, expr):
        return repr(float(expr))

    def _print_Exp1(self, expr):
        return repr(float(expr))

    def _print_Pi(self, expr):
        return repr(float(expr))

    def _print(self, expr, **kwargs):
        if isinstance(expr, sp.Expr) and expr.is_number and not expr.is_Integer and expr.is_real is not False and not expr.has(sp.oo, sp.zoo, sp.nan):
            value = float(sp.N(expr, 30))
            return repr(value) if value >= 0 else f"({value!r})"
        return super()._print(expr, **kwargs)

    def _print_Mul(self, expr, **kwargs):
        # the constant factors as one literal (sqrt(2)/sqrt(pi) is one rounding, not three)
        numbers = [a for a in expr.args if a.is_number]
        if len(numbers) > 1 and len(numbers) < len(expr.args):
            rest = sp.Mul(*[a for a in expr.args if not a.is_number])
            return f"{self._print(sp.Mul(*numbers))}*{self.parenthesize(rest, PRECEDENCE['Mul'])}"
        return super()._print_Mul(expr, **kwargs)

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp.is_Integer:
            n = int(exp)
            b = self.parenthesize(base, PRECEDENCE["Pow"])
            if n == -1:
                return f"1/{b}"
            if n < 0:
                return f"1/{b}**{-n}"
            return f"{b}**{n}"
        if exp == sp.Rational(1, 2):
            return f"{self._module_format('numpy.sqrt')}({self._print(base)})"
        if exp == -sp.Rational(1, 2):
            return f"1/{self._module_format('numpy.sqrt')}({self._print(base)})"
        return f"{self.parenthesize(base, PRECEDENCE['Pow'])}**{self.parenthesize(exp, PRECEDENCE['Pow'])}"

    def _print_Add(self, expr, order=None):
        # terms without exponentials first, explicitly grouped: (1 - y) - q keeps a tiny q that
        # (-q - y) + 1 would lose to cancellation
        terms = sorted(expr.args, key=lambda t: (_late(t, self.late), sp.default_sort_key(t)))
        out = ""
        for t in terms:
            if not out:
                out = self._print(t) if not t.could_extract_minus_sign() else f"-{self.parenthesize(-t, PRECEDENCE['Mul'])}"
                continue
            if t.could_extract_minus_sign():
                out = f"({out} - {self.parenthesize(-t, PRECEDENCE['Add'])})"
            else:
                out = f"({out} + {self.parenthesize(t, PRECEDENCE['Add'])})"
        return out

    def _print_Piecewise(self, expr):
        # two constant branches: an indicator (a boolean array; the caller casts it to the
        # floating dtype), or b + (a - b)*indicator, far cheaper than where() with scalars
        if _indicator(expr):
            negated, scale, offset = _indicator_parts(expr)
            code = f"{'~' if negated else ''}({self._print(expr.args[0][1])})"
            if scale != 1:
                code = f"{self._print(scale)}*{code}"
            return f"({self._print(offset)} + {code})" if offset != 0 else code
        # nested where(): branches are already clamped to their domain by rules.CLAMP_BRANCHES
        (value, cond), rest = expr.args[0], expr.args[1:]
        if cond is sp.true:
            return self._print(value)
        other = self._print(sp.Piecewise(*rest)) if rest else "np.nan"
        return f"np.where({self._print(cond)}, {self._print(value)}, {other})"

    def _print_Relational(self, expr):
        ops = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
        op = ops[expr.rel_op]
        return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"

    def _print_And(self, expr):
        return " & ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Or(self, expr):
        return " | ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Not(self, expr):
        return f"~({self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"

    def _minmax(self, expr, fn):
        args = [self._print(a) for a in expr.args]
        out = args[0]
        for a in args[1:]:
            out = f"np.{fn}({out}, {a})"
        return out

    def _print_Max(self, expr):
        return self._minmax(expr, "maximum")

    def _print_Min(self, expr):
        return self._minmax(expr, "minimum")

    def _print_Abs(self, expr):
        return f"np.abs({self._print(expr.args[0])})"

    def _print_sign(self, expr):
        return f"np.sign({self._print(expr.args[0])})"

    def _print_sech(self, expr):
        return f"1/np.cosh({self._print(expr.args[0])})"

    def _print_expm1(self, expr):
        return f"np.expm1({self._print(expr.args[0])})"

    def _print_log1p(self, expr):
        return f"np.log1p({self._print(expr.args[0])})"

    def _print_add_exact_constant(self, expr):
        hi, lo = expr.parts()
        return f"(({self._print(expr.args[0])} + {hi!r}) + {lo!r})"

    def _print_format_tiny(self, expr):
        return f"np.finfo({self.float_dtype}).tiny"

    def _print_format_max(self, expr):
        return f"np.finfo({self.float_dtype}).max"

    def _print_ratio(self, expr):
        a, b = expr.args
        return f"({self.parenthesize(a, PRECEDENCE['Mul'])}/{self.parenthesize(b, PRECEDENCE['Mul'] + 1)})"

    def _print_hypot(self, expr):
        return f"{self._module_format('numpy.hypot')}({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_softplus(self, expr):
        return f"np.logaddexp(0, {self._print(expr.args[0])})"

    def _print_normal_cdf(self, expr):
        return f"_special().ndtr({self._print(expr.args[0])})"

    def _print_xlogy(self, expr):
        return f"_special().xlogy({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_xlog1py(self, expr):
        return f"_special().xlog1py({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_mul_exp(self, expr):
        return f"_mul_exp({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_mul_exp_shared(self, expr):
        u, x, t, a, b = expr.args
        return f"_mul_exp_shared({self._print(u)}, {self._print(x)}, {self._print(t)}, {a}, {b})"

    def _print_sign_select(self, expr):
        return self._print(expr.rewrite(sp.Piecewise))

    def _print_mul_exp_square(self, expr):
        u, t, c = expr.args
        return f"_mul_exp_square({self._print(u)}, {self._print(t)}, {self._square_constant(c)})"

    def _square_constant(self, c):
        """exp_square's constant: as a float when one holds it exactly, else as the pair (float,
        remainder), whose remainder the runtime's _scale_parts carries (exp(c t**2) amplifies the
        rounding of c by |c| t**2: 279 ulp for c = -(1.702/1.002)**2 at t = 15.6)."""
        if not c.is_number or (c.is_Rational and sp.Rational(float(c)) == c):
            return self._print(c)
        high = float(sp.N(c, 40))
        return f"({high!r}, {float(sp.N(c - sp.Rational(high), 20))!r})"

    def _print_exp_damped(self, expr):
        return self._print(sp.exp(expr.args[0]))

    def _print_exp_dd(self, expr):
        return f"_exp_dd({self._dd(expr.args[0])})"

    def _print_sin_dd(self, expr):
        return f"_sin_dd({self._dd(expr.args[0])})"

    def _print_cos_dd(self, expr):
        return f"_cos_dd({self._dd(expr.args[0])})"

    def _print_mul_exp_dd(self, expr):
        u, t = expr.args
        if wants_double_double(u):
            # a polynomial factor is rounded once too (its high part), not after each operation
            return f"_mul_exp_dd({self._dd(u)}[0], {self._dd(t)})"
        return f"_mul_exp_dd({self._print(u)}, {self._dd(t)})"

    def _dd(self, e):
        """Code evaluating ``e`` in double-double arithmetic: a (high, low) pair. Common
        subexpressions are expanded back to the inputs (their float values have already rounded),
        constants are split into the float nearest them and the remainder."""
        if e in self.definitions:
            return self._dd(self.definitions[e])
        if e in self.dd_names:
            return self.dd_names[e]
        if type(e).__name__ == "add_exact_constant":  # in double-double the constant is split anyway
            return self._dd(e.args[0] + e.args[1])
        if e.is_number:
            value = sp.N(e, 40)
            high = float(value)
            low = float(sp.N(value - sp.Float(high, 40), 20))
            return f"({high!r}, {low!r})"
        if e.is_Symbol:
            return f"({self._print(e)}, 0.0)"
        # each compound value is computed once, into a pair named _dN (pending until the emitter
        # writes it out before the statement that uses it)
        if e.is_Pow and e.exp.is_Integer and e.exp > 0:
            code = f"_dd_pow({self._dd(e.base)}, {int(e.exp)})"
        elif isinstance(e, sp.Abs):
            code = f"_dd_abs({self._dd(e.args[0])})"
        else:
            calls = {sp.Add: "_dd_add", sp.Mul: "_dd_mul", sp.Min: "_dd_min", sp.Max: "_dd_max"}
            kind = next((k for k in calls if isinstance(e, k)), None)
            if kind is None:
                raise TypeError(f"no double-double evaluation for {e}")
            args = list(e.args)
            if kind is sp.Mul:  # the constant factors as one constant, split once
                numbers = [a for a in args if a.is_number]
                args = ([sp.Mul(*numbers)] if numbers else []) + [a for a in args if not a.is_number]
            parts = [self._dd(a) for a in args]
            code = parts[0]
            for other in parts[1:]:
                code = f"{calls[kind]}({code}, {other})"
        name = f"{self.dd_prefix}{len(self.dd_names)}"
        self.dd_names[e] = name
        self.pending.append((name, code))
        return name

    def _expanded(self, e):
        """``e`` with common subexpressions replaced by their values, down to the inputs."""
        while e.free_symbols & set(self.definitions):
            e = e.xreplace(self.definitions)
        return e

    def _print_erfcx(self, expr):
        u = self._expanded(expr.args[0])
        if wants_double_double(u):
            # -z/sqrt(2): the argument's rounding error is passed on (erfcx' = 2x erfcx - 2/sqrt(pi))
            code = self._dd(u)
            return f"_erfcx({code}[0], {code}[1])"
        return f"_erfcx({self._print(u)})"

    def _print_exp_square(self, expr):
        return f"_exp_square({self._print(expr.args[0])}, {self._square_constant(expr.args[1])})"

    def _print_erf(self, expr):
        return f"_special().erf({self._print(expr.args[0])})"

    def _print_erfc(self, expr):
        return f"_special().erfc({self._print(expr.args[0])})"

    def _print_class_count(self, expr):
        return f"np.size({self._print(expr.args[0])}, axis={self.axis})"

    def _print_axis_sum(self, expr):
        # inside a class-axis reduction arrays have their plain shape (..., K); only the
        # reduction's result is broadcast against the (..., K, K) of a Jacobian
        outer, self._in_reduction = getattr(self, "_in_reduction", False), True
        try:
            inner = f"np.sum({self._print(expr.args[0])}, axis={self.axis}, keepdims=True)"
        finally:
            self._in_reduction = outer
        return f"{inner}[..., None]" if self.jacobian and not outer else inner

    def _print_exp_shifted(self, expr):
        if len(expr.args) == 1:
            return f"_exp_shifted({self._print(expr.args[0])}, {self.axis})"
        c = expr.args[1]
        if c == 1:  # shifted whatever the size of z (the body subtracts the max elsewhere too)
            return f"_exp_shifted({self._print(expr.args[0])}, {self.axis}, shift=True)"
        if c.is_Pow and c.exp == -1:  # exp((z - M)/T): divided, so that 1/T is not rounded first
            return f"_exp_shifted({self._print(expr.args[0])}, {self.axis}, divisor={self._print(c.base)})"
        return f"_exp_shifted({self._print(expr.args[0])}, {self.axis}, scale={self._print(c)})"

    def _print_at_max(self, expr):
        return f"_at_max({self._print(expr.args[0])}, {self._print(expr.args[1])}, {self.axis})"

    def _print_centered(self, expr):
        return f"_centered({self._print(expr.args[0])}, {self._print(expr.args[1])}, {self.axis})"

    def _print_drop_max(self, expr):
        return f"_drop_max({self._print(expr.args[0])}, {self.axis})"

    def _print_axis_max(self, expr):
        inner = f"np.max({self._print(expr.args[0])}, axis={self.axis}, keepdims=True, initial=-np.inf)"  # an empty axis has no max
        return f"{inner}[..., None]" if self.jacobian and any(s.name.endswith("__" + TOP) for s in expr.args[0].free_symbols) else inner

    def _print_KroneckerDelta(self, expr):
        return "_eye"

    def _print_Symbol(self, expr):
        if expr in self.renamed:
            return self.renamed[expr]
        name = expr.name
        if name.endswith("__" + TOP):
            return name[: -len(TOP) - 2]
        if self.jacobian and name.endswith("__" + ROW):
            return f"{name[:-len(ROW) - 2]}[..., :, None]"
        if self.jacobian and name.endswith("__" + COL):
            return f"{name[:-len(COL) - 2]}[..., None, :]"
        return name


# -- in-place emission: the fewest fresh arrays for elementwise functions ----------------------------

# nodes that cost tens of operations per element (a Taylor table, double-double arithmetic, SciPy's
# erf and erfc, 10-20 ns per element against 1-3 for a gather and a scatter): a Piecewise branch
# that contains one directly is evaluated only on the elements that take it
SPARSE = (erfcx, exp_dd, mul_exp_dd, sp.erf, sp.erfc)

_UNARY = {sp.exp: "exp", exp_damped: "exp", sp.log: "log", sp.tanh: "tanh", sp.cosh: "cosh", sp.sinh: "sinh", sp.Abs: "absolute", sp.sign: "sign", sp.atan: "arctan", sp.sin: "sin", sp.cos: "cos"}


def _is_shift(full):
    """A term that is (a multiple of) the class max, with no exponential or logarithm."""
    return full.has(axis_max) and not full.has(sp.log, sp.exp, exp_shifted, log1p, drop_max)


class _InPlace:
    """Prints an expression as a sequence of NumPy ufunc calls that reuse temporary arrays through
    ``out=``: every 8 MB temporary a ufunc allocates costs page faults, so writing into a buffer
    that is no longer needed is often the largest speed-up available in NumPy.

    A buffer is overwritten only when nothing later reads it: a fresh temporary of the expression
    being printed, or a common subexpression at its last use (counted over the whole body). Class
    reductions (``axis_sum``, ``axis_max``) have a length-1 class axis; a buffer is only written with
    a result of its own shape. Nodes without a ufunc (where, special functions) are printed by the
    ordinary printer and their results become fresh temporaries."""

    def __init__(self, printer, arrays, uses):
        self.printer = printer
        self.arrays = set(arrays)  # symbols bound to arrays (inputs and CSE temporaries)
        self.uses = dict(uses)  # CSE symbol name -> reads still to come
        self.reusable = set()  # CSE symbols whose value is a buffer of their own
        self.reduced = set()  # codes of arrays with a length-1 class axis
        self.lines: list[tuple[str, str]] = []
        self.count = 0
        self.live = set()  # float buffers of this body that hold a value still to be read
        self.workspace = False  # new full-shape buffers come from _w (see emit_inplace)
        self.slots = 0  # workspace buffers used
        self.free = []  # float buffers whose value nobody reads any more: outputs for later ufuncs
        self.expanded = {}  # CSE symbol -> its value in terms of the inputs
        self.slot_of = {}  # buffer name -> its workspace slot

    @property
    def float_dtype(self):
        """Code for the dtype of new float buffers: the printer's working dtype (see emit_inplace)."""
        return self.printer.float_dtype

    def is_array(self, e):
        return bool(e.free_symbols & self.arrays)

    def is_reduced(self, e):
        """True when every array in ``e`` sits inside a class reduction (or is one)."""
        if isinstance(e, (axis_sum, axis_max, at_max)):
            return True
        if e.is_Symbol:
            return e.name in self.reduced
        return all(self.is_reduced(a) for a in e.args if self.is_array(a)) if e.args else False

    def flush(self):
        """Write out the double-double values the printer produced for the next statement."""
        self.lines.extend(self.printer.pending)
        self.printer.pending = []

    def assign(self, code, reduced=False, buffer=True):
        """A new name for ``code``'s value; ``buffer``: it is a float array this body owns."""
        self.flush()
        self.count += 1
        name = f"_b{self.count}"
        self.lines.append((name, code))
        if reduced:
            self.reduced.add(name)
        if buffer:
            self.live.add(name)
        return name

    def _fresh(self, fn, args, e, avoid=()):
        """``np.fn(*args)`` into a buffer whose value is dead (of the result's shape), else a new
        one; never into an argument or a name in ``avoid`` (read after this statement)."""
        result_reduced = self.is_reduced(e)
        for i, buffer in enumerate(self.free):
            if (buffer in self.reduced) == result_reduced and buffer not in args and buffer not in avoid:
                del self.free[i]
                self.flush()
                self.lines.append(("", f"np.{fn}({', '.join(args)}, out={buffer})"))
                self.live.add(buffer)
                return buffer
        if self.workspace and not result_reduced:
            self.slots += 1
            name = self.assign(f"np.{fn}({', '.join(args)}, out=_w[{self.slots - 1}])")
            self.slot_of[name] = self.slots - 1
            return name
        # asarray: a ufunc on a 0-d array returns a NumPy scalar, which cannot take out=
        return self.assign(f"np.asarray(np.{fn}({', '.join(args)}))", reduced=result_reduced)

    def gen(self, e):
        """(code, owned): owned means the value is in a buffer nobody reads later."""
        if not self.is_array(e):
            return self.printer.doprint(e), False
        if e.is_Symbol:
            # a read happens when the statement that consumes it runs (see _call), not here
            return self.printer.doprint(e), False
        if isinstance(e, (axis_sum, axis_max)):
            arg, _owned = self.gen(e.args[0])
            fn = "sum" if isinstance(e, axis_sum) else "max"
            extra = ", initial=-np.inf" if fn == "max" else ""  # an empty class axis has no max
            code = self.assign(f"np.asarray(np.{fn}({arg}, axis={self.printer.axis}, keepdims=True{extra}))", reduced=True)
            self._consume((arg,))
            return code, True
        if e.is_Add:
            return self._add(e)
        if e.is_Mul:
            return self._mul(e)
        if e.is_Pow and e.exp.is_Integer:
            base, owned = self.gen(e.base)
            n = int(e.exp)
            target = base if owned else None
            if n == 2:
                return self._call("square", (base,), target, e), True
            if n == -1:
                return self._call("divide", ("1", base), target, e), True
            if n == 1:
                return base, owned
            if abs(n) in (3, 4) and self.is_array(e.base):
                # products of squares: np.power calls pow() per element (50 ns; a multiply is 0.6)
                square = self._fresh("square", (base,), e)
                if abs(n) == 3:
                    value = self._call("multiply", (square, base), square, e)
                else:
                    value = self._call("square", (square,), square, e)
                    self._consume((base,))
                return (self._call("divide", ("1", value), value, e) if n < 0 else value), True
            value = self._call("power", (base, str(abs(n))), target, e)
            return (self._call("divide", ("1", value), value, e) if n < 0 else value), True
        fn = _UNARY.get(e.func)
        if fn is None and type(e).__name__ in ("expm1", "log1p"):
            fn = type(e).__name__
        if fn is not None:
            arg, owned = self.gen(e.args[0])
            return self._call(fn, (arg,), arg if owned else None, e), True
        if type(e).__name__ in ("hypot", "ratio"):
            (a, ao), (b, bo) = self.gen(e.args[0]), self.gen(e.args[1])
            fn = "hypot" if type(e).__name__ == "hypot" else "divide"
            return self._call(fn, (a, b), self._target(e, (a, ao), (b, bo)), e), True
        if isinstance(e, (sp.Max, sp.Min)) and len(e.args) == 2:
            (a, ao), (b, bo) = self.gen(e.args[0]), self.gen(e.args[1])
            fn = "maximum" if isinstance(e, sp.Max) else "minimum"
            if not self.is_reduced(e):
                # against a constant array of the operand's shape (the runtime's _filled): NumPy
                # 2.4's minimum/maximum have no SIMD loop for a scalar operand (~0.5 ns per element
                # against ~0.2 for two arrays)
                if not self.is_array(e.args[0]):
                    a = f"_filled({a}, {b})"
                elif not self.is_array(e.args[1]):
                    b = f"_filled({b}, {a})"
            return self._call(fn, (a, b), self._target(e, (a, ao), (b, bo)), e), True
        if isinstance(e, sign_select):
            e = e.rewrite(sp.Piecewise)  # built here, after CSE: its powers stay unfolded
        if isinstance(e, sp.Piecewise):
            done = self._piecewise_constant(e)
            if done is None:
                done = self._indicator_passes(e) if _indicator(e) else self._piecewise_select(e)
            if done is not None:
                return done
        if isinstance(e, mul_exp) and self.is_array(e.args[1]) and not self.is_reduced(e):
            return self._mul_exp(e)
        if isinstance(e, mul_exp_shared) and not self.is_reduced(e):
            return self._mul_exp_shared(e)
        # no ufunc: print as is (reads are counted); a where() with constant branches is not a
        # float buffer
        for sym in e.free_symbols & self.arrays:
            if sym.name in self.uses:
                self.uses[sym.name] -= e.count(sym)
        code = self.printer.doprint(e)
        # an indicator (a Piecewise of constants, printed as a comparison) becomes a float array
        # here: arithmetic on booleans would give integer arrays that cannot take float results
        dtype = f", dtype={self.float_dtype}" if isinstance(e, sp.Piecewise) and not any(self.is_array(v) for v, _ in e.args) else ""
        return self.assign(f"np.asarray({code}{dtype})", reduced=self.is_reduced(e)), True

    def _mul_exp(self, e):
        """u exp(t) as ufunc passes: exp(t) into a fresh buffer, times u in place, then the runtime's
        in-place repair of the elements where exp(t) was subnormal (a reduction over t, and
        nothing more, when there are none)."""
        u, t = e.args
        t_code, _t_owned = self.gen(t)
        u_code, _u_owned = self.gen(u)
        name = self._fresh("exp", (t_code,), e, avoid=(u_code,))
        self.lines.append(("", f"np.multiply({u_code}, {name}, out={name})"))
        self.lines.append(("", f"_mul_exp_tail({name}, {u_code}, {t_code})"))
        self._consume((t_code, u_code), keep=(name,))
        return name, True

    def _mul_exp_shared(self, e):
        """u exp(s) from x = exp(s): u x into x's buffer when this body owns it (else a spare one),
        then the runtime's repair of the elements where exp(s) is subnormal (two reductions over
        t, and nothing more, when there are none)."""
        u, x, t, a, b = e.args
        x_code, x_owned = self.gen(x)
        u_code, _u_owned = self.gen(u)
        t_code, _t_owned = self.gen(t)
        target = x_code if x_owned else self._spare(avoid=(u_code, t_code, x_code))
        call = f"_mul_exp_shared({u_code}, {x_code}, {t_code}, {a}, {b}"
        if target is None:
            target = self.assign(f"np.asarray({call}))")
        else:
            self.flush()
            self.lines.append(("", f"{call}, out={target})"))
        self._consume((u_code, x_code, t_code), keep=(target,))
        return target, True

    def _piecewise_constant(self, e):
        """Piecewise((c, cond), (f, True)) with a constant c (or the mirror image) and a branch f
        that is finite everywhere, chosen with the 0/1 indicator h of where c applies: for f in
        [0, 1] and c = 1, max(f, h) (for c = 0, min(f, 1 - h)), two passes; else f (1 - h) + c h,
        four. Both exact for h in {0, 1}. Other Piecewise go to _piecewise_select."""
        if len(e.args) != 2 or e.args[1][1] is not sp.true or self.is_reduced(e):
            return None
        (first, cond), (second, _) = e.args
        if not self.is_array(first) and self.is_array(second):
            constant, branch, mask = first, second, "({})"
        elif self.is_array(first) and not self.is_array(second):
            constant, branch, mask = second, first, "~({})"
        else:
            return None
        full = branch.xreplace(self.expanded)  # common subexpressions written out
        if self.is_reduced(branch) or self.is_array(constant) or not _bounded(full, self.arrays):
            return None
        # the branch is generated while the condition's reads are still pending, so no buffer
        # the condition reads is overwritten
        code, owned = self.gen(branch)
        self._read(cond)
        selector = mask.format(self.printer.doprint(cond))
        if constant in (0, 1) and _unit_interval(full):
            # a branch in [0, 1] against 0 or 1: the choice is a maximum with the 0/1 indicator of
            # where the constant 1 applies (or a minimum with that of where the branch applies,
            # against 0), exact, two passes
            h = self._spare(avoid=(code,))
            where = selector if constant == 1 else ("~({})" if mask == "({})" else "({})").format(self.printer.doprint(cond))
            if h is None:
                h = self.assign(f"np.asarray({where}, dtype={self.float_dtype})")
            else:
                self.flush()
                self.lines.append(("", f"np.copyto({h}, {where})"))
            self.lines.append(("", f"np.{'maximum' if constant == 1 else 'minimum'}({code}, {h}, out={h})"))
            self._consume((code,), keep=(h,))
            return h, True
        code = self._own(code, owned)
        h = self._spare(avoid=(code,))
        if h is None:
            h = self.assign(f"np.asarray({selector}, dtype={self.float_dtype})")
        else:
            self.flush()
            self.lines.append(("", f"np.copyto({h}, {selector})"))
        g = self._spare(avoid=(code, h))
        if g is None:
            g = self.assign(f"np.subtract(1, {h})")
        else:
            self.lines.append(("", f"np.subtract(1, {h}, out={g})"))
        self.lines.append(("", f"np.multiply({code}, {g}, out={code})"))
        if constant != 0:
            if constant != 1:
                self.lines.append(("", f"np.multiply({h}, {self.printer.doprint(constant)}, out={h})"))
            self.lines.append(("", f"np.add({code}, {h}, out={code})"))
        self._consume((h, g), keep=(code,))
        return code, True

    def _piecewise_select(self, e):
        """A Piecewise ending in an otherwise-branch, with full-shape arrays: the last branch into
        a buffer of this body, then each earlier branch copied into it where its condition holds,
        from the last to the first (the first true condition wins), by the runtime's _select (bit
        masks: exact for every value, ~1 ns per element where np.where and copyto(where=) take
        3.5-4.5 on an unsorted mask). Every branch is evaluated everywhere, as np.where would (the
        rules have clamped each to its domain), except a branch built on a table or on
        double-double arithmetic (SPARSE), which is evaluated only on the elements it gives: its
        inputs are gathered where no earlier condition holds and its own does, and its values
        scattered back there after the other branches (see _sparse_branch); when every branch is
        such, each element is written once, by its branch."""
        if e.args[-1][1] is not sp.true or self.is_reduced(e) or any(self.is_reduced(v) or self.is_reduced(c) for v, c in e.args):
            return None
        sparse = [k for k, (value, _cond) in enumerate(e.args) if self.is_array(value) and value.has(*SPARSE)]
        cheap = [k for k in range(len(e.args)) if k not in sparse]
        # the masks first: they read the conditions before any buffer of this body is reused
        masks = {k: self._mask(e, k) for k in sparse}
        if not cheap:  # every element is written by exactly one branch's scatter
            code = self._spare()
            if code is None:
                code = self.assign(f"np.empty({self._shape(e)}, dtype={self.float_dtype})")
            for k in sparse:
                self._sparse_branch(e.args[k], masks[k], code)
            return code, True
        last = e.args[cheap[-1]][0]  # the value in the buffer before any selection
        # a body computed in float32 keeps a double-double branch's float64 values in a float64
        # buffer: rounded to float32 there and again by the operations after it, the result would
        # round twice (1 float32 ulp more in gelu_tanh)
        wide = self.float_dtype != "np.float64" and any(e.args[k][0].has(exp_dd, mul_exp_dd) for k in sparse)
        if wide and self.is_array(last):
            v_code, _v_owned = self.gen(last)
            self._consume((v_code,))
            code = self.assign(f"np.array({v_code}, dtype=np.float64)")
        elif self.is_array(last):
            code = self._own(*self.gen(last))
        else:
            constant = self.printer.doprint(last)
            code = self._spare()
            if code is None:
                shape_of = sorted(e.free_symbols & self.arrays, key=str)[0]
                code = self.assign(f"np.full(np.shape({shape_of}), {constant}, dtype={self.float_dtype})")
            else:
                self.flush()
                self.lines.append(("", f"np.copyto({code}, {constant})"))
        for k in reversed(cheap[:-1]):
            value, cond = e.args[k]
            v_code, _v_owned = self.gen(value)
            self._read(cond)
            scratch = self._spare(avoid=(code, v_code))
            self.flush()
            self.lines.append(("", f"_select({self.printer.doprint(cond)}, {v_code}, {code}{', ' + scratch if scratch else ''})"))
            self._consume((v_code,) + ((scratch,) if scratch else ()), keep=(code,))
        for k in sparse:
            self._sparse_branch(e.args[k], masks[k], code)
        return code, True

    def _mask(self, e, k):
        """The flat indices, named, of the elements for which branch ``k`` of ``e`` is the first
        whose condition holds (NaN compares false, so a NaN element goes where the select would
        put it). Indices, not a boolean mask: take and put cost 0.2-1.2 ns per element where a
        boolean gather or scatter costs 4 (NumPy 2.4)."""
        parts = [f"~{self.printer.doprint(c)}" for _v, c in e.args[:k]]
        cond = e.args[k][1]
        if cond is not sp.true:
            parts.append(self.printer.doprint(cond))
        return self.assign(f"np.flatnonzero(np.broadcast_to({' & '.join(parts)}, {self._shape(e)}))", buffer=False)

    def _shape(self, e):
        """Code for the shape of ``e``'s full arrays (the body's arrays all have one shape)."""
        return f"np.shape({self.printer.doprint(sorted(e.free_symbols & self.arrays, key=str)[0])})"

    def _sparse_branch(self, branch, index, code):
        """``code`` at the flat ``index`` set to the branch's value, computed from the arrays it
        reads gathered there: the inputs, and the common subexpressions already computed (a take
        costs ~1 ns per element, less than computing one again; and the value keeps the bits of
        the full-array evaluation: gelu_tanh's derivative reads its polynomial factor as a float,
        where written out in the inputs the printer would evaluate it in double-double). Only the
        arrays the printed code reads are gathered: a double-double argument is printed from the
        inputs whatever common subexpressions it shares."""
        value, cond = branch
        self._read(value)
        self._read(cond)
        printer = self.printer
        candidates = sorted(value.free_symbols & self.arrays, key=str)
        for sym in list(candidates):  # the inputs of double-double arguments (written out)
            if sym in self.expanded:
                candidates += [s for s in self.expanded[sym].free_symbols & self.arrays if s not in candidates]
        placeholder = {sym: f"__gathered_{k}__" for k, sym in enumerate(candidates)}
        # printed in terms of the same symbols (the printer's rules look at them), which print as
        # the gathered arrays; double-double values of the full arrays do not apply here
        saved = printer.dd_names, printer.dd_prefix, printer.pending
        printer.dd_names, printer.dd_prefix, printer.renamed, printer.pending = {}, f"_d{index.lstrip('_b')}_", placeholder, []
        try:
            printed = printer.doprint(value)
            pending = printer.pending
        finally:
            printer.dd_names, printer.dd_prefix, printer.pending = saved
            printer.renamed = {}
        self.flush()  # what was pending before this branch
        text = printed + " ".join(line for _, line in pending)
        names = {}
        for sym in candidates:
            if placeholder[sym] in text:
                names[placeholder[sym]] = self.assign(f"np.broadcast_to({printer.doprint(sym)}, np.shape({code})).take({index})", buffer=False)

        def named(line):
            for hole, name in names.items():
                line = line.replace(hole, name)
            return line

        printer.pending = [(name, named(line)) for name, line in pending]
        self.flush()
        self.lines.append(("", f"{code}.put({index}, {named(printed)})"))

    def _indicator_passes(self, e):
        """A Piecewise of two numbers (see the module's _indicator) as ufunc passes into a spare
        buffer (see _indicator_parts). None outside workspace mode (the printer's arithmetic
        expression, a fresh array, is used)."""
        if self.is_reduced(e):
            return None
        cond = e.args[0][1]
        buffer = self._spare()
        if buffer is None:
            return None
        self._read(cond)
        self.flush()
        negated, scale, offset = _indicator_parts(e)
        self.lines.append(("", f"np.copyto({buffer}, {'~' if negated else ''}({self.printer.doprint(cond)}))"))
        if scale != 1:
            self.lines.append(("", f"np.multiply({buffer}, {self.printer.doprint(scale)}, out={buffer})"))
        if offset != 0:
            self.lines.append(("", f"np.add({buffer}, {self.printer.doprint(offset)}, out={buffer})"))
        return buffer, True

    def _own(self, code, owned):
        """``code``'s value in a float buffer of this body: itself when owned, else a copy (a
        read-only operand: an input or a shared temporary)."""
        if owned:
            return code
        self._consume((code,))
        buffer = self._spare()
        if buffer is None:
            return self.assign(f"np.array({code}, dtype={self.float_dtype})")
        self.flush()
        self.lines.append(("", f"np.copyto({buffer}, {code})"))
        return buffer

    def _read(self, cond):
        """Count the reads of a condition's arrays (printed inline, after its branches)."""
        for sym in cond.free_symbols & self.arrays:
            if sym.name in self.uses:
                self.uses[sym.name] -= cond.count(sym)

    def _spare(self, avoid=()):
        """A full-shape float buffer to write into: a dead one, else a new workspace slot; None
        outside workspace mode (the callee allocates)."""
        for i, buffer in enumerate(self.free):
            if buffer not in self.reduced and buffer not in avoid:
                del self.free[i]
                self.live.add(buffer)
                return buffer
        if self.workspace:
            self.slots += 1
            name = self.assign(f"_w[{self.slots - 1}]")
            self.slot_of[name] = self.slots - 1
            return name
        return None

    def _target(self, e, *operands):
        """An operand buffer that may receive the result of ``e``: owned, and of the result's shape."""
        result_reduced = self.is_reduced(e)
        for code, owned in operands:
            if owned and (code in self.reduced) == result_reduced:
                return code
        return None

    def _consume(self, args, keep=()):
        """Count the reads of ``args``; a buffer read for the last time (a temporary owned by the
        caller, or a common subexpression with no reads left) becomes free, unless kept (it holds
        the result)."""
        for a in args:
            if a in self.uses:
                self.uses[a] -= 1
                if self.uses[a] == 0 and a in self.reusable and a not in keep and a not in self.free:
                    self.free.append(a)
            elif a in self.live and a not in keep:
                self.live.discard(a)
                self.free.append(a)

    def _call(self, fn, args, target, e):
        if target is None:
            # a common subexpression read for the last time by this very statement can take the
            # result (every other read, pending in a caller or still to come, is counted in uses)
            result_reduced = self.is_reduced(e)
            for a in args:
                if a in self.reusable and self.uses.get(a, 0) - args.count(a) == 0 and (a in self.reduced) == result_reduced:
                    target = a
                    break
        if target is None:
            code = self._fresh(fn, args, e)
            self._consume(args, keep=(code,))
            return code
        self.flush()
        self.lines.append(("", f"np.{fn}({', '.join(args)}, out={target})"))
        self._consume(args, keep=(target,))
        return target

    def _add(self, e):
        parts = []
        for t in e.args:
            coeff, rest = t.as_coeff_Mul()
            if coeff.is_number and coeff < 0 and self.is_array(rest):
                parts.append(("subtract", -t))
            else:
                parts.append(("add", t))
        # terms without exponentials first (exact cancellations happen before tiny terms are
        # added), then full-shape array terms, so that reductions and scalars broadcast into them
        # (the order only matters for accuracy when two or more early terms can cancel exactly)
        early = sum(1 for _, t in parts if not _late(t, self.printer.late))
        # a shift by the class max comes right after the plain terms: (z - M) - log1p(R) is exact
        # for the largest logit, (z - log1p(R)) - M cancels (as the torch printer's _print_Add)
        shifts = {t for _, t in parts if _is_shift(t.xreplace(self.expanded))}
        if shifts and len(shifts) < len(parts):
            parts.sort(key=lambda p: (0 if not _late(p[1], self.printer.late) else 1 if p[1] in shifts else 2, p[0] != "add"))
        else:
            parts.sort(key=lambda p: (early > 1 and _late(p[1], self.printer.late), p[0] != "add", not self.is_array(p[1]), self.is_reduced(p[1])))
        acc, owned = self.gen(parts[0][1])
        if parts[0][0] == "subtract":
            acc = self._call("negative", (acc,), acc if owned else None, parts[0][1])
            owned = True
        partial = parts[0][1] if parts[0][0] == "add" else -parts[0][1]
        for fn, t in parts[1:]:
            code, t_owned = self.gen(t)
            partial = partial + t if fn == "add" else partial - t
            target = self._target(partial, (acc, owned), (code, t_owned) if fn == "add" else (code, t_owned))
            args = (acc, code) if not (target == code and fn == "add") else (code, acc)
            acc, owned = self._call(fn, args, target, partial), True
        return acc, owned

    def _mul(self, e):
        num, den = [], []
        for f in e.args:
            if f.is_Pow and f.exp.is_Integer and f.exp < 0 and self.is_array(f.base):
                den.append(f.base ** (-f.exp))
            else:
                num.append(f)
        scalars = [f for f in num if not self.is_array(f)]
        arrays = sorted((f for f in num if self.is_array(f)), key=self.is_reduced)
        if not arrays:  # scalar / array: one division (one rounding, one pass)
            acc, owned = self.gen(sp.Mul(*den))
            numerator = self.printer.doprint(sp.Mul(*scalars)) if scalars else "1"
            partial = sp.Mul(*scalars) / sp.Mul(*den)
            acc = self._call("divide", (numerator, acc), acc if owned else None, partial)
            return acc, True
        else:
            # per-row reciprocals of reduced denominators first: the reductions then read every
            # common subexpression before the products below may overwrite it in place
            recips = {}
            row_factor = None
            if any(not self.is_reduced(a) for a in arrays):
                for d in den:
                    if self.is_reduced(d):
                        code, d_owned = self.gen(d)
                        recips[d] = self._call("divide", ("1", code), code if d_owned else None, 1 / d)
                # several per-row factors (sum(y) / sum(exp) in softmax_cce_grad): their product
                # first, over the rows only, then one pass over the full array
                rows = [a for a in arrays if self.is_reduced(a)]
                if len(rows) + len(recips) >= 2:
                    factor, f_owned, partial_rows = None, False, sp.Integer(1)
                    for f in rows:
                        code, c_owned = self.gen(f)
                        partial_rows = partial_rows * f
                        if factor is None:
                            factor, f_owned = code, c_owned
                        else:
                            factor, f_owned = self._call("multiply", (factor, code), self._target(partial_rows, (factor, f_owned), (code, c_owned)), partial_rows), True
                    for d in list(recips):
                        partial_rows = partial_rows / d
                        if factor is None:
                            factor, f_owned = recips.pop(d), True
                        else:
                            factor, f_owned = self._call("multiply", (factor, recips.pop(d)), self._target(partial_rows, (factor, f_owned)), partial_rows), True
                    self.reduced.add(factor)
                    row_factor = (factor, partial_rows)
                    arrays = [a for a in arrays if not self.is_reduced(a)]
                    den = [d for d in den if not self.is_reduced(d)]
            acc, owned = self.gen(arrays[0])
            partial = arrays[0]
            for f in arrays[1:]:
                code, f_owned = self.gen(f)
                partial = partial * f
                acc, owned = self._call("multiply", (acc, code), self._target(partial, (acc, owned), (code, f_owned)), partial), True
            if row_factor is not None:
                partial = partial * row_factor[1]
                acc, owned = self._call("multiply", (acc, row_factor[0]), self._target(partial, (acc, owned)), partial), True
            for d in den:
                if d in recips:
                    # one reciprocal per class row, then a multiplication: cheaper than dividing
                    # every element (at most half an ulp more rounding)
                    partial = partial / d
                    acc, owned = self._call("multiply", (acc, recips[d]), self._target(partial, (acc, owned)), partial), True
                    continue
                code, d_owned = self.gen(d)
                partial = partial / d
                acc, owned = self._call("divide", (acc, code), self._target(partial, (acc, owned), (code, d_owned)), partial), True
        if scalars:
            factor = sp.Mul(*scalars)
            s = self.printer.doprint(factor)
            if s == "-1":
                acc = self._call("negative", (acc,), acc if owned else None, partial)
            elif factor.is_Rational and factor.p == 1 and factor.q < 2**53:
                # x/100000 rounds once; x*1e-05 rounds the constant and the product
                acc = self._call("divide", (acc, str(factor.q)), acc if owned else None, partial)
            else:
                acc = self._call("multiply", (acc, s), acc if owned else None, partial)
            owned = True
        return acc, owned


def emit_inplace(expr, inputs, printer=None, fired=None, workspace=False, float_dtype="np.float64", gate=True) -> Emitted:
    """Like :func:`emit`, with ufunc calls that write into buffers no longer needed (see
    :class:`_InPlace`). ``expr`` is elementwise in the array ``inputs``, possibly
    with class reductions (from :func:`to_array`). With ``workspace``, new full-shape buffers
    are not allocated by the ufuncs but taken from a list ``_w`` the caller provides (allocated
    once per call, or once per call of a blockwise evaluation for all its blocks). ``float_dtype``:
    the code of the dtype new float buffers take (``"z.dtype"`` for a body that computes in its
    input's precision, float32 included). ``gate``: apply rules.EXPONENT_GATE (see below)."""
    printer = printer or ActgenNumPyPrinter()
    fired = [] if fired is None else fired
    # the in-place writer evaluates a Piecewise branch built on double-double arithmetic only on the
    # elements that take it: exponent_gate makes exp(min(t, 0)) such a branch
    replacements, reduced = _lowered_cse(expr, printer, fired, after=(EXPONENT_GATE,) if gate else ())
    later = [value for _, value in replacements] + [reduced]
    uses = {str(sym): sum(v.count(sym) for v in later) for sym, _ in replacements}
    writer = _InPlace(printer, inputs, uses)
    writer.workspace = workspace
    printer.float_dtype = float_dtype
    for sym, value in replacements:
        writer.expanded[sym] = value.xreplace(writer.expanded)
    lines = []
    for sym, value in replacements:
        is_array = writer.is_array(value)
        if is_array:  # constants that CSE pulled out stay Python scalars
            writer.arrays.add(sym)
        code, owned = writer.gen(value)
        writer.flush()
        lines.extend(writer.lines)
        writer.lines = []
        lines.append((str(sym), code))
        if is_array and owned:
            writer.reusable.add(str(sym))
        if code in writer.reduced or (is_array and writer.is_reduced(value)):
            writer.reduced.add(str(sym))
    code, _owned = writer.gen(reduced)
    writer.flush()
    lines.extend(writer.lines)
    aliases = {name: value for name, value in lines if name}
    buffer = code
    while buffer in aliases and buffer not in writer.slot_of:
        buffer = aliases[buffer]
    return Emitted(tuple(lines), code, tuple(fired), writer.slots, writer.slot_of.get(buffer))


def emit(expr, printer=None, fired=None) -> Emitted:
    """:func:`actgen.printing.emit` with the NumPy printer by default: straight-line NumPy code."""
    return _emit(expr, printer or ActgenNumPyPrinter(), fired)
