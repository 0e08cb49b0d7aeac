"""actgen: activation and loss functions from YAML to proven derivatives, stable NumPy and docs."""

__version__ = "0.1.0"
