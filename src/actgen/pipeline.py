"""The build driver's middle: derive every entry (each within a time budget) and collect failures.

Results are plain records; rendering happens in :mod:`actgen.render`.
"""
from __future__ import annotations

import dataclasses

from . import cache
from . import model as M
from .derive import Derivation, derive_elementwise, derive_head, derive_loss, derive_vector, head_pairs
from .errors import Collector, EntryFailure, SpecError
from .properties import Property, derive_properties
from .symbolic import TimeBudgetExceeded, time_budget

ENTRY_BUDGET_S = 60.0  # default; `actgen build --entry-timeout` or ACTGEN_ENTRY_TIMEOUT override it
RESERVED = M.GENERATED_NAMES
# what every generated package defines besides the spec's functions (render.package_files)
PACKAGE_NAMES = frozenset({"catalog"})


@dataclasses.dataclass(frozen=True)
class Entry:
    """Everything derived for one spec entry (activation, loss or head)."""

    name: str
    kind: str  # activation | loss | head
    derivations: tuple[Derivation, ...]
    properties: tuple[Property, ...] = ()
    activation: str = ""  # heads: the activation and loss they fuse
    loss: str = ""

    def get(self, kind):
        return next((d for d in self.derivations if d.kind == kind), None)

    def first_derivative(self, wrt):
        """d f / d wrt of an elementwise activation: wrt is 'z' or a parameter's name."""
        return next(d for d in self.derivations if d.kind in ("grad", "grad_param") and d.wrt == wrt)

    def second_derivative(self, v, w, variables):
        """d2 f / dv dw of an elementwise activation, in either order (``variables``: 'z' then the
        parameters, the order in which the Hessian was derived)."""
        i, j = sorted((variables.index(v), variables.index(w)))
        if variables[i] == variables[j] == "z":
            return self.get("grad2")
        return next(d for d in self.derivations if d.kind == "hessian" and d.wrt == f"{variables[i]},{variables[j]}")


@dataclasses.dataclass(frozen=True)
class Derived:
    spec: M.Spec
    activations: tuple[Entry, ...]
    losses: tuple[Entry, ...]
    heads: tuple[Entry, ...]

    def entries(self):
        return self.activations + self.losses + self.heads


def _guard(problems, location, name, seconds, fn, *args):
    try:
        with time_budget(seconds):
            return cache.cached(fn.__name__, lambda: fn(*args), *args)
    except TimeBudgetExceeded:
        problems.add(location, name, "expr", f"deriving and simplifying took longer than {seconds:g} s (the time budget per entry); simplify the expression, or raise the budget with --entry-timeout")
    except EntryFailure as exc:
        problems.add(location, name, exc.field or "expr", exc.message)
    except RecursionError:
        problems.add(location, name, "expr", "expression is too deeply nested for SymPy; simplify it")
    return None


def derive_activation(act: M.Activation) -> Entry:
    ds = derive_vector(act) if act.vector else derive_elementwise(act)
    props = derive_properties(act, ds)
    return Entry(act.name, "activation", tuple(ds), props)


def derive_all(spec: M.Spec, budget=ENTRY_BUDGET_S, progress=None) -> Derived:
    budget = ENTRY_BUDGET_S if budget is None else budget
    problems = Collector()
    acts, losses, heads = [], [], []
    for act in spec.activations:
        if progress:
            progress(act.name)
        entry = _guard(problems, act.location, act.name, budget, derive_activation, act)
        if entry:
            acts.append(entry)
    for loss in spec.losses:
        if progress:
            progress(loss.name)
        ds = _guard(problems, loss.location, loss.name, budget, derive_loss, loss)
        if ds:
            losses.append(Entry(loss.name, "loss", tuple(ds)))
    try:
        pairs = head_pairs(spec)
    except EntryFailure as exc:
        problems.add(spec.tasks[0].location, None, None, exc.message)
        pairs = []
    for act, loss in pairs:
        name = f"{act.name}_{loss.name}"
        if progress:
            progress(name)
        ds = _guard(problems, loss.location, name, budget, derive_head, act, loss)
        if ds:
            heads.append(Entry(name, "head", tuple(ds), (), act.name, loss.name))
    # every generated name must be unique and must not shadow the generated code's own names
    seen = {}
    for entry in acts + losses + heads:
        source = spec.activation(entry.name) or spec.loss(entry.name) or spec.loss(entry.loss)
        for d in entry.derivations:
            if d.name in PACKAGE_NAMES:
                problems.add(source.location, entry.name, None, f"generated function '{d.name}' would hide the package's own {d.name} (see its __init__); rename the entry")
            if d.name in seen and seen[d.name] != entry.name:
                problems.add(source.location, entry.name, None, f"generated function '{d.name}' clashes with one generated for '{seen[d.name]}'; rename one of the entries")
            seen[d.name] = entry.name
    for entity in spec.activations + spec.losses:
        for p in entity.params:
            if p.name in RESERVED:
                problems.add(entity.location, entity.name, "params", f"parameter name '{p.name}' is reserved in generated code; rename it")
    problems.raise_if_any()
    return Derived(spec, tuple(acts), tuple(losses), tuple(heads))


__all__ = ["Derived", "Entry", "derive_all", "SpecError"]
