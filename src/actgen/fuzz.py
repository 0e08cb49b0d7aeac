"""Random one-line activations from the spec's grammar, built and measured: what users will write.

Each expression is drawn from the documented functions, operators and constants (integers and
decimals), with a depth limit; logarithms and roots take arguments that are positive on the whole
line (1 + A**2, 1 + exp(A)), so that every draw is a function the spec accepts without a domain.
Each one goes through ``actgen build`` (the NumPy target, in a temporary folder) and, where it builds,
through the mpmath measurement of its value and derivative over the whole float64 grid. The report
gives the fraction within the target and groups the rest by cause. Sampling is evidence, never proof.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import math
import random
import sys
import tempfile
from pathlib import Path

UNARY = ("exp", "tanh", "atan", "asinh", "sin", "cos", "erf", "erfc", "Abs", "sign", "sinh", "cosh")
# arguments kept positive: log and sqrt of these are real everywhere
POSITIVE = ("1 + ({a})**2", "1 + exp({a})", "2 + sin({a})")
CONSTANTS = ("2", "3", "0.5", "1.702", "0.044715", "1.5")


def _leaf(rng: random.Random) -> str:
    return "z" if rng.random() < 0.7 else rng.choice(CONSTANTS)


def expression(rng: random.Random, depth: int = 3) -> str:
    """One random expression in z of at most ``depth`` nested operations."""
    if depth <= 0:
        return _leaf(rng)
    kind = rng.random()
    a = expression(rng, depth - 1)
    if kind < 0.30:
        return f"{rng.choice(UNARY)}({a})"
    if kind < 0.45:
        fn = rng.choice(("log", "sqrt"))
        return f"{fn}({rng.choice(POSITIVE).format(a=a)})"
    if kind < 0.55:
        return f"({a})**{rng.choice((2, 3))}"
    if kind < 0.62:
        return f"{rng.choice(('Max', 'Min'))}({a}, {_leaf(rng)})"
    b = expression(rng, depth - 2)
    op = rng.choice(("+", "-", "*", "/"))
    if op == "/":
        return f"({a})/(1 + ({b})**2)"  # a denominator that never vanishes
    return f"({a}) {op} ({b})"


@dataclasses.dataclass(frozen=True)
class Sample:
    expr: str
    outcome: str  # ok | spec_error | internal_error | constant | measurement_error
    message: str = ""
    worst_ulp: float = 0.0  # the worst term-relative error of f, f' in float64
    worst_function: str = ""
    worst_input: float = float("nan")
    nonfinite: int = 0
    beyond_range: str = ""  # an intermediate beyond float64's range at the worst input ("exp(z) = 2.2e+308")

    @property
    def within_target(self) -> bool:
        return self.outcome == "ok" and self.worst_ulp <= 4.0 and self.nonfinite == 0


def draw(n: int, seed: int, depth: int = 3) -> list[str]:
    """``n`` distinct expressions that use z, in a fixed order for the seed."""
    rng = random.Random(seed)
    out: list[str] = []
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        e = expression(rng, depth)
        if "z" in e and e not in out:
            out.append(e)
    return out


def run(n: int, seed: int = 0, depth: int = 3, measure: bool = True, entry_timeout: float = 60.0, progress=None) -> list[Sample]:
    """Build (and measure) ``n`` random expressions; every outcome is recorded, none raises."""
    from .cli import main

    samples = []
    for k, expr in enumerate(draw(n, seed, depth)):
        if progress:
            progress(k, n, expr)
        with tempfile.TemporaryDirectory(prefix="actgen-fuzz-") as tmp:
            work = Path(tmp)
            (work / "f.yaml").write_text(f"activations:\n  fuzzed:\n    expr: {expr}\n", encoding="utf-8")
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = main(["build", "--spec", str(work / "f.yaml"), "--out", str(work / "o"), "--package", f"fuzz_{seed}_{k}",
                           "--target", "numpy", "--quiet", "--jobs", "1", "--entry-timeout", str(entry_timeout)])
            text = err.getvalue().strip()
            if rc == 1:
                samples.append(Sample(expr, "internal_error", text.splitlines()[0] if text else "exit 1"))
                continue
            if rc != 0:
                outcome = "constant" if "does not use z" in text else "spec_error"
                samples.append(Sample(expr, outcome, text.splitlines()[0] if text else f"exit {rc}"))
                continue
            try:
                samples.append(_measure(expr, work, f"fuzz_{seed}_{k}") if measure else Sample(expr, "ok"))
            except Exception as exc:  # the measurement (mpmath's reference), not the build: recorded, the run goes on
                samples.append(Sample(expr, "measurement_error", f"{type(exc).__name__}: {exc}"[:200]))
    return samples


def _measure(expr, work, package_name):
    import numpy as np

    from . import accuracy as A
    from .model import load_spec
    from .pipeline import derive_all

    sys.path.insert(0, str(work / "o"))
    try:
        package = importlib.import_module(package_name)
    finally:
        sys.path.pop(0)
    derived = derive_all(load_spec(str(work / "f.yaml")), jobs=1)
    worst = (0.0, "", float("nan"), None)
    nonfinite = 0
    for t in A.targets(derived, package):
        if t.function not in ("fuzzed", "fuzzed_grad"):
            continue
        m = A.measure(t.label, t.call, t.reference, t.var, t.params, dtype=np.float64, inputs=t.inputs, terms_expr=t.terms, domain=t.domain)
        nonfinite += m.nonfinite
        if m.max_term_ulp > worst[0] or math.isnan(worst[2]):
            worst = (m.max_term_ulp, m.name, m.worst_term_input, (t.reference, t.var))
    sys.modules.pop(package_name, None)
    for mod in [m for m in sys.modules if m.startswith(package_name + ".")]:
        sys.modules.pop(mod, None)
    beyond = ""
    if worst[3] is not None and math.isfinite(worst[2]) and (worst[0] > 4.0 or nonfinite):
        beyond = beyond_range(*worst[3], worst[2])
    return Sample(expr, "ok", "", worst[0], worst[1], worst[2], nonfinite, beyond)


FLOAT64_MAX = 1.7976931348623157e308


def beyond_range(expr, var, x) -> str:
    """The innermost subexpression of ``expr`` whose true value at ``var`` = x lies beyond float64's
    range, with that value ("exp(z) = 2.2e+308"), or "" when every intermediate is representable.
    Where the result is finite but an intermediate is not, the formula as written cannot be
    evaluated in float64: a rewrite must avoid that intermediate (scaling it, or working in
    logarithms), and a periodic function of it (cos(cosh(z)) at z = -1000) is beyond any float
    evaluation. Evaluated with the accuracy module's mpmath reference (evidence at one point)."""
    import mpmath
    import sympy as sp

    from . import accuracy as A
    from .primitives import elementary

    found = []
    for sub in sp.postorder_traversal(elementary(expr)):
        if sub.is_Atom or not sub.free_symbols:
            continue
        try:
            value = A.reference(sub, {var: x})
        except Exception:  # noqa: BLE001 - mpmath's limits at one point: that subexpression is not judged
            continue
        if mpmath.isnan(value) or abs(value) <= FLOAT64_MAX:
            continue
        if any(sub.has(f) for f, _v in found):
            continue  # an outer expression of one already found
        found.append((sub, value))
    if not found:
        return ""
    sub, value = min(found, key=lambda fv: len(str(fv[0])))
    shown = "inf" if mpmath.isinf(value) else mpmath.nstr(value, 2)
    text = str(sub)
    return f"{text if len(text) <= 40 else text[:37] + '...'} = {shown}"


def _cause(s: Sample) -> str:
    if s.outcome != "ok":
        return s.outcome
    if s.beyond_range:
        return "an intermediate beyond float64's range at the worst input (a rewrite must avoid it)"
    if s.nonfinite:
        return "non-finite where the true value is finite"
    if s.worst_input != s.worst_input:  # NaN: no failing point
        return "above the target"
    magnitude = abs(s.worst_input)
    where = "beyond 1e15" if magnitude > 1e15 else "below 1e-8" if 0 < magnitude < 1e-8 else "within [1e-8, 1e15]"
    return f"above the target, worst input {where}"


def report(samples: list[Sample], seed: int) -> str:
    built = [s for s in samples if s.outcome == "ok"]
    good = [s for s in built if s.within_target]
    lines = ["# Fuzzed activations", "",
             f"{len(samples)} random one-line activations from the spec's grammar (seed {seed}), built with `actgen build`"
             " and measured in float64 against mpmath over the whole grid (value and derivative; term-relative ulps).",
             "Sampling is evidence, not proof.", "",
             f"- built: {len(built)}; refused with a located spec error: {sum(s.outcome == 'spec_error' for s in samples)};"
             f" constant (no z after simplification): {sum(s.outcome == 'constant' for s in samples)};"
             f" internal errors: {sum(s.outcome == 'internal_error' for s in samples)};"
             f" measurements mpmath could not complete: {sum(s.outcome == 'measurement_error' for s in samples)}",
             f"- within 4 ulp: {len(good)} of {len(built)} built ({100.0 * len(good) / max(len(built), 1):.0f}%)", ""]
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        if not s.within_target:
            groups.setdefault(_cause(s), []).append(s)
    for cause, members in sorted(groups.items()):
        lines += [f"## {cause} ({len(members)})", "", "| expression | worst | ulp | at input | message |", "| --- | --- | ---: | ---: | --- |"]
        for s in members:
            message = s.message or (f"`{s.beyond_range}`" if s.beyond_range else "")
            lines.append(f"| `{s.expr}` | {s.worst_function} | {s.worst_ulp:.3g} | {s.worst_input:.6g} | {message.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)
