"""The build driver's middle: derive every entry (each within a budget of CPU time) and collect failures.

Results are plain records; rendering happens in :mod:`actgen.render`.
"""
from __future__ import annotations

import dataclasses
import pickle

from . import cache, parallel
from . import model as M
from .derive import Derivation, derive_elementwise, derive_head, derive_loss, derive_split, derive_vector, head_pairs
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


def _attempt(seconds, fn, args):
    """``fn(*args)`` (cached), within the time budget: ``(value, ())``, or ``(None, ((field,
    message),))`` for a problem to report at the entry; plain data that a worker can send back."""
    try:
        with time_budget(seconds):
            return cache.cached(fn.__name__, lambda: fn(*args), *args), ()
    except TimeBudgetExceeded:
        return None, (("expr", f"deriving and simplifying took more than {seconds:g} s of CPU time (the time budget per entry); simplify the expression, or raise the budget with --entry-timeout"),)
    except EntryFailure as exc:
        return None, ((exc.field or "expr", exc.message),)
    except RecursionError:
        return None, (("expr", "expression is too deeply nested for SymPy; simplify it"),)


def derive_activation(act: M.Activation) -> Entry:
    ds = derive_split(act) if act.split else derive_vector(act) if act.vector else derive_elementwise(act)
    props = derive_properties(act, ds)
    return Entry(act.name, "activation", tuple(ds), props)


@dataclasses.dataclass(frozen=True)
class _Task:
    """One entry to derive: ``fn(*args)``, reported at ``location`` under ``name``."""

    location: object
    name: str
    fn: object
    args: tuple


def _run_task(payload, index):
    """In a worker: derive task ``index`` of ``payload`` (tasks, budget); the result travels back
    with its digest, so that the build process can tell whether unpickling rebuilt it exactly."""
    tasks, seconds = payload
    task = tasks[index]
    value, found = _attempt(seconds, task.fn, task.args)
    if value is None:
        return None, None, found
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), cache.digest(value), found


def _run_all(tasks, seconds, jobs, progress):
    """``_attempt`` of every task, in order: cached results read here, the others derived by up to
    ``jobs`` worker processes. A result that does not arrive exactly as it was derived (see
    cache.restore) is derived again here, so a parallel build writes the same bytes as a serial one."""
    results = [None] * len(tasks)
    missing = []
    for i, task in enumerate(tasks):
        value = cache.lookup(task.fn.__name__, *task.args)
        if value is cache.MISS:
            missing.append(i)
        else:
            results[i] = (value, ())
    shown = (lambda i: progress(tasks[i].name)) if progress else None
    for i, (data, digest, found) in zip(missing, parallel.map_indexed(_run_task, (tasks, seconds), missing, jobs, shown)):
        value = None
        if data is not None:
            value = cache.restore(data, digest)
            if value is cache.MISS:
                value, found = _attempt(seconds, tasks[i].fn, tasks[i].args)
        results[i] = (value, found)
    return results


def derive_all(spec: M.Spec, budget=ENTRY_BUDGET_S, progress=None, jobs=1) -> Derived:
    """Every entry of ``spec`` derived (activations, losses, then the fused heads of its tasks), by
    up to ``jobs`` processes (None: one per core); the result does not depend on ``jobs``."""
    budget = ENTRY_BUDGET_S if budget is None else budget
    problems = Collector()
    tasks = [_Task(act.location, act.name, derive_activation, (act,)) for act in spec.activations]
    tasks += [_Task(loss.location, loss.name, derive_loss, (loss,)) for loss in spec.losses]
    try:
        pairs = head_pairs(spec)
    except EntryFailure as exc:
        problems.add(spec.tasks[0].location, None, None, exc.message)
        pairs = []
    tasks += [_Task(loss.location, f"{act.name}_{loss.name}", derive_head, (act, loss)) for act, loss in pairs]
    acts, losses, heads = [], [], []
    for task, (value, found) in zip(tasks, _run_all(tasks, budget, jobs, progress)):
        for field, message in found:
            problems.add(task.location, task.name, field, message)
        if value is None:
            continue
        if task.fn is derive_activation:
            acts.append(value)
        elif task.fn is derive_loss:
            losses.append(Entry(task.name, "loss", tuple(value)))
        else:
            act, loss = task.args
            heads.append(Entry(task.name, "head", tuple(value), (), act.name, loss.name))
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
