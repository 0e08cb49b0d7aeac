"""actgen_torch on a CUDA device: the same values as on the CPU, derived backward passes that pass
gradcheck and gradgradcheck there, no host synchronisation, and torch.compile with Inductor.

Skipped where no CUDA device is present (CI has none); run on a GPU machine with
``python -m pytest tests/test_torch_cuda.py``.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device: these tests run on a GPU machine", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import GENERATED, load_catalog  # noqa: E402

CATALOG = load_catalog()
ACTIVATIONS = {a["name"]: a for a in CATALOG["activations"]}
ELEMENTWISE = sorted(n for n, a in ACTIVATIONS.items() if not a["vector"] and not a["split"])  # split activations: tests/test_split.py
VECTOR = sorted(n for n, a in ACTIVATIONS.items() if a["vector"] and not a["reduces"])  # row reductions: tests/test_reductions.py
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def tt():
    if str(GENERATED) not in sys.path:
        sys.path.insert(0, str(GENERATED))
    return importlib.import_module(CATALOG["packages"]["torch"])


def _inputs(dtype):
    z = torch.cat([torch.linspace(-40, 40, 4001, dtype=torch.float64), torch.tensor([-745.0, -710.0, -700.0, -100.0, -88.0, 88.0, 100.0, 700.0, 710.0])])
    return z.to(dtype)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_cpu(tt, name, dtype):
    """Every derivative order on the GPU within a few ulps of the same code on the CPU (the
    accuracy against mpmath is measured on the CPU). Derivatives are sums of terms of order 1
    that cancel at zero crossings (mish_grad2 near z = 1.5): there the difference is measured
    against the terms, as an absolute error of a few ulps of 1."""
    z = _inputs(dtype)
    eps = torch.finfo(dtype).eps
    for suffix in ("", "_grad", "_grad2"):
        fn = getattr(tt, name + suffix)
        cpu, gpu = fn(z), fn(z.to(CUDA)).cpu()
        assert gpu.dtype == dtype
        torch.testing.assert_close(gpu, cpu, rtol=8 * eps, atol=(4 * torch.finfo(dtype).tiny if not suffix else 16 * eps), equal_nan=True)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_cuda_gradcheck_and_gradgradcheck(tt, name):
    z = torch.tensor([-30.0, -3.1, -1.3, -0.4, 0.3, 0.7, 1.6, 2.9, 30.0], dtype=torch.float64, device=CUDA, requires_grad=True)
    params = {p["name"]: torch.tensor(p["default"] + 0.1, dtype=torch.float64, device=CUDA, requires_grad=True) for p in ACTIVATIONS[name]["params"]}
    fn = getattr(tt, name)

    def f(z, *ps):
        return fn(z, **dict(zip(params, ps)))

    assert torch.autograd.gradcheck(f, (z, *params.values()))
    assert torch.autograd.gradgradcheck(f, (z, *params.values()))


@pytest.mark.parametrize("name", ELEMENTWISE + VECTOR)
def test_no_host_synchronisation(tt, name):
    """Forward and backward run without a device-to-host synchronisation (PyTorch's sync debug
    mode turns any into an error)."""
    z = torch.randn(4096, 8, device=CUDA, requires_grad=True)
    fn = getattr(tt, name)
    fn(z).sum()  # warm-up: lazy per-device tables
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fn(z)
        (g,) = torch.autograd.grad(out, z, torch.ones_like(out), create_graph=True)
        if g.requires_grad:  # a piecewise-constant derivative (relu) has no second-order graph
            torch.autograd.grad(g, z, torch.ones_like(g))
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_cuda_heads_and_losses(tt):
    z = torch.tensor([[1e4, -1e4, 0.0]], device=CUDA, requires_grad=True)
    loss = tt.softmax_cce(z, torch.tensor([1], device=CUDA))
    loss.backward()
    assert loss.item() == 2e4 and torch.equal(z.grad.cpu(), torch.tensor([[1.0, -1.0, 0.0]]))
    x = torch.randn(64, 10, dtype=torch.float64, device=CUDA, requires_grad=True)
    labels = torch.randint(0, 10, (64,), device=CUDA)
    torch.testing.assert_close(tt.softmax_cce(x, labels), torch.nn.functional.cross_entropy(x, labels))
    assert torch.autograd.gradgradcheck(lambda a: tt.softmax_cce(a, labels), (x,))


@pytest.mark.parametrize("name", ["sigmoid", "silu", "gelu", "gelu_tanh", "mish", "softplus", "elu"])
def test_cuda_compile_with_inductor(tt, name):
    fn = getattr(tt, name)
    z = torch.randn(1 << 16, device=CUDA, requires_grad=True)
    compiled = torch.compile(fn, fullgraph=True)
    out = compiled(z)
    (g,) = torch.autograd.grad(out.sum(), z)
    torch.testing.assert_close(out, fn(z), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g, getattr(tt, f"{name}_grad")(z.detach()), rtol=1e-6, atol=1e-7)
