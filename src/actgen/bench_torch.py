"""The PyTorch package against its peers, in one run: ``python -m actgen.bench_torch``.

For each elementwise activation of the spec: forward + backward time of the generated function
(its derived backward) against (a) autograd of the spec's formula written in torch (SymPy's
``lambdify(..., "torch")``) and (b) PyTorch's native function where one exists; the bytes saved
for backward per call (counted with ``torch.autograd.graph.saved_tensors_hooks``); and, for a
handful, forward + backward under ``torch.compile`` against the native function. Medians of runs
timed in turns (see :func:`actgen.bench.interleaved_medians`). Also run by ``python -m actgen.bench``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# PyTorch's own function for a spec entry, where one exists (the name as PyTorch spells it)
NATIVE = {
    "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "leaky_relu": "nn.functional.leaky_relu", "softplus": "nn.functional.softplus",
    "elu": "nn.functional.elu", "selu": "nn.functional.selu", "celu": "nn.functional.celu", "gelu": "nn.functional.gelu",
    "silu": "nn.functional.silu", "mish": "nn.functional.mish", "softsign": "nn.functional.softsign", "hard_tanh": "nn.functional.hardtanh",
    "hard_sigmoid": "nn.functional.hardsigmoid", "relu6": "nn.functional.relu6", "log_sigmoid": "nn.functional.logsigmoid",
}
NATIVE_ARGS = {"gelu_tanh": ("nn.functional.gelu", {"approximate": "tanh"}), "prelu": ("nn.functional.prelu", {"weight": 0.25})}
COMPILED = ("sigmoid", "silu", "gelu", "mish", "softplus")


def _native(torch, name, dtype, device):
    path, kwargs = NATIVE_ARGS.get(name, (NATIVE.get(name), {}))
    if path is None:
        return None
    f = torch
    for part in path.split("."):
        f = getattr(f, part)
    if "weight" in kwargs:
        weight = torch.tensor([kwargs["weight"]], dtype=dtype, device=device)
        return lambda x: f(x, weight)
    return lambda x: f(x, **kwargs)


def _formula(torch, act):
    """The spec's formula as torch operations, for autograd to differentiate (its defaults put in,
    numbers evaluated)."""
    import sympy as sp

    from .model import Z

    expr = sp.N(act.expr.xreplace({p.symbol: p.default for p in act.params}))
    f = sp.lambdify(Z, expr, modules="torch")
    return f


def saved_bytes(torch, fn, x):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total[0]


def rows(tt, spec, n=1_000_000, dtype="float32", device="cpu", compiled=COMPILED):
    import torch

    from .bench import interleaved_medians

    dt = getattr(torch, dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)
    z = (torch.randn(n, generator=gen, dtype=torch.float64) * 4).to(dtype=dt, device=device)
    x = z.detach().requires_grad_()
    ones = torch.ones_like(z)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def fwd_bwd(f):
        def run():
            y = f(x)
            torch.autograd.grad(y, x, ones)
            sync()
        return run

    out = []
    for act in spec.activations:
        if act.vector or act.split or not hasattr(tt, act.name):  # class-axis and split functions: not elementwise
            continue
        ours = getattr(tt, act.name)
        peers = {}
        try:
            formula = _formula(torch, act)
            fwd_bwd(formula)()
            peers["autograd of the formula"] = formula
        except Exception:  # noqa: BLE001 - a formula lambdify cannot print for torch (erf of a number, Piecewise of numbers)
            pass
        native = _native(torch, act.name, dt, device)
        if native is not None:
            peers["PyTorch native"] = native
        times = interleaved_medians([fwd_bwd(ours)] + [fwd_bwd(f) for f in peers.values()], repeat=9, number=2)
        saved = {"generated": saved_bytes(torch, ours, x), **{k: saved_bytes(torch, f, x) for k, f in peers.items()}}
        row = dict(name=act.name, generated=times[0], peers=dict(zip(peers, times[1:])), saved=saved, input_bytes=z.numel() * z.element_size())
        if act.name in compiled and native is not None:
            try:
                torch._dynamo.reset()
                ours_c = torch.compile(ours, fullgraph=True)
                native_c = torch.compile(native, fullgraph=True)
                t = interleaved_medians([fwd_bwd(ours_c), fwd_bwd(native_c), fwd_bwd(native)], repeat=9, number=2)
                row["compiled"] = dict(generated=t[0], native_compiled=t[1], native_eager=t[2])
            except Exception as exc:  # noqa: BLE001 - reported, not hidden
                row["compiled"] = dict(error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        out.append(row)
    return out


def table(rows_, dtype, device, n):
    lines = [f"Forward + backward, {n:.0e} {dtype} values on {device} (ratio: generated / peer; below 1 is faster):", "",
             "| function | generated | autograd of the formula | ratio | PyTorch native | ratio | saved bytes: generated / formula / input |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]

    def ms(t):
        return "n/a" if t is None else f"{t * 1e3:.2f} ms"

    def ratio(a, b):
        return "n/a" if b is None else f"{a / b:.2f}"

    for r in rows_:
        f, nat = r["peers"].get("autograd of the formula"), r["peers"].get("PyTorch native")
        saved = f"{r['saved']['generated']} / {r['saved'].get('autograd of the formula', 'n/a')} / {r['input_bytes']}"
        lines.append(f"| {r['name']} | {ms(r['generated'])} | {ms(f)} | {ratio(r['generated'], f)} | {ms(nat)} | {ratio(r['generated'], nat)} | {saved} |")
    compiled = [r for r in rows_ if "compiled" in r]
    if compiled:
        lines += ["", "Under `torch.compile(fullgraph=True)` (forward + backward):", "",
                  "| function | generated, compiled | native, compiled | ratio | native, eager | ratio |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in compiled:
            c = r["compiled"]
            if "error" in c:
                lines.append(f"| {r['name']} | {c['error']} | | | | |")
                continue
            lines.append(f"| {r['name']} | {ms(c['generated'])} | {ms(c['native_compiled'])} | {c['generated'] / c['native_compiled']:.2f} | "
                         f"{ms(c['native_eager'])} | {c['generated'] / c['native_eager']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m actgen.bench_torch", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="generated", help="folder holding the generated package (default: generated/)")
    parser.add_argument("--package", default="actgen_torch")
    parser.add_argument("--spec", default="spec")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (each compiles for tens of seconds on a small CPU)")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("actgen.bench_torch: PyTorch is not installed; pip install -e '.[torch]' (torch==2.13.0) to benchmark actgen_torch", file=sys.stderr)
        return 2
    from .model import load_spec

    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    sys.path.insert(0, str(Path(args.out).resolve()))
    tt = importlib.import_module(args.package)
    r = rows(tt, load_spec(args.spec), n=args.n, dtype=args.dtype, device=args.device, compiled=() if args.no_compile else COMPILED)
    print(f"# actgen_torch benchmark: PyTorch {torch.__version__}, {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else f", {torch.get_num_threads()} threads") + "\n")
    print(table(r, args.dtype, args.device, args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
