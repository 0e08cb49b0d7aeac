"""Benchmark the generated JAX package: ``python -m actgen.bench_jax [--n 1000000] [--only NAME ...]``.

For every elementwise activation of the catalog, jitted, on n values (CPU, medians of interleaved
runs after compilation), in float32 and float64: the forward pass, and forward plus backward
(``jax.value_and_grad`` of the sum), for

- ``actgen``: the generated function (its custom_jvp rule is the derived derivative);
- ``jax.nn``: JAX's own function where one exists (mish, gelu, softplus, ...);
- ``naive``: the spec's formula written with jax.numpy (SymPy's lambdify of it), differentiated
  by ``jax.grad``: what one gets without actgen.

Ratios are actgen / peer (below 1: the generated code is faster). Enables x64 for the float64 rows
(the generated package itself never does). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

# jax.nn's function for a spec entry, where JAX has one (keyword arguments at the spec's defaults)
JAX_NN = {
    "celu": lambda z: jax.nn.celu(z, alpha=1.0),
    "elu": lambda z: jax.nn.elu(z, alpha=1.0),
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "gelu_tanh": lambda z: jax.nn.gelu(z, approximate=True),
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "hard_tanh": jax.nn.hard_tanh,
    "leaky_relu": lambda z: jax.nn.leaky_relu(z, negative_slope=0.01),
    "linear": jax.nn.identity,
    "log_sigmoid": jax.nn.log_sigmoid,
    "mish": jax.nn.mish,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "selu": jax.nn.selu,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "tanh": jnp.tanh,
}


def medians(fns, repeat=11, number=3):
    """Median seconds per call of each (already compiled) function, timed in turns
    (:func:`actgen.bench.interleaved_medians`, each call waited for: JAX dispatches asynchronously)."""
    from .bench import interleaved_medians

    return interleaved_medians([(lambda f: lambda: jax.block_until_ready(f()))(f) for f in fns], repeat=repeat, number=number)


def naive(act):
    """The spec's formula as a jax.numpy function of z (parameters at their defaults)."""
    from .primitives import elementary

    z = sp.Symbol("z", real=True)
    expr = elementary(act.expr).xreplace({p.symbol: p.default for p in act.params})
    return sp.lambdify(z, expr, modules=[{"erf": jax.scipy.special.erf}, "jax"])


def _compiled(fn, x):
    forward = jax.jit(fn)
    both = jax.jit(jax.value_and_grad(lambda v: jnp.sum(fn(v))))
    jax.block_until_ready(forward(x))
    jax.block_until_ready(both(x))
    return (lambda: forward(x)), (lambda: both(x))


def run(n=1_000_000, only=(), repeat=11):
    root = Path(__file__).resolve().parents[2]
    catalog = json.loads((root / "generated" / "catalog.json").read_text(encoding="utf-8"))
    sys.path.insert(0, str(root / "generated"))
    package = importlib.import_module(catalog["packages"]["jax"])
    from .model import load_spec

    spec = load_spec(str(root / "spec"))
    rows = []
    for entry in catalog["activations"]:
        name = entry["name"]
        if entry["vector"] or entry["split"] or (only and name not in only):  # elementwise only
            continue
        act = spec.activation(name)
        peers = {"actgen": getattr(package, name), "naive": naive(act)}
        if name in JAX_NN:
            peers["jax.nn"] = JAX_NN[name]
        for dtype in (jnp.float32, jnp.float64):
            x = jnp.asarray(np.random.default_rng(0).normal(scale=4.0, size=n), dtype=dtype)
            labels, calls = [], []
            for label, fn in peers.items():
                f, fb = _compiled(fn, x)
                labels += [(label, "fwd"), (label, "fwd+bwd")]
                calls += [f, fb]
            t = dict(zip(labels, medians(calls, repeat)))
            rows.append((name, jnp.dtype(dtype).name, t))
    return rows


def markdown(rows, n):
    def ms(t, key):
        return f"{t[key] * 1e3:.2f}" if key in t else "-"

    def ratio(t, mode, peer):
        return f"{t[('actgen', mode)] / t[(peer, mode)]:.2f}" if (peer, mode) in t else "-"

    lines = [f"JAX {jax.__version__}, {jax.devices()[0].platform.upper()}, n = {n:g}, jitted, median ms; ratio = actgen / peer.", "",
             "| function | dtype | fwd actgen | fwd jax.nn | fwd naive | fwd+bwd actgen | fwd+bwd jax.nn | fwd+bwd naive (jax.grad) | fwd+bwd ratio vs jax.nn | vs naive |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, dtype, t in rows:
        lines.append(f"| `{name}` | {dtype} | {ms(t, ('actgen', 'fwd'))} | {ms(t, ('jax.nn', 'fwd'))} | {ms(t, ('naive', 'fwd'))} | "
                     f"{ms(t, ('actgen', 'fwd+bwd'))} | {ms(t, ('jax.nn', 'fwd+bwd'))} | {ms(t, ('naive', 'fwd+bwd'))} | "
                     f"{ratio(t, 'fwd+bwd', 'jax.nn')} | {ratio(t, 'fwd+bwd', 'naive')} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m actgen.bench_jax", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="values per call (default 1e6)")
    p.add_argument("--repeat", type=int, default=11, help="timed turns per function (default 11)")
    p.add_argument("--only", action="append", default=[], metavar="NAME", help="only this activation (repeatable)")
    args = p.parse_args(argv)
    print(markdown(run(args.n, tuple(args.only), args.repeat), args.n), end="")


if __name__ == "__main__":
    main()
