"""Entries derived by worker processes: the same result as a serial build, located failures, the cache."""
from __future__ import annotations

import pytest

from actgen import cache, parallel
from actgen.bench_build import synthetic_spec
from actgen.cli import main
from actgen.model import load_spec
from actgen.pipeline import derive_all


def _spec(tmp_path, n=4):
    path = tmp_path / "synthetic.yaml"
    path.write_text(synthetic_spec(n), encoding="utf-8")
    return load_spec(str(path))


def test_synthetic_specs_differ_entry_by_entry():
    lines = [line for line in synthetic_spec(24).splitlines() if "expr:" in line]
    assert len(set(lines)) == 24
    assert any("." in line.split("expr:")[1] for line in lines) and any("." not in line.split("expr:")[1] for line in lines)
    assert synthetic_spec(24, changed=5) != synthetic_spec(24)
    assert sum(a != b for a, b in zip(synthetic_spec(24, changed=5).splitlines(), synthetic_spec(24).splitlines())) == 1


def test_parallel_derivation_equals_serial_in_spec_order(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTGEN_CACHE", "0")
    spec = _spec(tmp_path)
    serial = derive_all(spec, jobs=1)
    shown = []
    par = derive_all(spec, jobs=2, progress=shown.append)
    assert [e.name for e in par.entries()] == [a.name for a in spec.activations]
    assert [cache.digest(e) for e in par.entries()] == [cache.digest(e) for e in serial.entries()]
    assert shown == [a.name for a in spec.activations]


def test_parallel_build_writes_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTGEN_CACHE", "0")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(synthetic_spec(3), encoding="utf-8")
    for jobs in ("1", "2"):
        assert main(["build", "--quiet", "--target", "numpy", "--spec", "s.yaml", "--out", f"out{jobs}", "--jobs", jobs]) == 0
    files1 = sorted(p.relative_to(tmp_path / "out1") for p in (tmp_path / "out1").rglob("*") if p.is_file())
    files2 = sorted(p.relative_to(tmp_path / "out2") for p in (tmp_path / "out2").rglob("*") if p.is_file())
    assert files1 == files2 and files1
    for rel in files1:
        assert (tmp_path / "out1" / rel).read_bytes() == (tmp_path / "out2" / rel).read_bytes(), rel


SLOW2 = (
    "activations:\n"
    "  slow:\n    expr: (z + 1)**300 * (z + 2)**300 / (z + 3)**200\n"
    "  fine:\n    expr: 2 * z\n"
    "  slower:\n    expr: (z + 1)**301 * (z + 2)**300 / (z + 3)**200\n"
)


def test_failures_in_workers_are_located_and_all_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ACTGEN_CACHE", "0")
    (tmp_path / "slow.yaml").write_text(SLOW2)
    monkeypatch.chdir(tmp_path)
    code = main(["build", "--spec", "slow.yaml", "--out", "out", "--entry-timeout", "2", "--jobs", "2"])
    assert code == 2
    budget = "deriving and simplifying took more than 2 s of CPU time (the time budget per entry); simplify the expression, or raise the budget with --entry-timeout\n"
    assert capsys.readouterr().err == (
        f"slow.yaml:2: entry 'slow'.expr: {budget}"
        f"slow.yaml:6: entry 'slower'.expr: {budget}"
        "actgen: 2 problem(s) in the spec; nothing was written\n"
    )
    assert not (tmp_path / "out").exists()


def test_workers_fill_the_cache_and_a_rebuild_needs_none(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ACTGEN_CACHE", raising=False)
    spec = _spec(tmp_path, 3)
    first = derive_all(spec, jobs=2)

    def no_work(fn, payload, indices, jobs=1, progress=None):
        assert not list(indices), "a cached entry was derived again"
        return []

    monkeypatch.setattr(parallel, "map_indexed", no_work)
    again = derive_all(spec, jobs=2)
    assert [cache.digest(e) for e in again.entries()] == [cache.digest(e) for e in first.entries()]


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_jobs_must_be_a_positive_whole_number(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build", "--jobs", value])
    assert exc.value.code == 2
    assert "worker processes" in capsys.readouterr().err


def test_an_unevaluated_product_comes_back_from_the_cache_as_it_was(tmp_path, monkeypatch):
    import sympy as sp

    monkeypatch.setenv("ACTGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ACTGEN_CACHE", raising=False)
    z = sp.Symbol("z", real=True)
    value = sp.Mul(sp.Rational(1, 1000), 1247 - 565 * sp.tanh(z) ** 2, evaluate=False)  # as simplification leaves it
    assert sp.srepr(sp.Mul(*value.args)) != sp.srepr(value)  # a plain rebuild distributes the number
    assert cache.cached("test", lambda: value, "unevaluated") is value
    again = cache.lookup("test", "unevaluated")
    assert again is not cache.MISS and sp.srepr(again) == sp.srepr(value)
