"""The command line: `actgen check` on the committed generated/ and on a stale copy, help texts."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from actgen.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
activations:
  sig:
    expr: 1 / (1 + exp(-z))
  poly:
    expr: z**2 + z
"""


def test_check_passes_on_the_committed_generated_folder(tmp_path):
    """generated/ is exactly what `actgen build` writes (the slowest test: a full derivation).

    In a fresh process with an empty derivation cache, as `actgen check` runs in CI: SymPy keeps
    caches across calls, and forms it returns after other tests ran in this process are not what
    a build process sees."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ACTGEN_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "actgen.cli", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    """One build of a tiny spec; each test gets its own copy."""
    work = tmp_path_factory.mktemp("tiny")
    (work / "my.yaml").write_text(TINY, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        assert main(["build", "--spec", "my.yaml", "--out", "out", "--package", "tiny_pkg", "--quiet"]) == 0
    return work


@pytest.fixture
def tiny(tiny_build, tmp_path, monkeypatch):
    shutil.copy(tiny_build / "my.yaml", tmp_path / "my.yaml")
    shutil.copytree(tiny_build / "out", tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check(capsys):
    rc = main(["check", "--spec", "my.yaml", "--out", "out", "--package", "tiny_pkg"])
    out = capsys.readouterr().out
    return rc, out


def test_check_passes_right_after_a_build(tiny, capsys):
    rc, out = _check(capsys)
    assert rc == 0, out
    assert "up to date" in out


def test_check_fails_on_a_stale_copy_with_one_line(tiny, capsys):
    (tiny / "my.yaml").write_text(TINY.replace("z**2 + z", "z**2 + 2*z"), encoding="utf-8")
    rc, out = _check(capsys)
    assert rc != 0
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "stale" in lines[0] and "actgen build" in lines[0]


def test_check_fails_on_a_new_entry(tiny, capsys):
    (tiny / "my.yaml").write_text(TINY + "  lin:\n    expr: z\n", encoding="utf-8")
    rc, out = _check(capsys)
    assert rc != 0 and len(out.strip().splitlines()) == 1 and "stale" in out


def test_check_fails_on_a_hand_edited_file(tiny, capsys):
    target = tiny / "out" / "tiny_pkg" / "activations.py"
    target.write_text(target.read_text(encoding="utf-8") + "\n# tweak\n", encoding="utf-8")
    rc, out = _check(capsys)
    assert rc != 0
    assert len(out.strip().splitlines()) == 1
    assert "activations.py" in out


def test_check_fails_on_a_missing_file(tiny, capsys):
    (tiny / "out" / "cheatsheet.md").unlink()
    rc, out = _check(capsys)
    assert rc != 0 and len(out.strip().splitlines()) == 1


def test_rebuild_is_byte_identical(tiny, capsys):
    before = {p: p.read_bytes() for p in (tiny / "out").rglob("*") if p.is_file()}
    assert main(["build", "--spec", "my.yaml", "--out", "out", "--package", "tiny_pkg"]) == 0
    assert "0 written" in capsys.readouterr().out
    after = {p: p.read_bytes() for p in (tiny / "out").rglob("*") if p.is_file()}
    assert before == after


@pytest.mark.parametrize("argv", [["--help"], ["build", "--help"], ["check", "--help"], ["prove", "--help"]])
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: actgen" in out
    if argv == ["--help"]:
        for command in ("build", "check", "prove"):
            assert command in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) != 0
    assert "usage: actgen" in capsys.readouterr().out


def test_every_file_beside_the_package_is_owned_by_build(tiny_build):
    """write.BUILD_ROOTS (what a build may remove when stale) names every file a build writes."""
    from actgen.write import BUILD_ROOTS

    out = tiny_build / "out"
    beside = sorted(p.name for p in out.iterdir() if p.is_file())
    assert beside and set(beside) <= set(BUILD_ROOTS), beside


@pytest.mark.parametrize("package, expected", [
    ("numpy", "actgen: --package: 'numpy' is the name of an installed module ("),
    ("class", "actgen: --package: 'class' is not an importable Python name; use letters, digits and underscores, not starting with a digit, and no keyword (e.g. my_acts)"),
    ("my-pkg", "actgen: --package: 'my-pkg' is not an importable Python name; use letters, digits and underscores, not starting with a digit, and no keyword (e.g. my_pkg)"),
])
def test_package_names_that_cannot_be_imported_are_refused(tmp_path, monkeypatch, capsys, package, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text(TINY, encoding="utf-8")
    assert main(["build", "--spec", "my.yaml", "--out", "out", "--package", package, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.endswith("actgen: nothing was written\n"), err
    assert not (tmp_path / "out").exists()


def test_a_package_name_of_an_earlier_actgen_build_is_accepted(tmp_path, monkeypatch):
    """The importable module of that name is an actgen package (an earlier build on sys.path):
    rebuilding it elsewhere is allowed."""
    import sys

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text(TINY, encoding="utf-8")
    assert main(["build", "--spec", "my.yaml", "--out", "first", "--package", "tiny_pkg", "--quiet", "--target", "numpy"]) == 0
    monkeypatch.syspath_prepend(str(tmp_path / "first"))
    assert main(["build", "--spec", "my.yaml", "--out", "second", "--package", "tiny_pkg", "--quiet", "--target", "numpy"]) == 0
    assert "tiny_pkg" not in sys.modules  # found, not imported, by the check


def test_an_output_place_that_cannot_be_written_is_a_user_error(tmp_path, monkeypatch, capsys):
    """--out below a file, or on a file system where folders cannot be made (/proc), is exit 2
    with a message naming the place, never an internal error, and nothing is written."""
    import os

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text(TINY, encoding="utf-8")
    (tmp_path / "afile").write_text("mine\n", encoding="utf-8")
    assert main(["build", "--spec", "my.yaml", "--out", "afile/out", "--package", "tiny_pkg", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "afile: is a file, not a folder, so afile/out cannot be created; choose another --out\nactgen: nothing was written\n", err
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "mine\n"
    if os.path.isdir("/proc/self"):
        assert main(["build", "--spec", "my.yaml", "--out", "/proc/actgen-out", "--package", "tiny_pkg", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("/proc/actgen-out: ") and "choose another --out" in err and "internal error" not in err, err


@pytest.mark.parametrize("command", ["build", "check", "docs", "site", "prove", "accuracy"])
def test_no_spec_says_where_it_looked_and_how_to_point_at_one(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "spec") in err and "(the default)" in err, err
    assert "--spec PATH" in err and f"actgen {command} --spec my.yaml" in err, err
    assert not any(tmp_path.iterdir()), "nothing written"
    assert main(["build", "--spec", "mine.yaml"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "mine.yaml") in err and "Check the path" in err, err


def test_site_refuses_a_folder_it_did_not_build_before_any_work(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(TINY, encoding="utf-8")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n", encoding="utf-8")
    assert main(["site", "--spec", str(tmp_path / "spec.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "was not built by `actgen site`" in err and "choose another --out" in err, err
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me\n" and len(list(out.iterdir())) == 1


def test_accuracy_progress_on_a_terminal_and_summary():
    import io

    from actgen.accuracy import Measurement
    from actgen.cli import _MeasureProgress, accuracy_summary

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = _MeasureProgress(stream)
    progress.start("numpy")
    progress(0, 4, "sigmoid", "float64")
    progress(3, 4, "sigmoid_grad", "float32")
    progress.done()
    shown = stream.getvalue()
    assert "actgen accuracy: numpy 1/4 (0%) sigmoid float64" in shown and "4/4 (75%) sigmoid_grad float32" in shown
    assert shown.endswith("\r")  # the line is cleared before the summary
    piped = io.StringIO()  # not a terminal: no progress line
    _MeasureProgress(piped)(0, 4, "sigmoid", "float64")
    assert piped.getvalue() == ""

    def m(name, ulp, dtype="float64"):
        return Measurement(name=name, dtype=dtype, max_ulp=ulp, worst_input=1.5, max_term_ulp=ulp, worst_term_input=2.5, points=100, nonfinite=0, warnings=0, backend="numpy")

    text = accuracy_summary([m("sigmoid", 0.5), m("sigmoid", 0.7, "float32"), m("gelu_grad2", 4.7)], Path("out/accuracy.md"), 61.0)
    flat = " ".join(text.split())
    assert "measured 2 functions (3 measurements, 300 points) of the numpy package(s) in float32, float64" in flat
    assert "2 of 3 within the target of 4 ulp, above it: gelu_grad2 (numpy)" in flat
    assert "worst gelu_grad2 (numpy, float64) 4.7 ulp at input 2.5" in flat and "out/accuracy.md" in flat and "61 s" in flat
