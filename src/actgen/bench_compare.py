"""Time two builds of the NumPy package side by side: ``python -m actgen.bench_compare BASE``.

BASE is a folder holding another generated NumPy package, typically an earlier commit's
(``git worktree add /tmp/base HEAD~1``, then ``BASE=/tmp/base/generated``). Each function named
with ``--only`` (default: the GELUs and their derivatives) is called on the same 1e6 values of
N(0, 4) from both packages, and from its obvious NumPy formula where there is one, in float64 and
float32, interleaved in one process (:func:`actgen.bench.interleaved_medians`: this machine's speed
drifts, so the two builds are timed in turns, never one after the other). Each allocator regime of
:mod:`actgen.bench` ("fresh" and "reused" pages) runs in a child process of its own. Ratios below
1 mean the package in ``--out`` is faster. A benchmark to run, not a test.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from .bench import MEMORY, fmt_ms, interleaved_medians, obvious_formulas

_CHILD = "_ACTGEN_BENCH_COMPARE_MEMORY"


def load_package(folder, package, alias):
    """The generated package in ``folder/package``, imported under the name ``alias`` (two builds
    of one package can then live in one process)."""
    init = Path(folder) / package / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"bench_compare: no package at {init.parent}: pass the folder that holds {package}/ (an `actgen build --out` folder)")
    spec = importlib.util.spec_from_file_location(alias, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


def compare(base, new, names, n=1_000_000, repeat=15, seed=0):
    """Rows (name, dtype, base time, new time, obvious label, obvious time)."""
    rng = np.random.default_rng(seed)
    z64 = rng.normal(0.0, 4.0, n)
    out = []
    for dtype in (np.float64, np.float32):
        z = z64.astype(dtype)
        obvious = obvious_formulas(z)
        for name in names:
            fns = [(lambda f: (lambda: f(z)))(getattr(base, name)), (lambda f: (lambda: f(z)))(getattr(new, name))]
            label, peer = obvious.get(name, (None, None))
            if peer is not None:
                fns.append(peer)
            with np.errstate(all="ignore"):
                times = interleaved_medians(fns, repeat=repeat)
            out.append((name, np.dtype(dtype).name, times[0], times[1], label, times[2] if peer is not None else None))
    return out


def _table(rows):
    lines = ["| function | dtype | base | new | new / base | obvious formula | new / formula |", "| --- | --- | ---: | ---: | ---: | --- | ---: |"]
    for name, dtype, t_base, t_new, label, t_peer in rows:
        peer = f"{label}: {fmt_ms(t_peer)} | {t_new / t_peer:.2f}" if t_peer else "n/a | n/a"
        lines.append(f"| {name} | {dtype} | {fmt_ms(t_base)} | {fmt_ms(t_new)} | {t_new / t_base:.2f} | {peer} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m actgen.bench_compare", description=__doc__.splitlines()[0])
    parser.add_argument("base", help="folder holding the other build's package (an `actgen build --out` folder)")
    parser.add_argument("--out", default="generated", help="folder holding this build's package (default: generated/)")
    parser.add_argument("--package", default="actgen_numpy")
    parser.add_argument("--only", nargs="+", default=["gelu", "gelu_grad", "gelu_tanh", "gelu_tanh_grad"], help="functions to time")
    parser.add_argument("--memory", choices=("both", "fresh", "reused"), default="both")
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    memory = os.environ.get(_CHILD)
    if memory is None:  # the parent: one child per allocator regime (glibc reads its tunables at start)
        import subprocess

        for regime in (("fresh", "reused") if args.memory == "both" else (args.memory,)):
            print(f"\n{regime} pages ({args.size} values of N(0, 4); base {args.base}, new {args.out}):\n", flush=True)
            subprocess.run([sys.executable, "-m", "actgen.bench_compare", *(argv if argv is not None else sys.argv[1:])],
                           env={**os.environ, **MEMORY[regime], _CHILD: regime}, check=True)
        return 0
    base = load_package(args.base, args.package, "_actgen_compare_base")
    new = load_package(args.out, args.package, "_actgen_compare_new")
    missing = [name for name in args.only if not (hasattr(base, name) and hasattr(new, name))]
    if missing:
        raise SystemExit(f"bench_compare: not in both packages: {', '.join(missing)}")
    print(_table(compare(base, new, args.only, n=args.size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
