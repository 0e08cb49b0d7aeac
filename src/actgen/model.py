"""Stage 3: the typed model. Located YAML is turned, once, into frozen dataclasses.

Every entity keeps its :class:`Location`. Unknown keys are errors that list the allowed keys; all
problems of all files are collected before anything is reported. Nothing after this module sees a
raw mapping or an expression string.
"""
from __future__ import annotations

import ast
import dataclasses
import re
from typing import Optional

import sympy as sp

from . import expr as E
from .errors import Collector, EntryFailure, Location, SpecError
from .load import Located, SpecFile

# The variables of each kind of entry. Elementwise entries use plain real symbols; class-axis
# entries use indexed vectors over K classes with the summation indices below.
Z = sp.Symbol("z", real=True)
Y = sp.Symbol("y", real=True)
Y_HAT = sp.Symbol("y_hat", real=True)
K = sp.Symbol("K", integer=True, positive=True)
I, J, KK, L = sp.symbols("i j k l", integer=True)
ZV = sp.IndexedBase("z", real=True)


class Input(sp.Symbol):
    """An array input other than z, y and y_hat: a half of a split activation's input, or a loss's
    further prediction input. A class of its own, so that it is never equal to a parameter of the
    same name (a plain Symbol), which the rules that treat inputs specially must not mistake for one;
    printers reach it through Symbol's methods."""


# the two halves of a split activation's input (``split: true``: GLU's a * sigmoid(b))
HALF_A = Input("a", real=True)
HALF_B = Input("b", real=True)
YV = sp.IndexedBase("y", real=True)
Y_HATV = sp.IndexedBase("y_hat", real=True)
INDICES = {"i": I, "j": J, "k": KK, "l": L, "K": K}

SECTIONS = ("activations", "losses", "tasks", "identities")
ACTIVATION_KEYS = ("expr", "params", "title", "use", "pros", "cons", "layer", "aliases", "learnable", "domain", "split")
LOSS_KEYS = ("expr", "params", "title", "use", "pros", "cons", "domain", "inputs")
TASK_KEYS = ("title", "output", "loss", "hidden", "note")
IDENTITY_KEYS = ("claim", "assume", "explain", "conjecture", "title")
LAYERS = ("hidden", "output", "both")
# names the generated functions use for their own arguments and imports (see pipeline.RESERVED)
GENERATED_NAMES = frozenset({"np", "axis", "reduction", "out", "g", "z", "y", "y_hat", "y_true", "y_pred", "logits",
                             "ignore_index", "label_smoothing",
                             # the framework targets' arguments, modules and nn-module attributes
                             "torch", "jax", "jnp", "dim", "input", "target", "predictions", "targets", "labels", "ctx",
                             "self", "num_parameters", "device", "dtype"})
# module-level names of the generated packages (imports, submodules): a function must not shadow one
MODULE_NAMES = frozenset({"np", "torch", "jax", "jnp", "nn", "math", "struct", "base64", "functools",
                          "activations", "losses", "heads"})
DOMAINS = ("real", "positive", "nonnegative", "[0, 1]", "(0, 1)", "{0, 1}", "{-1, 1}")
# the target domains of a class-axis loss that hold one-hot rows and (1 - e) onehot + e/K
CLASS_INDEX_DOMAINS = ("real", "nonnegative", "[0, 1]")
# the domains an elementwise activation may declare (`domain: {z: positive}`): intervals of the line
ACTIVATION_DOMAINS = ("real", "positive", "nonnegative", "negative", "nonpositive", "(0, 1)", "[0, 1]", "(-1, 1)", "[-1, 1]")
_INTERVALS = {
    "real": sp.Interval(-sp.oo, sp.oo), "positive": sp.Interval.open(0, sp.oo), "nonnegative": sp.Interval(0, sp.oo),
    "negative": sp.Interval.open(-sp.oo, 0), "nonpositive": sp.Interval(-sp.oo, 0), "(0, 1)": sp.Interval.open(0, 1),
    "[0, 1]": sp.Interval(0, 1), "(-1, 1)": sp.Interval.open(-1, 1), "[-1, 1]": sp.Interval(-1, 1),
}
# the SymPy assumptions each domain implies for z (an interval inside (0, oo) is positive, ...)
_ASSUMPTIONS = {"positive": {"positive": True}, "nonnegative": {"nonnegative": True}, "negative": {"negative": True},
                "nonpositive": {"nonpositive": True}, "(0, 1)": {"positive": True}, "[0, 1]": {"nonnegative": True}}
# points where a declared function is checked to be real and finite (its domain's share of them)
PROBE_POINTS = tuple(sp.Rational(v) for v in ("-10", "-2", "-1", "-1/2", "-1/10", "0", "1/10", "1/2", "1", "2", "10"))


def domain_interval(domain: str) -> sp.Interval:
    """The interval of the real line that an activation's ``domain`` names."""
    return _INTERVALS[domain]


def domain_condition(domain: str, z=None):
    """``domain`` as a SymPy condition on z (``true`` for the whole line)."""
    return domain_interval(domain).as_relational(Z if z is None else z)


def domain_symbol(domain: str) -> sp.Symbol:
    """z with the assumptions that ``domain`` implies, for derivations on the domain."""
    return sp.Symbol("z", real=True, **_ASSUMPTIONS.get(domain, {}))


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    default: sp.Rational
    symbol: sp.Symbol

    @property
    def default_float(self) -> float:
        return float(self.default)


@dataclasses.dataclass(frozen=True)
class Prose:
    title: str
    use: str
    pros: str
    cons: str


@dataclasses.dataclass(frozen=True)
class Activation:
    """f(z) elementwise, or component i of a K-vector function when ``vector`` is true."""

    name: str
    expr: sp.Expr
    params: tuple[Parameter, ...]
    prose: Prose
    layer: str
    aliases: tuple[str, ...]
    vector: bool
    location: Location
    learnable: tuple[str, ...] = ()  # parameters that framework modules hold as trainable weights
    domain: str = "real"  # one of ACTIVATION_DOMAINS; outside it the generated functions return NaN
    split: bool = False  # f(a, b) of the two halves of the input along an axis (GLU), elementwise in a and b

    @property
    def var(self):
        return ZV[I] if self.vector else Z

    @property
    def reduces(self) -> bool:
        """A class-axis function without a free component index (log(Sum(exp(z[j]), (j, 1, K)))):
        one value per row, the class axis reduced away; its derivative is a gradient over the row."""
        return self.vector and I not in self.expr.free_symbols


@dataclasses.dataclass(frozen=True)
class Loss:
    """L(y, y_hat) for one element, or for one sample over K classes when ``class_axis`` is true."""

    name: str
    expr: sp.Expr
    params: tuple[Parameter, ...]
    prose: Prose
    domain: tuple[tuple[str, str], ...]  # (variable, domain) pairs
    class_axis: bool
    location: Location
    inputs: tuple[str, ...] = ()  # further prediction inputs besides y_hat (a variance), each with its gradient

    @property
    def input_symbols(self) -> tuple[sp.Symbol, ...]:
        return tuple(Input(n, real=True) for n in self.inputs)

    @property
    def class_indices(self) -> bool:
        """A class-axis loss whose target domain holds every mix of 0 and 1 (one-hot rows and their
        label-smoothed blends with the uniform distribution) also takes integer class indices, with
        ``ignore_index`` and ``label_smoothing``: the one-hot form, not a second formula."""
        return self.class_axis and dict(self.domain).get("y", "real") in CLASS_INDEX_DOMAINS


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    title: str
    output: str
    losses: tuple[str, ...]
    hidden: tuple[str, ...]
    note: str
    location: Location


@dataclasses.dataclass(frozen=True)
class Identity:
    name: str
    title: str
    claim: str  # the source text, shown in docs beside the rendered math
    lhs: sp.Expr
    rhs: sp.Expr
    assumptions: tuple[tuple[sp.Expr, sp.Expr], ...]  # each lhs == rhs, used as a substitution
    explain: str
    conjecture: bool
    location: Location


@dataclasses.dataclass(frozen=True)
class Spec:
    activations: tuple[Activation, ...]
    losses: tuple[Loss, ...]
    tasks: tuple[Task, ...]
    identities: tuple[Identity, ...]
    sources: tuple[str, ...]
    digest: str = ""  # sha256 of the spec files' names and bytes (load_spec): the generated packages' version label

    def activation(self, name) -> Optional[Activation]:
        return next((a for a in self.activations if a.name == name), None)

    def loss(self, name) -> Optional[Loss]:
        return next((l for l in self.losses if l.name == name), None)


_HTML_TAG = re.compile(r"<\s*[A-Za-z/!?]")


def _not_finite_real(expr, subs) -> str:
    """Why ``expr`` at the point ``subs`` is not a finite real number ("" where it is): the probe
    of the spec's functions before anything is derived (evidence at a few points, not a proof)."""
    try:
        value = sp.N(expr.xreplace(subs), 15)
    except (TypeError, ValueError, ZeroDivisionError, RecursionError, ArithmeticError):
        return "cannot be evaluated"
    if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        return "is undefined or infinite"
    if not value.is_number:
        return "cannot be evaluated"
    re_im = value.as_real_imag()
    if abs(re_im[1]) > 1e-12 * max(1, abs(re_im[0])):
        return f"is complex ({sp.sstr(value, full_prec=False)})"
    return ""


def _uses_subscripts(text) -> bool:
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(n, ast.Subscript) for n in ast.walk(tree))


class _Builder:
    def __init__(self):
        self.problems = Collector()
        self.names: dict[str, Location] = {}
        self.rejected_params: list[str] = []
        self.declared = {"activations": set(), "losses": set()}

    # -- helpers ---------------------------------------------------------------------------
    def _mapping(self, node: Located, entry, field, what):
        if not isinstance(node.value, dict):
            self.problems.add(node.location, entry, field, f"expected a mapping of {what}, got {E._kind(node.value)}; write one 'key: value' per line, indented below")
            return {}
        return node.value

    def _check_keys(self, body, allowed, entry, location):
        for key, value in body.items():
            if key not in allowed:
                self.problems.add(value.location, entry, None, f"unknown key '{key}'{E._hint(key, allowed, 'the allowed keys are')}")

    def _text(self, body, key, entry, default=""):
        node = body.get(key)
        if node is None:
            return default
        if not isinstance(node.value, str) or isinstance(node.value, bool):
            self.problems.add(node.location, entry, key, f"expected text, got {E._kind(node.value)}; write plain text (put it in quotes if it looks like a number)")
            return default
        text = " ".join(node.value.split())
        # prose lands in generated docstrings and Markdown: nothing in it may end a string
        # literal or open an HTML element there
        bad = next((b for b in ('"""', "'''", "\\") if b in text), None) or (_HTML_TAG.search(text) or [None])[0]
        if bad:
            self.problems.add(node.location, entry, key, f"text may not contain {bad!r} (triple quotes, backslashes and HTML tags would leak into generated code and pages); rephrase it")
            return default
        return text

    def _name_ok(self, name, location, section):
        if not E.valid_identifier(name):
            self.problems.add(location, str(name), None, f"'{name}' is not a valid {section[:-1]} name; use lower-case letters, digits and underscores, starting with a letter, and no Python keyword")
            return False
        if name in self.names:
            self.problems.add(location, name, None, f"name '{name}' is already declared at {self.names[name].display}; give each function a distinct name")
            return False
        if section in ("activations", "losses") and name in MODULE_NAMES:
            self.problems.add(location, name, None, f"name '{name}' would shadow a module the generated packages use; rename it (reserved: {', '.join(sorted(MODULE_NAMES))})")
            return False
        self.names[name] = location
        self.declared[section].add(name)
        return True

    def _params(self, body, entry, reserved):
        self.rejected_params = []
        node = body.get("params")
        if node is None:
            return ()
        out = []
        for pname, pnode in self._mapping(node, entry, "params", "parameter names to default values").items():
            if not E.valid_identifier(pname) or pname in reserved or pname in E.CONSTANTS or pname in E.BUILTIN_FUNCTIONS:
                self.problems.add(pnode.location, entry, "params", f"'{pname}' cannot be a parameter name; use a lower-case identifier other than {', '.join(sorted(reserved))}")
                self.rejected_params.append(pname)
                continue
            if pname in GENERATED_NAMES:
                self.problems.add(pnode.location, entry, "params", f"parameter name '{pname}' is reserved in generated code; rename it (reserved: {', '.join(sorted(GENERATED_NAMES))})")
                self.rejected_params.append(pname)
                continue
            value = pnode.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.problems.add(pnode.location, entry, f"params.{pname}", f"default must be a number, got {E._kind(value)}; write a number such as 0.01")
                self.rejected_params.append(pname)
                continue
            try:
                default = E.parse(value, E.Scope({}))
            except EntryFailure as exc:
                self.problems.add(pnode.location, entry, f"params.{pname}", exc.message)
                self.rejected_params.append(pname)
                continue
            assumptions = {"real": True}
            if default > 0:
                assumptions["positive"] = True
            out.append(Parameter(pname, default, sp.Symbol(pname, **assumptions)))
        return tuple(out)

    def _expr(self, body, entry, location, scope):
        node = body.get("expr")
        if node is None:
            self.problems.add(location, entry, "expr", "missing 'expr'; give the function as an expression")
            return None
        try:
            result = E.parse(node.value, scope)
        except EntryFailure as exc:
            self.problems.add(node.location, entry, "expr", exc.message)
            return None
        except RecursionError:
            self.problems.add(node.location, entry, "expr", "expression is too deeply nested; simplify it")
            return None
        if isinstance(result, (tuple, E.VectorValue)) or E.is_condition(result):
            self.problems.add(node.location, entry, "expr", "expression must be a number-valued formula, not a condition, tuple or vector; use Piecewise((value, condition), (other, True)) for a case split")
            return None
        if result.has(sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I):
            self.problems.add(node.location, entry, "expr", "expression is undefined, infinite or complex (a division by zero, log(0) or sqrt of a negative number); correct the formula")
            return None
        return result

    # -- sections --------------------------------------------------------------------------
    def activation(self, name, node: Located):
        body = self._mapping(node, name, None, "fields (expr, params, ...)")
        if not self._name_ok(name, node.location, "activations") or not isinstance(node.value, dict):
            return None
        self._check_keys(body, ACTIVATION_KEYS, name, node.location)
        split = self._split(body, name)
        vector = _uses_subscripts(body["expr"].value) if "expr" in body and not split else False
        params = self._params(body, name, {"a", "b"} if split else {"z", "i", "j", "k", "l", "K"})
        variables = {p: sp.Symbol(p, real=True) for p in self.rejected_params}
        variables.update({p.name: p.symbol for p in params})
        if split:
            variables.update({"a": HALF_A, "b": HALF_B})
        else:
            variables.update({"z": ZV, **INDICES} if vector else {"z": Z})
        expr = self._expr(body, name, node.location, E.Scope(variables))
        layer = self._text(body, "layer", name, "hidden")
        if layer not in LAYERS:
            self.problems.add(body["layer"].location, name, "layer", f"unknown layer '{layer}'; use one of {', '.join(LAYERS)}")
        aliases = ()
        if "aliases" in body:
            raw = body["aliases"].value
            if not isinstance(raw, tuple) or not all(isinstance(a.value, str) for a in raw):  # noqa: SIM102
                self.problems.add(body["aliases"].location, name, "aliases", "expected a list of names")
            else:
                aliases = tuple(a.value for a in raw if self._name_ok(a.value, a.location, "activations"))
        learnable = ()
        if "learnable" in body:
            raw = body["learnable"].value
            names = {p.name for p in params}
            if not isinstance(raw, tuple) or not all(isinstance(a.value, str) for a in raw):
                self.problems.add(body["learnable"].location, name, "learnable", "expected a list of parameter names; write it as [alpha]")
            else:
                for a in raw:
                    if a.value not in names:
                        known = ", ".join(sorted(names)) or "none (declare it under params first)"
                        self.problems.add(a.location, name, "learnable", f"'{a.value}' is not a parameter of '{name}'; name one of its parameters: {known}")
                learnable = tuple(a.value for a in raw if a.value in names)
        if expr is None:
            return None
        if split:
            missing = [v for v in ("a", "b") if variables[v] not in expr.free_symbols]
            if missing or "domain" in body:
                self.problems.add(body["expr"].location if missing else body["domain"].location, name, "expr" if missing else "domain",
                                  f"the expression does not use {' or '.join(missing)}; a split activation is a function of both halves a and b, e.g. a * sigmoid(b)"
                                  if missing else "a split activation is defined for all real a and b; remove 'domain'")
                return None
            if not self._real_everywhere(body["expr"].location, name, expr, params):
                return None
            prose = Prose(self._text(body, "title", name, name.replace("_", " ").title()), self._text(body, "use", name), self._text(body, "pros", name), self._text(body, "cons", name))
            return Activation(name, expr, params, prose, layer, aliases, False, node.location, learnable, "real", True)
        if vector:
            fixed = sorted({str(t) for t in expr.atoms(sp.Indexed) if t.indices[0].is_number})
            if fixed:
                self.problems.add(body["expr"].location, name, "expr", f"{', '.join(fixed)} names a fixed class; a class-axis function treats every class alike: write z[i] for the component it gives, or sum over another index (Sum(z[j], (j, 1, K)))")
                return None
            free = {s for s in expr.free_symbols if s in (I, J, KK, L)}
            if free not in ({I}, set()) or not expr.has(sp.Sum) and not free:
                self.problems.add(body["expr"].location, name, "expr", "a class-axis expression must give component i or one value per row; write z[i] and sum over another index (exp(z[i]) / Sum(exp(z[j]), (j, 1, K))), or reduce the row with a sum over the classes (log(Sum(exp(z[j]), (j, 1, K))))")
                return None
        elif Z not in expr.free_symbols:
            self.problems.add(body["expr"].location, name, "expr", "the expression does not use z; an activation is a function of z")
            return None
        domain = self._activation_domain(body, name, vector)
        if domain is None:
            return None
        if not vector and not self._real_on_domain(body["expr"].location, name, expr, params, domain, "domain" in body):
            return None
        prose = Prose(self._text(body, "title", name, name.replace("_", " ").title()), self._text(body, "use", name), self._text(body, "pros", name), self._text(body, "cons", name))
        return Activation(name, expr, params, prose, layer, aliases, vector, node.location, learnable, domain)

    def _real_everywhere(self, location, name, expr, params) -> bool:
        """A split activation must be real and finite for all real a and b: probed at a few points
        (evidence, not a proof; log(b) or 1/b is refused here instead of failing later)."""
        defaults = {p.symbol: p.default for p in params}
        if not expr.free_symbols <= {HALF_A, HALF_B, *defaults}:
            return True  # a rejected parameter: its own problem is reported
        for a in (sp.Integer(1), sp.Integer(-2)):
            for b in PROBE_POINTS:
                if _not_finite_real(expr, {HALF_A: a, HALF_B: b, **defaults}):
                    self.problems.add(location, name, "expr", f"f(a, b) is not a finite real number at a = {a}, b = {sp.sstr(b)} (with default parameters); "
                                      "a split activation must be defined for all real a and b: correct the formula")
                    return False
        return True

    def _split(self, body, name) -> bool:
        if "split" not in body:
            return False
        node = body["split"]
        if not isinstance(node.value, bool):
            self.problems.add(node.location, name, "split", f"expected true or false, got {E._kind(node.value)}; write split: true to apply f(a, b) to the two halves of the input")
            return False
        return node.value

    def _activation_domain(self, body, name, vector):
        if "domain" not in body:
            return "real"
        node = body["domain"]
        if not isinstance(node.value, dict):
            self.problems.add(node.location, name, "domain", f"expected a mapping from z to a domain; write it as {{z: positive}} (domains: {', '.join(ACTIVATION_DOMAINS)})")
            return None
        mapping = self._mapping(node, name, "domain", "z to its domain")
        for var, dnode in mapping.items():
            if var != "z":
                self.problems.add(dnode.location, name, "domain", f"unknown variable '{var}'; an activation's variable is z, e.g. domain: {{z: positive}}")
                return None
        for var, dnode in mapping.items():
            if vector:
                self.problems.add(dnode.location, name, "domain", "a class-axis function is defined for all real logits; remove 'domain'")
                return None
            if str(dnode.value) not in ACTIVATION_DOMAINS:
                self.problems.add(dnode.location, name, "domain.z", f"unknown domain '{dnode.value}'; use one of {', '.join(ACTIVATION_DOMAINS)}")
                return None
            return str(dnode.value)
        return "real"

    def _real_on_domain(self, location, name, expr, params, domain, declared):
        """A function must be real and finite on its domain: probed at a few points of it (a quick
        refusal of log(z) or 1/z on the whole line, with the domain that would fit; evidence, not a
        proof). Returns False after recording the problem."""
        defaults = {p.symbol: p.default for p in params}
        if not expr.free_symbols <= {Z, *defaults}:
            return True  # a rejected parameter: its own problem is reported, nothing to probe
        interval = domain_interval(domain)

        def failure(points):
            for point in points:
                why = _not_finite_real(expr, {Z: point, **defaults})
                if why:
                    return point, why
            return None

        found = failure([p for p in PROBE_POINTS if interval.contains(p) is sp.true])
        if found is None:
            return True
        point, why = found
        # the widest domain that fits: a closed one before the open one inside it
        widest_first = sorted(ACTIVATION_DOMAINS[1:], key=lambda d: (-float(domain_interval(d).measure), d.startswith("(") or d in ("positive", "negative")))
        fits = [d for d in widest_first if failure([p for p in PROBE_POINTS if domain_interval(d).contains(p) is sp.true]) is None]
        hint = f"declare the domain where it is real, e.g. domain: {{z: {fits[0]}}}" if fits else f"correct the formula (domains: {', '.join(ACTIVATION_DOMAINS)})"
        where = f"on its domain {domain}, " if declared else ""
        self.problems.add(location, name, "expr", f"{where}f(z) {why} at z = {sp.sstr(point)} (with default parameters); {hint}")
        return False

    def loss(self, name, node: Located):
        body = self._mapping(node, name, None, "fields (expr, params, ...)")
        if not self._name_ok(name, node.location, "losses") or not isinstance(node.value, dict):
            return None
        self._check_keys(body, LOSS_KEYS, name, node.location)
        class_axis = _uses_subscripts(body["expr"].value) if "expr" in body else False
        inputs = self._loss_inputs(body, name, class_axis)
        params = self._params(body, name, {"y", "y_hat", "i", "j", "k", "l", "K", *inputs})
        variables = {p: sp.Symbol(p, real=True) for p in self.rejected_params}
        variables.update({p.name: p.symbol for p in params})
        variables.update({"y": YV, "y_hat": Y_HATV, **INDICES} if class_axis else {"y": Y, "y_hat": Y_HAT})
        variables.update({n: Input(n, real=True) for n in inputs})
        expr = self._expr(body, name, node.location, E.Scope(variables))
        domain = []
        if "domain" in body:
            for var, dnode in self._mapping(body["domain"], name, "domain", "y / y_hat to domains").items():
                if var not in ("y", "y_hat", *inputs):
                    self.problems.add(dnode.location, name, "domain", f"unknown variable '{var}'; a loss's variables are {', '.join(('y', 'y_hat', *inputs))}")
                elif str(dnode.value) not in DOMAINS:
                    self.problems.add(dnode.location, name, f"domain.{var}", f"unknown domain '{dnode.value}'; use one of {', '.join(DOMAINS)}")
                else:
                    domain.append((var, str(dnode.value)))
        if expr is None:
            return None
        used = {str(s) for s in expr.free_symbols} | {str(b.label) for b in expr.atoms(sp.IndexedBase)}
        if "y_hat" not in used:
            self.problems.add(body["expr"].location, name, "expr", "the expression does not use y_hat; a loss compares the prediction y_hat with the target y")
            return None
        unused = [n for n in inputs if n not in used]
        if unused:
            self.problems.add(body["expr"].location, name, "expr", f"the expression does not use the input {', '.join(unused)}; use it or remove it from 'inputs'")
            return None
        if class_axis and {s for s in expr.free_symbols if s in (I, J, KK, L)}:
            self.problems.add(body["expr"].location, name, "expr", "a class-axis loss is one number per sample: sum over the classes, e.g. -Sum(y[i]*log(y_hat[i]), (i, 1, K))")
            return None
        prose = Prose(self._text(body, "title", name, name.replace("_", " ").title()), self._text(body, "use", name), self._text(body, "pros", name), self._text(body, "cons", name))
        return Loss(name, expr, params, prose, tuple(sorted(domain)), class_axis, node.location, inputs)

    def _loss_inputs(self, body, name, class_axis) -> tuple[str, ...]:
        """The names under ``inputs:``: further prediction inputs of an elementwise loss."""
        if "inputs" not in body:
            return ()
        node = body["inputs"]
        raw = node.value
        if not isinstance(raw, tuple) or not raw or not all(isinstance(a.value, str) for a in raw):
            self.problems.add(node.location, name, "inputs", "expected a list of names; write it as [var]")
            return ()
        if class_axis:
            self.problems.add(node.location, name, "inputs", "further inputs are supported for elementwise losses only; write the loss without subscripts or drop 'inputs'")
            return ()
        out = []
        for a in raw:
            n = a.value
            if not E.valid_identifier(n) or n in ("y", "y_hat", "z") or n in E.CONSTANTS or n in E.BUILTIN_FUNCTIONS or n in GENERATED_NAMES or n in ("loss", "grad") or n in out:
                self.problems.add(a.location, name, "inputs", f"'{n}' cannot name an input; use a lower-case identifier other than y, y_hat, z and the names generated code uses")
                continue
            out.append(n)
        return tuple(out)

    def task(self, name, node: Located):
        body = self._mapping(node, name, None, "fields (output, loss, ...)")
        if not E.valid_identifier(name):
            self.problems.add(node.location, str(name), None, f"'{name}' is not a valid task name; use lower-case letters, digits and underscores, starting with a letter, and no Python keyword")
            return None
        if not isinstance(node.value, dict):
            return None
        self._check_keys(body, TASK_KEYS, name, node.location)

        def names(key):
            if key not in body:
                return ()
            raw = body[key].value
            if isinstance(raw, str):
                return (raw,)
            if isinstance(raw, tuple) and all(isinstance(x.value, str) for x in raw):
                return tuple(x.value for x in raw)
            self.problems.add(body[key].location, name, key, "expected a name or a list of names")
            return ()

        output = names("output")
        if len(output) != 1:
            self.problems.add(node.location, name, "output", "give exactly one output activation")
            return None
        losses = names("loss")
        if not losses:
            self.problems.add(node.location, name, "loss", "give the loss (or losses) for this task")
            return None
        return Task(name, self._text(body, "title", name, name.replace("_", " ").title()), output[0], losses, names("hidden"), self._text(body, "note", name), node.location)


def functions_scope(activations, losses):
    """The spec's own functions, callable by name inside identities."""

    def activation_fn(act):
        def call(*args):
            if act.vector:
                if len(args) != 1:
                    raise EntryFailure(f"{act.name}(v) takes one vector; take a component with {act.name}(v)[k]")
                return _vector_apply(act.expr, {ZV: args[0]}, I)
            subs = _params_and_arg(act, args, act.params, (Z,))
            return act.expr.xreplace(subs)

        return call

    def loss_fn(loss):
        def call(*args):
            if loss.class_axis:
                if len(args) != 2:
                    raise EntryFailure(f"{loss.name}(y, y_hat) takes two vectors")
                return _sum_apply(loss.expr, {YV: args[0], Y_HATV: args[1]})
            return loss.expr.xreplace(_params_and_arg(loss, args, loss.params, (Y, Y_HAT)))

        return call

    table = {a.name: activation_fn(a) for a in activations}
    for a in activations:
        for alias in a.aliases:
            table[alias] = table[a.name]
    table.update({l.name: loss_fn(l) for l in losses})
    return table


def _params_and_arg(entity, args, params, variables):
    if len(args) != len(variables):
        raise EntryFailure(f"{entity.name} takes {len(variables)} argument(s) ({', '.join(map(str, variables))}); its parameters keep their symbols")
    for a in args:
        if isinstance(a, (tuple, E.VectorValue)):
            raise EntryFailure(f"{entity.name} takes scalar arguments")
    return dict(zip(variables, args))


def _as_vector(value):
    if isinstance(value, E.VectorValue):
        return value
    if isinstance(value, sp.IndexedBase):
        return E.VectorValue(lambda idx, base=value: base[idx])
    raise EntryFailure("expected a vector (an indexed name such as z, or a list [a, b])")


def _vector_apply(expr, bindings, free_index):
    """Bind the vectors of a class-axis expression; returns a VectorValue over ``free_index``."""
    vectors = {base: _as_vector(v) for base, v in bindings.items()}
    lengths = {v.length for v in vectors.values() if v.length is not None}
    if len(lengths) > 1:
        raise EntryFailure("vectors of different lengths")
    length = lengths.pop() if lengths else None

    def component(idx):
        body = expr.xreplace({free_index: idx}) if free_index is not None else expr
        return _bind(body, vectors, length)

    return E.VectorValue(component, length)


def _sum_apply(expr, bindings):
    return _vector_apply(expr, bindings, None).component(None)


def _bind(body, vectors, length):
    if length is not None:
        body = body.xreplace({K: sp.Integer(length)}).doit()
    return body.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base in vectors,
        lambda e: vectors[e.base].component(e.indices[0]),
    )


def build(files: list[SpecFile]) -> Spec:
    """Build the model from loaded files; raises :class:`SpecError` listing every problem."""
    b = _Builder()
    activations, losses, tasks, identity_nodes = [], [], [], []
    for f in files:
        if f.root is None:
            continue
        root = f.root
        if not isinstance(root.value, dict):
            b.problems.add(root.location, None, None, f"a spec file must be a mapping of sections ({', '.join(SECTIONS)}), got {E._kind(root.value)}; start with a line such as 'activations:'")
            continue
        for section, node in root.value.items():
            if section not in SECTIONS:
                b.problems.add(node.location, None, None, f"unknown section '{section}'{E._hint(section, SECTIONS, 'the sections are')}")
                continue
            entries = b._mapping(node, None, None, f"{section} by name")
            for name, entry in entries.items():
                if section == "activations":
                    activations.append(b.activation(name, entry))
                elif section == "losses":
                    losses.append(b.loss(name, entry))
                elif section == "tasks":
                    tasks.append(b.task(name, entry))
                else:
                    identity_nodes.append((name, entry))
    activations = [a for a in activations if a is not None]
    losses = [l for l in losses if l is not None]
    tasks = [t for t in tasks if t is not None]
    # names declared but rejected above count as known here, so one mistake is reported once
    act_names = {a.name for a in activations} | {al for a in activations for al in a.aliases} | b.declared["activations"]
    loss_names = {l.name for l in losses} | b.declared["losses"]
    for t in tasks:
        if t.output not in act_names:
            b.problems.add(t.location, t.name, "output", f"unknown activation '{t.output}'{E._suggest(t.output, sorted(act_names))}; declare it under activations or name a declared one")
        for name in t.losses:
            if name not in loss_names:
                b.problems.add(t.location, t.name, "loss", f"unknown loss '{name}'{E._suggest(name, sorted(loss_names))}; declare it under losses or name a declared one")
        for name in t.hidden:
            if name not in act_names:
                b.problems.add(t.location, t.name, "hidden", f"unknown activation '{name}'{E._suggest(name, sorted(act_names))}; declare it under activations or name a declared one")
    identities = [_identity(b, name, node, activations, losses) for name, node in identity_nodes]
    b.problems.raise_if_any()
    by_name = lambda x: x.name  # noqa: E731 - sorted output makes builds deterministic
    return Spec(
        tuple(sorted(activations, key=by_name)),
        tuple(sorted(losses, key=by_name)),
        tuple(sorted(tasks, key=lambda t: t.location)),
        tuple(sorted((i for i in identities if i is not None), key=by_name)),
        tuple(sorted(f.source or f.path for f in files)),
    )


_DIMS = sp.symbols("m n p", integer=True, positive=True)
IDENTITY_VARS = {
    # affine layers, for the collapse of stacked linear layers: W2 (W1 x + b1) + b2
    "W1": sp.MatrixSymbol("W1", _DIMS[0], _DIMS[1]), "b1": sp.MatrixSymbol("b1", _DIMS[0], 1),
    "W2": sp.MatrixSymbol("W2", _DIMS[2], _DIMS[0]), "b2": sp.MatrixSymbol("b2", _DIMS[2], 1),
    "x": sp.MatrixSymbol("x", _DIMS[1], 1),
    "z": Z, "y": Y, "y_hat": Y_HAT, "z1": sp.Symbol("z1", real=True), "z2": sp.Symbol("z2", real=True),
    "c": sp.Symbol("c", real=True), "alpha": sp.Symbol("alpha", positive=True),
    "zv": ZV, "yv": YV, "gv": sp.IndexedBase("g", real=True), **INDICES,
}


def _identity(b: _Builder, name, node: Located, activations, losses):
    body = b._mapping(node, name, None, "fields (claim, assume, explain)")
    if not E.valid_identifier(name):
        b.problems.add(node.location, str(name), None, f"'{name}' is not a valid identity name; use lower-case letters, digits and underscores, starting with a letter, and no Python keyword")
        return None
    if not isinstance(node.value, dict):
        return None
    b._check_keys(body, IDENTITY_KEYS, name, node.location)
    scope = E.Scope(IDENTITY_VARS, functions_scope(activations, losses), allow_equality=True, allow_diff=True)
    if "claim" not in body:
        b.problems.add(node.location, name, "claim", "missing 'claim'; write it as 'left == right'")
        return None
    claim_node = body["claim"]
    try:
        claim = E.parse(claim_node.value, scope)
    except EntryFailure as exc:
        b.problems.add(claim_node.location, name, "claim", exc.message)
        return None
    if not (isinstance(claim, tuple) and len(claim) == 3 and claim[0] == "=="):
        b.problems.add(claim_node.location, name, "claim", "a claim is an equation; write it as 'left == right'")
        return None
    assumptions = []
    if "assume" in body:
        raw = body["assume"].value
        items = raw if isinstance(raw, tuple) else (body["assume"],)
        for item in items:
            try:
                parsed = E.parse(item.value, scope)
            except EntryFailure as exc:
                b.problems.add(item.location, name, "assume", exc.message)
                continue
            if not (isinstance(parsed, tuple) and parsed[0] == "=="):
                b.problems.add(item.location, name, "assume", "an assumption is an equation 'left == right', used to substitute left by right")
                continue
            assumptions.append((parsed[1], parsed[2]))
    conj = body.get("conjecture")
    conjecture = bool(conj.value) if conj is not None and isinstance(conj.value, bool) else False
    if conj is not None and not isinstance(conj.value, bool):
        b.problems.add(conj.location, name, "conjecture", "expected true or false")
    return Identity(name, b._text(body, "title", name, name.replace("_", " ").capitalize()), " ".join(str(claim_node.value).split()), claim[1], claim[2], tuple(assumptions), b._text(body, "explain", name), conjecture, node.location)


def load_spec(spec_path) -> Spec:
    """Load and build the model from a ``--spec`` path (file or folder)."""
    from .load import display_path, load_file, source_name, spec_paths

    problems = Collector()
    paths = spec_paths(spec_path)
    if not paths:
        problems.add(Location(str(spec_path), 1), None, None, "no .yaml files found; give a spec file or a folder of them")
    files = [load_file(p, display_path(p), problems, source_name(spec_path, p)) for p in paths]
    try:
        spec = build(files)
    except SpecError as exc:
        problems.problems.extend(exc.problems)
        spec = None
    problems.raise_if_any()
    return dataclasses.replace(spec, digest=_digest(spec_path, paths))


def _digest(spec_path, paths) -> str:
    """The spec's content hash: each file's stable name and bytes, in order."""
    import hashlib

    from .load import source_name

    h = hashlib.sha256()
    for p in sorted(paths, key=lambda p: source_name(spec_path, p)):
        h.update(source_name(spec_path, p).encode("utf-8") + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()
