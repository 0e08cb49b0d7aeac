"""The PyTorch target: ``printer`` (SymPy expressions to torch operations), ``render`` (autograd
Functions, functional API and nn modules for the templates) and ``templates/`` (the package's
modules and its ``_runtime``)."""
from .render import render_package

__all__ = ["render_package"]
