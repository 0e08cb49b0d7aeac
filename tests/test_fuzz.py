"""actgen accuracy --fuzz: random one-line activations from the spec's grammar go through the real
build and the mpmath measurement; a draw never crashes actgen, and the report says what happened."""
from __future__ import annotations

import random

from actgen import fuzz
from actgen.cli import main
from actgen.errors import SpecError
from actgen.model import load_spec


def test_draws_are_deterministic_distinct_and_use_z():
    a, b = fuzz.draw(20, seed=5), fuzz.draw(20, seed=5)
    assert a == b and len(set(a)) == 20 and all("z" in e for e in a)
    assert fuzz.draw(20, seed=6) != a


def test_every_draw_is_a_spec_the_loader_accepts(tmp_path):
    """The grammar's expressions are declarable as written (no domain key needed)."""
    exprs = fuzz.draw(40, seed=11)
    text = "activations:\n" + "".join(f"  f{k}:\n    expr: {e}\n" for k, e in enumerate(exprs))
    (tmp_path / "s.yaml").write_text(text, encoding="utf-8")
    try:
        assert len(load_spec(str(tmp_path / "s.yaml")).activations) == 40
    except SpecError as err:
        # the only refusal: a draw whose z cancels (z - z), which the fuzzer reports as "constant"
        assert all("does not use z" in str(p) for p in err.problems), str(err)


def test_depth_bounds_the_nesting():
    rng = random.Random(3)
    for _ in range(50):
        assert fuzz.expression(rng, depth=0) in ("z",) + fuzz.CONSTANTS


def test_fuzzed_builds_never_end_in_an_internal_error(tmp_path):
    """Three draws built and measured for real: each is built or refused with a located error,
    never an internal error, and the report groups every sample."""
    samples = fuzz.run(3, seed=1, entry_timeout=120.0)
    assert len(samples) == 3
    assert not [s for s in samples if s.outcome == "internal_error"], samples
    text = fuzz.report(samples, seed=1)
    assert "3 random one-line activations" in text and "seed 1" in text
    for s in samples:
        assert s.within_target or f"`{s.expr}`" in text


def test_cli_writes_the_fuzz_report(tmp_path, capsys):
    assert main(["accuracy", "--fuzz", "1", "--seed", "2", "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "fuzz.md").read_text(encoding="utf-8").startswith("# Fuzzed activations")
    assert "1 expressions (seed 2)" in capsys.readouterr().out


def test_the_reference_of_an_exponential_of_an_exponential_fits_in_memory():
    """mpmath computes exp(x) exactly at any x: tanh(exp(z)) at z = 1e10 asked for an integer of
    4e9 digits, and `actgen accuracy` on a user's z tanh(exp(z)) ended in a MemoryError (or the
    machine's memory). An exponential of |x| > 2**4096, beyond every float by far, saturates;
    exp(1e308), which some losses meet, is still computed (poisson_nll_log's reference)."""
    import mpmath
    import sympy as sp

    from actgen.accuracy import reference
    from actgen.model import Z

    f = Z * sp.tanh(sp.exp(Z))
    for x in (1e10, 1e13, 1e300, 1.7e308):  # at 1e13 the exact exp(1e13) needs 4e12 digits: MemoryError
        assert reference(f, {Z: x}) == mpmath.mpf(x)
        assert reference(sp.diff(f, Z), {Z: x}) == 1
    tiny = reference(f, {Z: -1e300})  # -1e300 exp(-1e300): computed, far below any float
    assert tiny < 0 and abs(tiny) < mpmath.mpf(10) ** -1000
    big = reference(sp.exp(Z) - 2 * Z, {Z: 1e308})
    assert mpmath.isfinite(big) and big > mpmath.mpf(10) ** 400


def test_an_intermediate_beyond_the_float_range_is_named_at_the_worst_input():
    """cos(cosh(z)) at z = -1000 (cosh(1000) ~ 1e434: no float evaluation can get it) and
    0.044715 exp(z) - z**2 at 710 (finite, but exp(710) overflows: a rewrite must scale it)."""
    import sympy as sp

    from actgen import model as M

    z = M.Z
    assert fuzz.beyond_range(sp.log(1 + sp.cos(sp.cosh(z)) ** 2), z, -1000.0) == "cosh(z) = 9.9e+433"
    assert fuzz.beyond_range(sp.Rational(44715, 10**6) * sp.exp(z) - z**2, z, 710.0) == "exp(z) = 2.2e+308"
    assert fuzz.beyond_range(sp.tanh(z) + sp.exp(z), z, 700.0) == ""  # every intermediate representable


def test_the_report_groups_samples_whose_intermediate_is_beyond_the_range():
    samples = [fuzz.Sample("log(1 + (cos(cosh(z)))**2)", "ok", "", float("inf"), "fuzzed", -1000.0, 1, "cosh(z) = 9.9e+433"),
               fuzz.Sample("tanh(z)", "ok", "", 0.5, "fuzzed", 1.0, 0)]
    text = fuzz.report(samples, seed=0)
    assert "## an intermediate beyond float64's range at the worst input (a rewrite must avoid it) (1)" in text
    assert "`cosh(z) = 9.9e+433`" in text and "tanh(z)" not in text.split("## ")[-1]
