"""No spec text ever reaches an evaluator; user errors never show a traceback; entries have a time budget."""
from __future__ import annotations

import ast
import builtins
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from actgen.cli import REPORT, main

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "actgen.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_injection_attempts_leave_no_trace(tmp_path, monkeypatch, capsys):
    pwned = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {pwned}')"
    (tmp_path / "evil.yaml").write_text(textwrap.dedent(f"""\
        activations:
          evil:
            expr: "{payload}"
          evil_param:
            expr: a * z
            params: {{a: "{payload}"}}
          evil_lambda:
            expr: "(lambda: __import__('os').system('touch {pwned}'))()"
          evil_attr:
            expr: "z.__class__.__mro__[1].__subclasses__()"
        identities:
          evil_claim:
            claim: "{payload} == 0"
        """))
    monkeypatch.chdir(tmp_path)
    code = main(["build", "--spec", "evil.yaml", "--out", "out", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert not pwned.exists() and not (tmp_path / "out").exists()
    assert "evil.yaml:3: entry 'evil'.expr: attribute access '__import__('os').system' is not allowed" in err
    assert "evil.yaml:6: entry 'evil_param'.params.a: default must be a number, got text" in err
    assert "entry 'evil_lambda'.expr: lambda 'lambda: __import__('os').system(" in err
    assert "entry 'evil_attr'.expr: attribute access 'z.__class__.__mro__[1].__subclasses__' is not allowed" in err
    assert "entry 'evil_claim'.claim: attribute access '__import__('os').system' is not allowed" in err


def test_python_yaml_tags_are_never_constructed(tmp_path, monkeypatch, capsys):
    pwned = tmp_path / "pwned"
    (tmp_path / "tag.yaml").write_text(f"activations:\n  foo:\n    expr: !!python/object/apply:os.system ['touch {pwned}']\n")
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--spec", "tag.yaml", "--out", "out"]) == 2
    assert not pwned.exists()
    assert "tag.yaml:3: YAML tag '!!python/object/apply:os.system' is not allowed" in capsys.readouterr().err


def _spec_texts():
    texts = set()
    for path in (ROOT / "spec").glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for section in data.values():
            for body in section.values():
                for key in ("expr", "claim"):
                    if isinstance(body.get(key), str) and len(body[key]) >= 8:
                        texts.add(body[key].strip())
    assert len(texts) > 10
    return texts


def test_full_build_never_evaluates_spec_text(tmp_path, monkeypatch):
    """eval/exec/compile, sympify, parse_expr and lambdify are watched during a build of spec/.

    ``ast.parse`` (compile with PyCF_ONLY_AST) is the one use allowed: it parses, never runs.
    """
    import importlib

    import sympy

    sympify_module = importlib.import_module("sympy.core.sympify")
    parser_module = importlib.import_module("sympy.parsing.sympy_parser")
    lambdify_module = importlib.import_module("sympy.utilities.lambdify")
    texts = _spec_texts()
    leaks = []

    def watch(name, original, any_string=False):
        def wrapper(*args, **kwargs):
            if name == "compile":
                flags = args[3] if len(args) > 3 else kwargs.get("flags", 0)
                if isinstance(args[0], ast.AST):  # a parsed tree turned into code: never allowed
                    leaks.append((name, ast.dump(args[0])[:80]))
                if flags & ast.PyCF_ONLY_AST:  # ast.parse: parsing, not evaluation
                    return original(*args, **kwargs)
                if sys._getframe(1).f_globals.get("__name__") == "sympy.utilities.lambdify":
                    # lambdify compiles what SymPy's printer wrote from a parsed tree (the
                    # properties' mpmath quadrature); lambdify itself is watched for strings below
                    return original(*args, **kwargs)
            for a in list(args) + list(kwargs.values()):
                if isinstance(a, str) and (any_string or any(t in a for t in texts)):
                    leaks.append((name, a[:80]))
                    raise AssertionError(f"{name} called with spec text {a[:80]!r}")
            return original(*args, **kwargs)

        return wrapper

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, watch(name, getattr(builtins, name)))
    for module in (sympy, sympify_module):
        monkeypatch.setattr(module, "sympify", watch("sympify", sympify_module.sympify))
    for module in (sympy, parser_module):
        monkeypatch.setattr(module, "parse_expr", watch("parse_expr", parser_module.parse_expr))
    for module in (sympy, lambdify_module):
        monkeypatch.setattr(module, "lambdify", watch("lambdify", lambdify_module.lambdify))
    code = main(["build", "--spec", str(ROOT / "spec"), "--out", str(tmp_path / "out"), "--quiet"])
    assert leaks == []
    assert code == 0
    assert (tmp_path / "out" / "actgen_numpy" / "activations.py").exists()


@pytest.mark.parametrize("spec, line", [
    ("activations:\n  foo:\n    expr: __import__('os')\n", "bad.yaml:3: entry 'foo'.expr: function '__import__' is not allowed"),
    ("activations: " + "[" * 3000 + "]" * 3000 + "\n", "bad.yaml:1: YAML is nested more than 20 levels deep"),
    (b"\xff\xfe\x00binary", "bad.yaml:1: not a UTF-8 text file"),
])
def test_no_traceback_in_a_real_process(tmp_path, spec, line):
    (tmp_path / "bad.yaml").write_bytes(spec if isinstance(spec, bytes) else spec.encode())
    result = _cli("build", "--spec", "bad.yaml", "--out", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith(line)
    assert not (tmp_path / "out").exists()


def test_internal_error_asks_for_a_report(tmp_path):
    (tmp_path / "ok.yaml").write_text("activations:\n  lin:\n    expr: z\n")
    program = (
        "import sys, actgen.pipeline as p\n"
        "def boom(*a, **k): raise RuntimeError('boom')\n"
        "p.derive_all = boom\n"
        "from actgen.cli import main\n"
        "sys.exit(main(['build', '--spec', 'ok.yaml', '--out', 'out']))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "ACTGEN_DEBUG"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr == f"actgen: internal error: RuntimeError: boom\nactgen: {REPORT} (set ACTGEN_DEBUG=1 for a traceback)\n"
    assert not (tmp_path / "out").exists()


SLOW = "activations:\n  slow:\n    expr: (z + 1)**300 * (z + 2)**300 / (z + 3)**200\n"


def test_entry_time_budget_names_the_entry(tmp_path, monkeypatch, capsys):
    (tmp_path / "slow.yaml").write_text(SLOW)
    monkeypatch.chdir(tmp_path)
    code = main(["build", "--spec", "slow.yaml", "--out", "out", "--entry-timeout", "0.5"])
    assert code == 2
    assert capsys.readouterr().err == (
        "slow.yaml:2: entry 'slow'.expr: deriving and simplifying took more than 0.5 s of CPU time (the time budget per entry); "
        "simplify the expression, or raise the budget with --entry-timeout\n"
        "actgen: 1 problem(s) in the spec; nothing was written\n"
    )
    assert not (tmp_path / "out").exists()


def test_entry_time_budget_from_the_environment(tmp_path):
    (tmp_path / "slow.yaml").write_text(SLOW)
    result = _cli("build", "--spec", "slow.yaml", "--out", "out", cwd=tmp_path, env={"ACTGEN_ENTRY_TIMEOUT": "0.5"})
    assert result.returncode == 2
    assert "slow.yaml:2: entry 'slow'.expr: deriving and simplifying took more than 0.5 s of CPU time" in result.stderr
    assert "Traceback" not in result.stderr


def test_entry_timeout_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build", "--entry-timeout", "-1"])
    assert exc.value.code == 2
    assert "'-1' is not a positive number of seconds" in capsys.readouterr().err


def test_a_time_budget_whose_exception_was_lost_fires_again():
    """A budget's alarm repeats past its deadline: an exception raised where Python drops it (a
    __del__, a weakref callback in SymPy's caches; simulated here by catching it) is raised again,
    so the computation stays bounded (a CI run once sat 15 minutes in SymPy's solve after its 10 s
    budget had fired). Nested budgets keep their own deadlines, and nothing stays armed after."""
    import signal
    import time

    from actgen.symbolic import TimeBudgetExceeded, time_budget

    start = time.monotonic()
    lost = again = False
    try:
        with time_budget(0.2):
            try:
                while time.monotonic() - start < 5:
                    pass
            except TimeBudgetExceeded:
                lost = True
            while time.monotonic() - start < 5:
                pass
    except TimeBudgetExceeded:
        again = True
    assert lost and again and time.monotonic() - start < 5
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)


def test_a_time_budget_counts_this_process_cpu_time_not_the_wall_clock():
    """Time the process does not run (here a sleep; on a loaded machine, time other processes take)
    does not use up a budget, so what a budget decides does not depend on the machine's load; CPU
    time does."""
    import time

    from actgen.symbolic import TimeBudgetExceeded, time_budget

    with time_budget(0.2):
        time.sleep(0.5)  # no CPU time: the budget holds
    start = time.process_time()
    with pytest.raises(TimeBudgetExceeded):
        with time_budget(0.2):
            while time.process_time() - start < 5:
                pass
    assert time.process_time() - start < 2
