"""The NumPy target: ``printer`` (SymPy expressions to NumPy ufunc code), ``render`` (function
views for the templates) and ``templates/`` (the package's modules and its ``_runtime``)."""
from .render import render_package

__all__ = ["render_package"]
