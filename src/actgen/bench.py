"""Benchmark the generated package against its peers, in one run: ``python -m actgen.bench``.

Each row times one function on the same input (medians of repeated runs, after a warm-up) for
the generated code and for each peer that exists on this machine: scipy.special, SymPy's
``lambdify`` of the raw derivative (``cse=True``), hand-written NumPy, and PyTorch on the CPU when
it is installed. Ratios are generated / peer (below 1: the generated code is faster). Also
measured: the import time of the generated package over ``import numpy``, the cold and no-op
build times, and the build's scaling with the spec's size (:mod:`actgen.bench_build`). This is a benchmark that people run, not a timed test.

NumPy's cost on 8 MB arrays depends on whether a fresh array gets new pages from the kernel (a page
fault per 4 KiB) or memory the allocator has kept from an earlier free, and glibc decides that from
the history of the process. So the functions are timed twice, each time in a fresh process with
glibc's allocator pinned to one regime: "fresh pages" (every array of 128 KiB or more is mapped anew
and returned on free: each temporary costs its page faults) and "reused pages" (freed memory is kept
and handed out again: temporaries cost no page faults, the regime most favourable to peers that
allocate many).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def interleaved_medians(fns, repeat=15, number=3):
    """Median time of each function, measured in turns (generated, peer, peer; peer, peer, generated; ...):
    this machine's speed drifts by up to 2x within a minute, and the allocator's state changes
    what a fresh 8 MB array costs, so peers are timed side by side rather than one after another."""
    for fn in fns:
        fn()  # warm-up (page faults, lazy imports)
    times = [[] for _ in fns]
    order = list(range(len(fns)))
    for _ in range(repeat):
        for i in order:
            start = time.perf_counter()
            for _ in range(number):
                fns[i]()
            times[i].append((time.perf_counter() - start) / number)
        order = order[1:] + order[:1]  # no function always runs first (or right after another)
    return [statistics.median(t) for t in times]


def _torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def _lambdified_grad(name, spec):
    """lambdify(diff(f), cse=True) of the spec's raw formula: SymPy's own route to NumPy code."""
    import sympy as sp

    from .model import Z

    act = spec.activation(name)
    expr = act.expr.xreplace({p.symbol: p.default for p in act.params})
    return sp.lambdify(Z, sp.diff(expr, Z), modules="numpy", cse=True), sp.lambdify(Z, expr, modules="numpy", cse=True)


def rows(ag, spec, n=1_000_000, seed=0):
    import scipy.special as ss

    torch = _torch()
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 4.0, n)
    zt = torch.from_numpy(z) if torch else None
    out = []

    def row(label, generated, peers, repeat=15, number=3):
        runnable = {}
        for name, fn in peers.items():
            try:
                with np.errstate(all="ignore"):
                    if fn is not None:
                        fn()
                        runnable[name] = fn
            except Exception:  # noqa: BLE001 - a peer that cannot run this function (lambdify of erf, Piecewise)
                pass
        with np.errstate(all="ignore"):
            times = interleaved_medians([generated, *runnable.values()], repeat=repeat, number=number)
        timed = {name: dict(zip(runnable, times[1:])).get(name) for name in peers}
        out.append((label, times[0], timed))

    def inplace_sigmoid():
        buf = np.negative(z)
        np.exp(buf, out=buf)
        np.add(buf, 1.0, out=buf)
        np.reciprocal(buf, out=buf)
        return buf

    row("sigmoid (1e6 float64)", lambda: ag.sigmoid(z), {
        "one np.exp pass": lambda: np.exp(z),
        "scipy.special.expit": lambda: ss.expit(z),
        "lambdify": (lambda f: (lambda: f(z)))(_lambdified_grad("sigmoid", spec)[1]),
        "hand-written NumPy (in place)": inplace_sigmoid,
        "torch.sigmoid": (lambda: torch.sigmoid(zt)) if torch else None,
    })
    torch_fwd = {"tanh": "tanh", "softplus": "nn.functional.softplus", "silu": "nn.functional.silu", "gelu": "nn.functional.gelu", "elu": "nn.functional.elu", "relu": "relu", "mish": "nn.functional.mish"}
    for name in ("tanh", "softplus", "silu", "gelu", "elu", "relu", "mish", "softsign"):
        if not hasattr(ag, name):
            continue
        fn_torch = None
        if torch and name in torch_fwd:
            f = torch
            for part in torch_fwd[name].split("."):
                f = getattr(f, part)
            fn_torch = (lambda f: (lambda: f(zt)))(f)
        row(f"{name} (1e6 float64)", (lambda f: (lambda: f(z)))(getattr(ag, name)), {
            "lambdify": (lambda f: (lambda: f(z)))(_lambdified_grad(name, spec)[1]),
            "torch": fn_torch,
        })
    # PyTorch's backward kernels at the default parameters (sigmoid and tanh from the saved output,
    # the others from the input), each with an incoming gradient of ones
    torch_bwd = {
        "sigmoid": lambda A, ones: (lambda fwd: lambda: A.sigmoid_backward(ones, fwd))(torch.sigmoid(zt)),
        "tanh": lambda A, ones: (lambda fwd: lambda: A.tanh_backward(ones, fwd))(torch.tanh(zt)),
        "softplus": lambda A, ones: lambda: A.softplus_backward(ones, zt, 1.0, 20.0),
        "silu": lambda A, ones: lambda: A.silu_backward(ones, zt),
        "gelu": lambda A, ones: lambda: A.gelu_backward(ones, zt, approximate="none"),
        "elu": lambda A, ones: lambda: A.elu_backward(ones, 1.0, 1.0, 1.0, False, zt),
        "mish": lambda A, ones: lambda: A.mish_backward(ones, zt),
        "relu": lambda A, ones: lambda: A.threshold_backward(ones, zt, 0.0),
    }
    for name in ("sigmoid", "tanh", "softplus", "silu", "gelu", "elu", "mish", "softsign", "relu"):
        grad = getattr(ag, f"{name}_grad", None)
        if grad is None:
            continue
        fn_torch = None
        if torch and name in torch_bwd:
            fn_torch = torch_bwd[name](torch.ops.aten, torch.ones_like(zt))
        with np.errstate(all="ignore"):
            lam = _lambdified_grad(name, spec)[0]
            row(f"{name}_grad (1e6 float64)", (lambda f: (lambda: f(z)))(grad), {
                "lambdify(diff(f), cse=True)": (lambda f: (lambda: f(z)))(lam),
                "torch backward kernel": fn_torch,
            })
    X = rng.normal(0.0, 3.0, (10_000, 100))
    Xt = torch.from_numpy(X) if torch else None
    row("softmax (10000x100 float64)", lambda: ag.softmax(X), {
        "scipy.special.softmax": lambda: ss.softmax(X, axis=-1),
        "torch.softmax": (lambda: torch.softmax(Xt, dim=-1)) if torch else None,
    })
    if hasattr(ag, "logsumexp"):
        row("logsumexp (10000x100 float64)", lambda: ag.logsumexp(X), {
            "scipy.special.logsumexp": lambda: ss.logsumexp(X, axis=-1),
            "torch.logsumexp": (lambda: torch.logsumexp(Xt, dim=-1)) if torch else None,
        })
    if hasattr(ag, "glu"):
        row("glu (10000x100 float64)", lambda: ag.glu(X), {
            "hand-written NumPy a * expit(b)": lambda: X[:, :50] * ss.expit(X[:, 50:]),
            "torch.nn.functional.glu": (lambda: torch.nn.functional.glu(Xt, dim=-1)) if torch else None,
        })
    Y = np.eye(100)[rng.integers(0, 100, 10_000)]
    Yt = torch.from_numpy(Y) if torch else None

    def hand_cce_grad():
        e = np.exp(X - X.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True) - Y) / X.shape[0]

    row("softmax_cce_grad (10000x100)", lambda: ag.softmax_cce_grad(Y, X), {
        "hand-written NumPy": hand_cce_grad,
        "torch (softmax - y) / N": (lambda: (torch.softmax(Xt, dim=-1) - Yt) / Xt.shape[0]) if torch else None,
    })
    yb = (rng.random(n) < 0.5).astype(np.float64)
    ybt = torch.from_numpy(yb) if torch else None
    row("sigmoid_bce_grad (1e6)", lambda: ag.sigmoid_bce_grad(yb, z), {
        "hand-written NumPy": lambda: (ss.expit(z) - yb) / z.size,
        "torch (sigmoid - y) / N": (lambda: (torch.sigmoid(zt) - ybt) / zt.numel()) if torch else None,
    })
    float32_rows(ag, spec, row, z, torch)
    size_rows(ag, row, rng)
    return out


def obvious_formulas(x):
    """name -> (label, call) of the obvious NumPy/SciPy evaluation of a bundled function on ``x``,
    in ``x``'s dtype (the peers of issue 18's goals)."""
    import scipy.special as ss

    t = x.dtype.type
    c = t(np.sqrt(2.0 / np.pi))
    return {
        "sigmoid": ("scipy.special.expit", lambda: ss.expit(x)),
        "gelu": ("z * scipy.special.ndtr(z)", lambda: x * ss.ndtr(x)),
        "gelu_tanh": ("NumPy tanh formula", lambda: t(0.5) * x * (1 + np.tanh(c * (x + t(0.044715) * x * x * x)))),
        "softplus": ("np.logaddexp(0, z)", lambda: np.logaddexp(t(0), x)),
    }


def float32_rows(ag, spec, row, z, torch):
    """The forward functions and first derivatives on the same values in float32, against the
    generated float64 call (float32 should be the faster: it computes in float32, its double-double
    terms in float64) and the obvious float32 alternatives."""
    z32 = z.astype(np.float32)
    zt32 = torch.from_numpy(z32) if torch else None
    obvious = obvious_formulas(z32)
    for name in ("sigmoid", "tanh", "softplus", "silu", "gelu", "gelu_tanh", "elu", "relu", "mish", "softsign"):
        for fname in (name, f"{name}_grad"):
            fn = getattr(ag, fname, None)
            if fn is None:
                continue
            peers = {"generated, float64 input": (lambda f: (lambda: f(z)))(fn), "one np.exp pass (float32)": lambda: np.exp(z32)}
            if fname in obvious:
                peers[obvious[fname][0]] = obvious[fname][1]
            with np.errstate(all="ignore"):
                try:
                    lam = _lambdified_grad(name, spec)[0 if fname.endswith("_grad") else 1]
                    peers["lambdify (float32)"] = (lambda f: (lambda: f(z32)))(lam)
                except Exception:  # noqa: BLE001 - lambdify cannot print every formula
                    pass
            if torch and fname == name and name in ("sigmoid", "tanh"):
                peers["torch (float32)"] = (lambda f: (lambda: f(zt32)))(getattr(torch, name))
            row(f"{fname} (1e6 float32)", (lambda f: (lambda: f(z32)))(fn), peers, 9, 3)


def size_rows(ag, row, rng):
    """Rows of a few functions at 1 element (the per-call overhead: conversion, dispatch,
    workspace), 1e3 and 1e5 (cache-resident) and 1e7 elements (80 MB arrays), timed by ``row``."""
    import scipy.special as ss

    peers_of = {
        "sigmoid": ("scipy.special.expit", ss.expit),
        "softplus": ("np.logaddexp(0, z)", lambda x: np.logaddexp(0.0, x)),
        "gelu": ("z * scipy.special.ndtr(z)", lambda x: x * ss.ndtr(x)),
    }
    for size, label in ((1, "1 element"), (1000, "1e3"), (100_000, "1e5"), (10_000_000, "1e7")):
        zs = rng.normal(0.0, 4.0, size)
        repeat, number = (5, 1) if size >= 10**7 else (15, max(3, 100_000 // size))
        for name, (peer, fn) in peers_of.items():
            if hasattr(ag, name):
                row(f"{name} ({label} float64)", (lambda f: (lambda: f(zs)))(getattr(ag, name)), {
                    peer: (lambda f: (lambda: f(zs)))(fn),
                    "one np.exp pass": lambda: np.exp(zs),
                }, repeat, number)


def import_overhead(out_dir, package, runs=7):
    def cost(code):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(out_dir)})
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    base = cost("import numpy")
    gen = cost(f"import numpy, {package}")
    heavy = subprocess.run([sys.executable, "-c", f"import sys, {package}; print(' '.join(m for m in ('sympy', 'scipy', 'actgen', 'torch') if m in sys.modules))"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(out_dir)}).stdout.strip()
    return base, gen, heavy


def build_times(spec_dir):
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ACTGEN_CACHE_DIR": os.path.join(tmp, "cache")}
        cmd = [sys.executable, "-m", "actgen.cli", "build", "--quiet", "--spec", str(spec_dir), "--out", os.path.join(tmp, "out")]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        noop = time.perf_counter() - start
    return cold, noop


def fmt_ms(t):
    if t is None:
        return "n/a"
    return f"{t * 1e6:.1f} us" if t < 1e-4 else f"{t * 1e3:.2f} ms"


MEMORY = {
    # glibc's allocator tunables (read at process start): a fixed threshold turns off its dynamic
    # adjustment, which is what makes one run differ from the next
    "fresh": {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024), "MALLOC_TRIM_THRESHOLD_": str(128 * 1024)},  # glibc's initial values
    "reused": {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)},
}


def _timed_rows(args, memory):
    """The rows, timed in a child process whose allocator is pinned to ``memory``."""
    cmd = [sys.executable, "-m", "actgen.bench", "--rows-json", "--out", args.out, "--package", args.package, "--spec", args.spec]
    env = {**os.environ, **MEMORY[memory]}
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return json.loads(done.stdout)


NO_TORCH = "not installed (pip install -e '.[torch]' adds it)"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m actgen.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="generated", help="folder holding the generated package (default: generated/)")
    parser.add_argument("--package", default="actgen_numpy")
    parser.add_argument("--spec", default="spec")
    parser.add_argument("--no-build", action="store_true", help="skip the build-time measurements")
    parser.add_argument("--build-sizes", type=int, nargs="*", default=[10, 40, 160], metavar="N",
                        help="sizes of the synthetic specs of the build-scale rows (default: 10 40 160; none: skip them)")
    parser.add_argument("--memory", choices=("both", *MEMORY), default="both",
                        help="allocator regime(s) to time in: fresh pages, reused pages, or both (default)")
    parser.add_argument("--no-frameworks", action="store_true", help="skip the PyTorch and JAX benchmarks (python -m actgen.bench_torch, actgen.bench_jax)")
    parser.add_argument("--rows-json", action="store_true", help=argparse.SUPPRESS)  # a child: time the rows in this process
    args = parser.parse_args(argv)
    from .model import load_spec

    sys.path.insert(0, str(Path(args.out).resolve()))
    if args.rows_json:
        ag = importlib.import_module(args.package)
        print(json.dumps(rows(ag, load_spec(args.spec))))
        return 0
    torch = _torch()
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(sorted({i.get("internal_api", "?") for i in threadpool_info()}))
    except ImportError:
        blas = "?"
    regimes = tuple(MEMORY) if args.memory == "both" else (args.memory,)
    print(f"# actgen benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, PyTorch {torch.__version__ if torch else NO_TORCH} ({blas})\n")
    timed = {memory: _timed_rows(args, memory) for memory in regimes}
    head = " | ".join(f"{m} pages: generated | peer | ratio" for m in regimes)
    print(f"| function | peer | {head} |")
    print("| --- | --- |" + " ---: | ---: | ---: |" * len(regimes))
    first_rows = timed[regimes[0]]
    for i, (label, _t_gen, peers) in enumerate(first_rows):
        for j, name in enumerate(peers):
            cells = []
            for memory in regimes:
                _label, t_gen, times = timed[memory][i]
                t = times.get(name)
                ratio = "n/a" if t is None else f"{t_gen / t:.2f}"
                cells.append(f"{fmt_ms(t_gen) if j == 0 else ''} | {fmt_ms(t)} | {ratio}")
            print(f"| {label if j == 0 else ''} | {name} | {' | '.join(cells)} |")
    print("\nRatio: generated / peer (below 1: the generated code is faster). Medians of runs timed in turns.")
    base, gen, heavy = import_overhead(Path(args.out).resolve(), args.package)
    print(f"\nImport: `import numpy` {base * 1e3:.1f} ms; `import numpy, {args.package}` {gen * 1e3:.1f} ms: "
          f"+{(gen - base) * 1e3:.1f} ms; heavy modules imported by the package: {heavy or 'none'}")
    if not args.no_build:
        cold, noop = build_times(args.spec)
        print(f"Build of {args.spec}/: cold (empty cache) {cold:.1f} s; no-op rebuild {noop:.2f} s (each a fresh process)")
        if args.build_sizes:
            from . import bench_build

            print()
            print(bench_build.report([bench_build.measure(n) for n in args.build_sizes], None))
    if not args.no_frameworks:
        # the framework packages, each in a fresh process (their own threads and allocators)
        for module, framework in (("actgen.bench_torch", "torch"), ("actgen.bench_jax", "jax")):
            if importlib.util.find_spec(framework) is None:
                print(f"\n{framework} is not installed: pip install -e '.[{framework}]' to benchmark the {framework} package too")
                continue
            print()
            sys.stdout.flush()
            extra = ["--out", args.out, "--spec", args.spec] if framework == "torch" else []
            subprocess.run([sys.executable, "-m", module, *extra], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
