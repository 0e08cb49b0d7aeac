"""The JAX target: ``printer`` (SymPy expressions to jax.numpy operations), ``render`` (custom_jvp
functions with the derived derivatives as their JVP rules, for the templates) and ``templates/``
(the package's modules and its ``_runtime``)."""
from .render import render_package

__all__ = ["render_package"]
