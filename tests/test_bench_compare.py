"""python -m actgen.bench_compare loads two builds of the NumPy package in one process and times
them in turns (a smoke test on tiny arrays: no timing is asserted)."""
from __future__ import annotations

import pytest

from actgen import bench_compare


def test_two_builds_load_side_by_side_and_every_row_is_timed():
    base = bench_compare.load_package("generated", "actgen_numpy", "_test_compare_base")
    new = bench_compare.load_package("generated", "actgen_numpy", "_test_compare_new")
    assert base is not new and base.gelu_tanh is not new.gelu_tanh
    rows = bench_compare.compare(base, new, ["gelu_tanh", "relu"], n=1000, repeat=1)
    assert [(name, dtype) for name, dtype, *_ in rows] == [("gelu_tanh", "float64"), ("relu", "float64"), ("gelu_tanh", "float32"), ("relu", "float32")]
    for name, _dtype, t_base, t_new, label, t_peer in rows:
        assert t_base > 0 and t_new > 0
        assert (label is None) == (t_peer is None) == (name == "relu")
    assert "| gelu_tanh | float64 |" in bench_compare._table(rows)


def test_a_folder_without_the_package_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no package at"):
        bench_compare.load_package(tmp_path, "actgen_numpy", "_test_compare_missing")
