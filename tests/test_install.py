"""A built package is a distribution: `pip install` of its folder makes it importable from any
directory, with ``__version__`` (actgen's version and the spec's content hash), ``__all__`` and
``catalog()``; what pip leaves in the folder (build/, *.egg-info) is not actgen's business."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import actgen
from actgen.cli import main

SPEC = """\
activations:
  scaled_swish:
    expr: z / (1 + exp(-beta * z))
    params: {beta: 1.5}
  bent_identity:
    expr: (sqrt(z**2 + 1) - 1) / 2 + z
losses:
  half_square:
    expr: (y_hat - y)**2 / 2
"""

PROBE = textwrap.dedent(
    """
    import json, os
    import numpy as np
    import my_pkg
    print(json.dumps({
        "file": my_pkg.__file__, "cwd": os.getcwd(), "version": my_pkg.__version__, "all": list(my_pkg.__all__),
        "catalog": my_pkg.catalog(), "activations": [f["name"] for f in my_pkg.catalog("activation")],
        "value": float(my_pkg.scaled_swish_grad_beta(np.array([1.0]), beta=2.0)[0]),
    }))
    """
)


def _build(spec: Path, out: Path):
    code = main(["build", "--spec", str(spec), "--out", str(out), "--package", "my_pkg", "--target", "numpy", "--quiet"])
    assert code == 0


def _pip(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "-q", "--no-deps", "--no-build-isolation", *args],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    (tmp / "my.yaml").write_text(SPEC, encoding="utf-8")
    _build(tmp / "my.yaml", tmp / "mygen")
    target = tmp / "site"
    _pip("--target", str(target), str(tmp / "mygen" / "my_pkg"), cwd=tmp)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    # only the install target on the path: not mygen/, not the repository
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return tmp, target, json.loads(run.stdout)


def test_pip_install_imports_from_another_directory(installed):
    tmp, target, report = installed
    assert Path(report["file"]).resolve() == (target / "my_pkg" / "__init__.py").resolve()
    assert Path(report["cwd"]).resolve() == (tmp / "elsewhere").resolve()
    # d/dbeta z sigma(beta z) = z^2 sigma(beta z) (1 - sigma(beta z)), at z = 1, beta = 2
    s = 1.0 / (1.0 + 2.718281828459045 ** -2.0)
    assert report["value"] == pytest.approx(s * (1 - s), rel=1e-14)
    dist = [p.name for p in target.iterdir() if p.name.endswith(".dist-info")]
    assert dist == [f"my_pkg-{report['version']}.dist-info"]


def test_version_is_actgens_with_the_spec_hash(installed, tmp_path):
    _, _, report = installed
    match = re.fullmatch(re.escape(actgen.__version__) + r"\+spec\.([0-9a-f]{12})", report["version"])
    assert match, report["version"]
    # another spec (one character more) gives another label; the same spec elsewhere the same one
    (tmp_path / "my.yaml").write_text(SPEC + "\n", encoding="utf-8")
    _build(tmp_path / "my.yaml", tmp_path / "a")
    (tmp_path / "same").mkdir()
    (tmp_path / "same" / "my.yaml").write_text(SPEC, encoding="utf-8")
    _build(tmp_path / "same" / "my.yaml", tmp_path / "b")

    def version(folder):
        return re.search(r'^VERSION = "(.*)"$', (folder / "my_pkg" / "_catalog.py").read_text(encoding="utf-8"), re.M).group(1)

    assert version(tmp_path / "a") != report["version"]
    assert version(tmp_path / "b") == report["version"]
    toml = (tmp_path / "b" / "my_pkg" / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{report["version"]}"' in toml and '"numpy>=' in toml


def test_catalog_lists_every_exported_function(installed):
    _, _, report = installed
    records = {r["name"]: r for r in report["catalog"]}
    assert sorted(records) == sorted(report["all"])
    assert report["activations"] == sorted(n for n, r in records.items() if r["kind"] == "activation")
    swish = records["scaled_swish_grad_beta"]
    assert (swish["kind"], swish["entry"], swish["computes"], swish["params"]) == ("activation", "scaled_swish", "grad_beta", {"beta": 1.5})
    assert swish["signature"] == "(z, *, beta=1.5)"
    assert records["bent_identity"]["properties"]["monotonic"] == "increasing"
    assert (records["half_square"]["computes"], records["half_square_grad"]["computes"]) == ("loss", "loss_grad")
    assert {r["kind"] for r in records.values()} == {"activation", "loss"}


def test_catalog_rejects_an_unknown_kind(installed):
    _, target, _ = installed
    code = "import my_pkg\ntry:\n    my_pkg.catalog('activations')\nexcept ValueError as e:\n    print(e)"
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", code], cwd=target, env=env, capture_output=True, text=True, timeout=60)
    assert "unknown kind 'activations'" in run.stdout and "activation, loss" in run.stdout, run.stdout + run.stderr


def test_check_ignores_what_pip_leaves_in_the_package(installed):
    """pip builds in the package folder: build/ (with copies of the generated files) and
    my_pkg.egg-info stay, and neither `actgen check` nor a rebuild touches or reports them."""
    tmp, _, _ = installed
    pkg = tmp / "mygen" / "my_pkg"
    leftovers = sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file() and (p.relative_to(pkg).parts[0] == "build" or ".egg-info" in p.as_posix()))
    assert any(p.startswith("build/") for p in leftovers) and any(".egg-info/" in p for p in leftovers)
    args = ["--spec", str(tmp / "my.yaml"), "--out", str(tmp / "mygen"), "--package", "my_pkg", "--target", "numpy"]
    assert main(["check", *args]) == 0
    assert main(["build", *args, "--quiet"]) == 0
    assert sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file() and (p.relative_to(pkg).parts[0] == "build" or ".egg-info" in p.as_posix())) == leftovers


@pytest.mark.parametrize("name", ["actgen_numpy", "actgen_torch", "actgen_jax"])
def test_bundled_packages_have_version_and_catalog(name):
    """Each committed package lists every exported function (torch's nn module aside) and carries
    the version label of the spec it was generated from; its pyproject.toml names the same version."""
    import importlib

    from conftest import GENERATED

    pytest.importorskip({"actgen_numpy": "numpy", "actgen_torch": "torch", "actgen_jax": "jax"}[name])
    if str(GENERATED) not in sys.path:
        sys.path.insert(0, str(GENERATED))
    pkg = importlib.import_module(name)
    records = pkg.catalog()
    assert {r["name"] for r in records} == set(pkg.__all__) - {"nn"}
    assert [r["name"] for r in records] == sorted(r["name"] for r in records)
    assert all(r["same_as"] is None or r["same_as"] in pkg.__all__ for r in records)
    assert re.fullmatch(re.escape(actgen.__version__) + r"\+spec\.[0-9a-f]{12}", pkg.__version__)
    assert f'version = "{pkg.__version__}"' in (GENERATED / name / "pyproject.toml").read_text(encoding="utf-8")


def test_an_entry_named_like_the_catalog_is_refused(tmp_path, capsys):
    (tmp_path / "my.yaml").write_text("activations:\n  catalog:\n    expr: z / (1 + Abs(z))\n", encoding="utf-8")
    assert main(["build", "--spec", str(tmp_path / "my.yaml"), "--out", str(tmp_path / "out"), "--package", "my_pkg"]) == 2
    err = capsys.readouterr().err
    assert "my.yaml:2: entry 'catalog'" in err and "would hide the package's own catalog" in err, err
    assert not (tmp_path / "out").exists()
