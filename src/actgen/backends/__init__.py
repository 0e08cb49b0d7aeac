"""Targets: one folder per array library, each holding its printer, templates and runtime.

Everything before printing (the model, rules, derivations, proofs, properties) knows no target.
A target is a subpackage of this one exposing ``render_package(derived, package) -> {path: text}``,
registered in :data:`TARGETS` by name; adding a target means adding its folder and one line here.

Package names: ``--package NAME`` names the NumPy package; the package of every other target is
NAME with its ``_numpy`` suffix replaced by ``_<target>`` (``actgen_numpy`` -> ``actgen_torch``),
or NAME + ``_<target>`` when NAME has no such suffix (``my_acts`` -> ``my_acts_torch``). The rule
does not depend on which targets a build selects.
"""
from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Target:
    name: str  # as given to --target
    module: str  # the subpackage that renders it
    summary: str  # for --help and the docs
    requires: str  # what the generated package imports (for users: what to install)
    dependencies: tuple[str, ...] = ()  # the same, as the generated pyproject.toml's requirements


TARGETS = {
    "numpy": Target("numpy", "actgen.backends.numpy", "NumPy functions and their derivatives (SciPy for a few special functions)", "numpy, scipy",
                    ("numpy>=1.26,<3", "scipy>=1.11,<2")),
    "torch": Target("torch", "actgen.backends.torch", "PyTorch functions with the derived derivatives as autograd backward passes, and nn modules", "torch", ("torch>=2.13",)),
    "jax": Target("jax", "actgen.backends.jax", "JAX functions with the derived derivatives as custom_jvp rules (jit, vmap, grad, jacfwd, jacrev)", "jax", ("jax>=0.6,<0.11",)),
}
DEFAULT_PACKAGE = "actgen_numpy"


def package_name(base: str, target: str) -> str:
    """The package a target's code goes into, from the --package name (see the module's text)."""
    if target == "numpy":
        return base
    stem = base[: -len("_numpy")] if base.endswith("_numpy") and len(base) > len("_numpy") else base
    return f"{stem}_{target}"


def packages(base: str, targets) -> dict[str, str]:
    """Target name -> package name, in registry order."""
    chosen = set(targets)
    return {t: package_name(base, t) for t in TARGETS if t in chosen}


def render_package(target: str, derived, package: str) -> dict[str, str]:
    return importlib.import_module(TARGETS[target].module).render_package(derived, package)
