"""The bad-spec corpus: every wrong or hostile spec gets one exact, located message, exit status 2.

Each case is a tiny inline spec (or a few files) built through the CLI entry point
``actgen.cli.main``; the expected stderr is pinned in full. Messages follow
``FILE:LINE: entry 'NAME'.field: what is wrong; what to do``.
"""
from __future__ import annotations

import pytest

from actgen.cli import main

A = "activations:\n  foo:\n    expr: {}\n"  # one activation whose expression is the case
FUNCS = "Abs, Heaviside, Max, Min, Piecewise, Sum, abs, asinh, atan, cos, cosh, erf, erfc, exp, log, max, min, sign, sin, sinh, sqrt, tanh"
ALLOWED = "use numbers, the names in scope, + - * / **, comparisons and calls of known functions"
BADNAME = "use lower-case letters, digits and underscores, starting with a letter, and no Python keyword"
EXPR = "bad.yaml:3: entry 'foo'.expr: "
LAUGHS = "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9 if p else ['lol'] * 9)}]\n" for p, c in zip(["", "a", "b", "c", "d", "e", "f", "g"], "abcdefgh"))

CASES = [
    # -- syntax and types ------------------------------------------------------------------
    ("expr_syntax_error", A.format("z +* 2"), EXPR + "syntax error at column 4 in 'z +* 2': invalid syntax; write the expression in SymPy syntax"),
    ("yaml_syntax_error", "activations:\n  foo:\n    expr: [z\n", "bad.yaml:4: invalid YAML: expected ',' or ']', but got '<stream end>'; fix the syntax at this line"),
    ("yaml_tab_indent", "activations:\n\tfoo: 1\n", "bad.yaml:2: invalid YAML: found character '\\t' that cannot start any token; fix the syntax at this line"),
    ("expr_is_a_list", A.format("[1, 2]"), EXPR + "expected an expression (text or number), got a list; write it as text, e.g. z / (1 + Abs(z))"),
    ("entry_is_a_number", "activations:\n  foo: 3\n", "bad.yaml:2: entry 'foo': expected a mapping of fields (expr, params, ...), got a number; write one 'key: value' per line, indented below"),
    ("section_is_a_list", "activations: [a, b]\n", "bad.yaml:1: expected a mapping of activations by name, got a list; write one 'key: value' per line, indented below"),
    ("root_is_a_list", "- a\n- b\n", "bad.yaml:1: a spec file must be a mapping of sections (activations, losses, tasks, identities), got a list; start with a line such as 'activations:'"),
    ("root_is_text", "hello\n", "bad.yaml:1: a spec file must be a mapping of sections (activations, losses, tasks, identities), got text; start with a line such as 'activations:'"),
    ("title_is_a_number", "activations:\n  foo:\n    expr: z\n    title: 3\n", "bad.yaml:4: entry 'foo'.title: expected text, got a number; write plain text (put it in quotes if it looks like a number)"),
    ("missing_expr", "activations:\n  foo:\n    title: Foo\n", "bad.yaml:2: entry 'foo'.expr: missing 'expr'; give the function as an expression"),
    ("yaml_date_value", "activations:\n  foo:\n    expr: z\n    title: 2001-12-14\n", "bad.yaml:4: '2001-12-14' is read as a YAML timestamp, which is not allowed; put it in quotes to make it text"),
    # -- unknown names -----------------------------------------------------------------------
    ("unknown_function_suggested", A.format("tnah(z)"), EXPR + f"unknown function 'tnah'; did you mean 'tanh'? The known functions are {FUNCS}"),
    ("unknown_function_listed", A.format("softpls(z)"), EXPR + f"unknown function 'softpls'; the known functions are {FUNCS}"),
    ("unknown_variable", A.format("z + x"), EXPR + "unknown name 'x'; the names in scope are E, pi, z"),
    ("learnable_not_a_parameter", "activations:\n  foo:\n    expr: alpha * z\n    params: {alpha: 1.0}\n    learnable: [beta]\n", "bad.yaml:5: entry 'foo'.learnable: 'beta' is not a parameter of 'foo'; name one of its parameters: alpha"),
    ("learnable_not_a_list", "activations:\n  foo:\n    expr: alpha * z\n    params: {alpha: 1.0}\n    learnable: alpha\n", "bad.yaml:5: entry 'foo'.learnable: expected a list of parameter names; write it as [alpha]"),
    ("unknown_key", "activations:\n  foo:\n    expr: z\n    tittle: Foo\n", "bad.yaml:4: entry 'foo': unknown key 'tittle'; did you mean 'title'? The allowed keys are expr, params, title, use, pros, cons, layer, aliases, learnable, domain, split"),
    ("unknown_section", "activation:\n  foo:\n    expr: z\n", "bad.yaml:1: unknown section 'activation'; did you mean 'activations'? The sections are activations, losses, tasks, identities"),
    ("task_unknown_loss", "activations:\n  lin:\n    expr: z\ntasks:\n  t:\n    output: lin\n    loss: msee\n", "bad.yaml:5: entry 't'.loss: unknown loss 'msee'; declare it under losses or name a declared one"),
    ("task_unknown_output_suggested", "activations:\n  sigmoid:\n    expr: 1 / (1 + exp(-z))\nlosses:\n  mse:\n    expr: (y - y_hat)**2\ntasks:\n  t:\n    output: sigmod\n    loss: mse\n", "bad.yaml:8: entry 't'.output: unknown activation 'sigmod'; did you mean 'sigmoid'?; declare it under activations or name a declared one"),
    # -- partial functions: a function must be real on its (declared) domain -------------------
    ("log_without_domain", A.format("log(z)"), EXPR + "f(z) is complex (2.30258509299405 + 3.14159265358979*I) at z = -10 (with default parameters); declare the domain where it is real, e.g. domain: {z: positive}"),
    ("reciprocal_without_domain", A.format("1/z"), EXPR + "f(z) is undefined or infinite at z = 0 (with default parameters); declare the domain where it is real, e.g. domain: {z: positive}"),
    ("sqrt_on_too_wide_a_domain", A.format("sqrt(z)") + "    domain: {z: \"[-1, 1]\"}\n", EXPR + "on its domain [-1, 1], f(z) is complex (1.0*I) at z = -1 (with default parameters); declare the domain where it is real, e.g. domain: {z: nonnegative}"),
    ("unknown_domain", A.format("sqrt(z)") + "    domain: {z: positve}\n", "bad.yaml:4: entry 'foo'.domain.z: unknown domain 'positve'; use one of real, positive, nonnegative, negative, nonpositive, (0, 1), [0, 1], (-1, 1), [-1, 1]"),
    ("domain_not_a_mapping", A.format("log(z)") + "    domain: positive\n", "bad.yaml:4: entry 'foo'.domain: expected a mapping from z to a domain; write it as {z: positive} (domains: real, positive, nonnegative, negative, nonpositive, (0, 1), [0, 1], (-1, 1), [-1, 1])"),
    ("domain_of_another_variable", A.format("log(z)") + "    domain: {z: positive, w: real}\n", "bad.yaml:4: entry 'foo'.domain: unknown variable 'w'; an activation's variable is z, e.g. domain: {z: positive}"),
    ("domain_on_class_axis", A.format("exp(z[i])/Sum(exp(z[j]), (j, 1, K))") + "    domain: {z: positive}\n", "bad.yaml:4: entry 'foo'.domain: a class-axis function is defined for all real logits; remove 'domain'"),
    # -- injection attempts ------------------------------------------------------------------
    ("attribute_access", A.format("z.__class__"), EXPR + f"attribute access 'z.__class__' is not allowed in an expression; {ALLOWED}"),
    ("import_os_system", A.format("__import__('os').system('touch /tmp/pwned')"), EXPR + f"attribute access '__import__('os').system' is not allowed in an expression; {ALLOWED}"),
    ("dunder_function", A.format("__import__('os')"), EXPR + f"function '__import__' is not allowed (names starting with '_' are reserved); call one of the known functions: {FUNCS}"),
    ("dunder_name", A.format("z + __builtins__"), EXPR + "name '__builtins__' is not allowed (names starting with '_' are reserved); use one of the names in scope: E, pi, z"),
    ("lambda", A.format('"(lambda: z)()"'), EXPR + f"lambda 'lambda: z' is not allowed in an expression; {ALLOWED}"),
    ("list_comprehension", A.format("\"[z for z in (1, 2)][1]\""), EXPR + f"comprehension '[z for z in (1, 2)]' is not allowed in an expression; {ALLOWED}"),
    ("generator_expression", A.format("Max(z for z in (1, 2))"), EXPR + f"comprehension '(z for z in (1, 2))' is not allowed in an expression; {ALLOWED}"),
    ("f_string", A.format("f'{z}'"), EXPR + f"f-string 'f'{{z}}'' is not allowed in an expression; {ALLOWED}"),
    ("fixed_class", A.format("log(Sum(exp(z[j]), (j, 1, K))) - z[1]"), EXPR + "z[1] names a fixed class; a class-axis function treats every class alike: write z[i] for the component it gives, or sum over another index (Sum(z[j], (j, 1, K)))"),
    ("vector_without_sum_or_component", A.format("Abs(z[j])"), EXPR + "a class-axis expression must give component i or one value per row; write z[i] and sum over another index (exp(z[i]) / Sum(exp(z[j]), (j, 1, K))), or reduce the row with a sum over the classes (log(Sum(exp(z[j]), (j, 1, K))))"),
    ("split_without_b", "activations:\n  foo:\n    expr: a * 2\n    split: true\n",
     EXPR + "the expression does not use b; a split activation is a function of both halves a and b, e.g. a * sigmoid(b)"),
    ("split_not_a_boolean", "activations:\n  foo:\n    expr: a * b\n    split: 3\n", "\n".join([
        EXPR + "unknown name 'a'; the names in scope are E, pi, z",
        "bad.yaml:4: entry 'foo'.split: expected true or false, got a number; write split: true to apply f(a, b) to the two halves of the input",
    ])),
    ("split_not_real", "activations:\n  foo:\n    expr: a * log(b)\n    split: true\n",
     EXPR + "f(a, b) is not a finite real number at a = 1, b = -10 (with default parameters); a split activation must be defined for all real a and b: correct the formula"),
    ("split_with_z", "activations:\n  foo:\n    expr: z * b\n    split: true\n", EXPR + "unknown name 'z'; the names in scope are E, a, b, pi"),
    ("subscript_of_scalar", A.format("exp(z)[0]"), EXPR + "'exp(z)' cannot be subscripted; only vectors take [index], e.g. z[i] in a vector activation"),
    ("keyword_argument", A.format("Heaviside(z, h0=0)"), EXPR + "keyword arguments are not allowed in 'Heaviside(z, h0=0)'; pass values by position"),
    ("walrus", A.format("(a := z)"), EXPR + f"assignment expression (:=) '(a := z)' is not allowed in an expression; {ALLOWED}"),
    ("starred", A.format("Max(*z)"), EXPR + f"starred argument '*z' is not allowed in an expression; {ALLOWED}"),
    ("string_literal", A.format("z + 'a'"), EXPR + "literal 'a' is a string; only real numbers may appear in expressions (use True only as the last Piecewise condition)"),
    ("bytes_literal", A.format("z + b'a'"), EXPR + "literal b'a' is a bytes literal; only real numbers may appear in expressions (use True only as the last Piecewise condition)"),
    ("complex_literal", A.format("z + 1j"), EXPR + "literal 1j is a complex number; only real numbers may appear in expressions (use True only as the last Piecewise condition)"),
    ("conditional_expression", A.format("z if z > 0 else 0"), EXPR + "conditional expression 'z if z > 0 else 0' is not allowed in an expression; write Piecewise((value, condition), (other, True))"),
    ("python_object_tag", A.format("!!python/object/apply:os.system ['touch /tmp/pwned']"), "bad.yaml:3: YAML tag '!!python/object/apply:os.system' is not allowed; write plain values without tags"),
    ("python_name_tag_key", "activations:\n  ? !!python/name:os.system\n  : {expr: z}\n", "bad.yaml:2: mapping keys must be plain names; write the key as a name such as 'relu'"),
    ("keyword_entry_name", "activations:\n  lambda:\n    expr: z\n", f"bad.yaml:2: entry 'lambda': 'lambda' is not a valid activation name; {BADNAME}"),
    ("dunder_entry_name", "activations:\n  __init__:\n    expr: z\n", f"bad.yaml:2: entry '__init__': '__init__' is not a valid activation name; {BADNAME}"),
    ("invalid_identifier_entry_name", "activations:\n  my-act:\n    expr: z\n", f"bad.yaml:2: entry 'my-act': 'my-act' is not a valid activation name; {BADNAME}"),
    ("keyword_param_name", "activations:\n  foo:\n    expr: z\n    params: {class: 1}\n", "bad.yaml:4: entry 'foo'.params: 'class' cannot be a parameter name; use a lower-case identifier other than K, i, j, k, l, z"),
    ("dunder_param_name", "activations:\n  foo:\n    expr: z\n    params: {__class__: 1}\n", "bad.yaml:4: entry 'foo'.params: '__class__' cannot be a parameter name; use a lower-case identifier other than K, i, j, k, l, z"),
    ("terminal_escape_in_name", 'activations:\n  "\\e[31mred":\n    expr: z\n', f"bad.yaml:2: entry '\\x1b[31mred': '\\x1b[31mred' is not a valid activation name; {BADNAME}"),
    ("docstring_breakout_in_title", "activations:\n  foo:\n    expr: z\n    title: 'x\"\"\"; import os; os.system(\"touch pwned\"); \"\"\"'\n", "bad.yaml:4: entry 'foo'.title: text may not contain '\"\"\"' (triple quotes, backslashes and HTML tags would leak into generated code and pages); rephrase it"),
    ("html_in_prose", "activations:\n  foo:\n    expr: z\n    use: 'see <script>alert(1)</script>'\n", "bad.yaml:4: entry 'foo'.use: text may not contain '<s' (triple quotes, backslashes and HTML tags would leak into generated code and pages); rephrase it"),
    # -- resource bombs ----------------------------------------------------------------------
    ("power_tower_exponent", A.format("z**(10**10**10)"), EXPR + "integer exponent 10 ** 10 is larger than 1000; such powers are not allowed"),
    ("power_tower_constant", A.format("9**9**9**9"), EXPR + "integer exponent 9 ** 9 is larger than 1000; such powers are not allowed"),
    ("huge_integer_literal", A.format("z*" + "9" * 100), EXPR + "integer literal has more than 60 digits; use a smaller number"),
    ("nested_parentheses", A.format("(" * 250 + "z" + ")" * 250), EXPR + f"syntax error at column 201 in '{'(' * 57}...': too many nested parentheses; write the expression in SymPy syntax"),
    ("nested_calls", A.format("exp(" * 50 + "z" + ")" * 50), EXPR + "expression is nested more than 40 levels deep; simplify it"),
    ("nested_unary_minus", A.format("-" * 200 + "z"), EXPR + "expression is nested more than 40 levels deep; simplify it"),
    ("very_long_expression", A.format("+".join(["z"] * 1500)), EXPR + "expression is 2999 characters long, over the limit of 2000; split it up"),
    ("very_large_file", "# " + "x" * 1_100_000 + "\n", "bad.yaml:1: spec file is 1100003 bytes, over the limit of 1000000; split it into several files"),
    ("deep_yaml_nesting", "activations: " + "[" * 5000 + "]" * 5000 + "\n", "bad.yaml:1: YAML is nested more than 20 levels deep; a spec needs at most 4 (section, entry, field, list)"),
    ("billion_laughs_aliases", LAUGHS + "activations: *h\n", "bad.yaml:2: YAML alias '*a' is not allowed; write the value out in full"),
    ("huge_integer_in_yaml", "activations:\n  foo:\n    expr: a*z\n    params: {a: " + "9" * 5000 + "}\n", "bad.yaml:4: value '99999999999999999999...' cannot be read; write a shorter number or text"),
    # -- files -------------------------------------------------------------------------------
    ("empty_file", "", "bad.yaml:1: the spec file is empty; declare at least one of 'activations', 'losses', 'tasks' or 'identities'"),
    ("only_comments", "# nothing here\n", "bad.yaml:1: the spec file is empty; declare at least one of 'activations', 'losses', 'tasks' or 'identities'"),
    ("binary_file", bytes(range(256)) * 4, "bad.yaml:1: not a UTF-8 text file (byte 128 is invalid); a spec must be YAML text"),
    ("latin1_file", "activations:\n  caf\xe9:\n    expr: z\n".encode("latin-1"), "bad.yaml:1: not a UTF-8 text file (byte 18 is invalid); a spec must be YAML text"),
    ("nul_byte", "activations:\n  foo:\n    expr: z\x00\n", "bad.yaml:1: not a text file (it contains NUL bytes); a spec must be YAML text"),
    ("duplicate_yaml_key", "activations:\n  foo:\n    expr: z\n  foo:\n    expr: 2*z\n", "bad.yaml:4: duplicate key 'foo' (first at line 2); remove one of them"),
    ("duplicate_name_across_files", {"s/a.yaml": A.format("z"), "s/b.yaml": A.format("2*z")}, "s/b.yaml:2: entry 'foo': name 'foo' is already declared at s/a.yaml:2; give each function a distinct name"),
    # -- meaning -----------------------------------------------------------------------------
    ("loss_uses_z", "losses:\n  foo:\n    expr: (z - y_hat)**2\n", EXPR + "unknown name 'z'; the names in scope are E, pi, y, y_hat"),
    ("loss_without_prediction", "losses:\n  foo:\n    expr: y**2\n", EXPR + "the expression does not use y_hat; a loss compares the prediction y_hat with the target y"),
    ("activation_without_z", A.format("2"), EXPR + "the expression does not use z; an activation is a function of z"),
    ("condition_as_value", A.format("z > 0"), EXPR + "expression must be a number-valued formula, not a condition, tuple or vector; use Piecewise((value, condition), (other, True)) for a case split"),
    ("piecewise_without_true", A.format("Piecewise((z, z > 0))"), EXPR + "the last Piecewise branch must have the condition True, so that every input has a value; add a last branch (value, True)"),
    ("wrong_argument_count", A.format("exp(z, z)"), EXPR + "wrong number of arguments in 'exp(z, z)'; see the function's usual signature, e.g. exp(z), log(z), Max(a, b)"),
    ("division_by_zero", A.format("z + 1/0"), EXPR + "expression is undefined, infinite or complex (a division by zero, log(0) or sqrt of a negative number); correct the formula"),
    ("infinite_number", A.format(".inf"), EXPR + "number inf is not finite; use a finite number"),
    ("param_text_default", "activations:\n  foo:\n    expr: a*z\n    params: {a: high}\n", "bad.yaml:4: entry 'foo'.params.a: default must be a number, got text; write a number such as 0.01"),
    ("param_boolean_default", "activations:\n  foo:\n    expr: a*z\n    params: {a: true}\n", "bad.yaml:4: entry 'foo'.params.a: default must be a number, got a boolean; write a number such as 0.01"),
    ("param_nan_default", "activations:\n  foo:\n    expr: a*z\n    params: {a: .nan}\n", "bad.yaml:4: entry 'foo'.params.a: number nan is not finite; use a finite number"),
    ("reserved_param_name", "activations:\n  foo:\n    expr: z*axis\n    params: {axis: 1}\n", "bad.yaml:4: entry 'foo'.params: parameter name 'axis' is reserved in generated code; rename it (reserved: axis, ctx, device, dim, dtype, g, ignore_index, input, jax, jnp, label_smoothing, labels, logits, np, num_parameters, out, predictions, reduction, self, target, targets, torch, y, y_hat, y_pred, y_true, z)"),
    ("framework_param_name", "activations:\n  foo:\n    expr: z*dim\n    params: {dim: 1}\n", "bad.yaml:4: entry 'foo'.params: parameter name 'dim' is reserved in generated code; rename it (reserved: axis, ctx, device, dim, dtype, g, ignore_index, input, jax, jnp, label_smoothing, labels, logits, np, num_parameters, out, predictions, reduction, self, target, targets, torch, y, y_hat, y_pred, y_true, z)"),
    ("function_shadows_a_module", "activations:\n  torch:\n    expr: z\n", "bad.yaml:2: entry 'torch': name 'torch' would shadow a module the generated packages use; rename it (reserved: activations, base64, functools, heads, jax, jnp, losses, math, nn, np, struct, torch)"),
    ("generated_name_clash", "activations:\n  relu:\n    expr: Max(0, z)\n  relu_grad:\n    expr: z\n", "bad.yaml:4: entry 'relu_grad': generated function 'relu_grad' clashes with one generated for 'relu'; rename one of the entries"),
    ("false_identity", "activations:\n  lin:\n    expr: z\nidentities:\n  wrong:\n    claim: lin(z) == 2*z\n", "bad.yaml:5: entry 'wrong'.claim: the claim is false: at z = 2.4 the left side is 2.4 and the right side 4.8; correct the claim"),
    ("unprovable_identity", "activations:\n  lin:\n    expr: z\nidentities:\n  hard:\n    claim: lin(z) == z + Max(0, z - 100)\n", "bad.yaml:5: entry 'hard'.claim: SymPy could neither prove nor refute the claim; simplify it, add an assumption, or mark it 'conjecture: true'"),
    ("identity_not_an_equation", "activations:\n  lin:\n    expr: z\nidentities:\n  eq:\n    claim: lin(z) - z\n", "bad.yaml:6: entry 'eq'.claim: a claim is an equation; write it as 'left == right'"),
    ("several_problems_at_once", "activations:\n  foo:\n    expr: tnah(z)\n  bar:\n    expr: z + x\n    colour: red\n", "\n".join([
        EXPR + f"unknown function 'tnah'; did you mean 'tanh'? The known functions are {FUNCS}",
        "bad.yaml:5: entry 'bar'.expr: unknown name 'x'; the names in scope are E, pi, z",
        "bad.yaml:6: entry 'bar': unknown key 'colour'; the allowed keys are expr, params, title, use, pros, cons, layer, aliases, learnable, domain, split",
    ])),
]


def _write(root, files):
    if not isinstance(files, dict):
        files = {"bad.yaml": files}
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return "s" if len(files) > 1 else next(iter(files))


def test_corpus_is_large_enough():
    assert len(CASES) >= 40
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("files, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_spec_message(tmp_path, monkeypatch, capsys, files, expected):
    monkeypatch.chdir(tmp_path)
    spec = _write(tmp_path, files)
    code = main(["build", "--spec", spec, "--out", "out", "--quiet", "--entry-timeout", "20"])
    err = capsys.readouterr().err
    count = expected.count("\n") + 1
    assert err == f"{expected}\nactgen: {count} problem(s) in the spec; nothing was written\n"
    assert code == 2
    assert not (tmp_path / "out").exists()
    assert "Traceback" not in err


def test_messages_have_the_house_format():
    """FILE:LINE: [entry 'NAME'[.field]: ]what is wrong; what to do."""
    import re

    shape = re.compile(r"^[\w./-]+\.yaml:\d+: (entry '[^']+'(\.[\w.]+)?: )?.+; .+$")
    for name, _, expected in CASES:
        for line in expected.splitlines():
            assert shape.match(line), (name, line)
