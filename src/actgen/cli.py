"""actgen's command line: the driver of the whole pipeline.

The flow, one stage per module, each importing only from the ones before it:

    load (YAML, safely)  ->  expr (whitelisting parser)  ->  model (frozen entities)
    ->  rules (named, proven rewrites)  ->  derive (SymPy derivatives)  ->  properties
    ->  prove (identities)  ->  printing (shared emission, LaTeX)  ->  render (sheets, catalog)
    ->  backends/<target>/ (printer, templates, runtime per array library)  ->  write (atomic, header-checked files)

`actgen build` runs all of it for every selected target (--target numpy --target torch ...);
`actgen check` renders in memory and compares with the output folder; `actgen prove` prints the
identity proofs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from pathlib import Path

from . import __version__

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2
# kept here (not imported from actgen.backends) so that --help and a no-op build stay fast
TARGET_NAMES = ("numpy", "torch", "jax")
DEFAULT_TARGETS = TARGET_NAMES
REPORT = "this is a bug in actgen; please report it with the spec and the command you ran"


class _Progress:
    """Shows which entry is being derived once a build has taken more than a second."""

    def __init__(self, stream, quiet=False):
        self.start = time.monotonic()
        self.stream = stream
        self.quiet = quiet or not getattr(stream, "isatty", lambda: False)()
        self.shown = False

    def __call__(self, name):
        if self.quiet or time.monotonic() - self.start < 1.0:
            return
        self.stream.write(f"\ractgen: deriving {name:<32}")
        self.stream.flush()
        self.shown = True

    def done(self):
        if self.shown:
            self.stream.write("\r" + " " * 50 + "\r")
            self.stream.flush()


def _generate(args, progress):
    """Every file a build writes, as {relative path: content}.

    The whole result is cached under the content of the spec files, the package name and
    actgen's own fingerprint, so a build with nothing changed imports neither SymPy nor NumPy;
    otherwise the per-entry caches of derivations and proofs keep an edit of one entry cheap."""
    from . import cache
    from .load import spec_paths

    paths = spec_paths(args.spec)
    try:
        sources = [(p.name, p.read_bytes()) for p in paths]
    except OSError:
        sources = None  # let the loader report the problem
    key = cache.key("build", str(Path(args.spec).resolve()), _packages(args), sources, getattr(args, "entry_timeout", None)) if sources else None
    if key is not None:
        hit = cache.get(key)
        if isinstance(hit, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in hit.items()):
            return hit
    files = _generate_uncached(args, progress)
    if key is not None:
        cache.put(key, files)
    return files


def _generate_uncached(args, progress):
    from .model import load_spec
    from .pipeline import derive_all
    from .prove import check_identities
    from .render import render_all
    from .write import seal

    spec = load_spec(args.spec)
    derived = derive_all(spec, budget=args.entry_timeout, progress=progress, jobs=args.jobs)
    proofs = check_identities(spec, jobs=args.jobs)
    files = render_all(derived, _packages(args), proofs)
    return {rel: seal(rel, content) for rel, content in files.items()}


def cmd_build(args):
    from .write import apply, plan

    progress = _Progress(sys.stderr, args.quiet)
    started = time.monotonic()
    files = _generate(args, progress)
    out = Path(args.out)
    p = plan(out, files, force=args.force, owned=_owned(args))
    apply(out, files, p)
    progress.done()
    if not args.quiet:
        print(f"actgen: {len(files)} files in {out}/ ({len(p.write)} written, {len(p.unchanged)} unchanged, {len(p.remove)} removed) in {time.monotonic() - started:.1f} s")
    return EXIT_OK


class UsageError(Exception):
    """A command-line argument that cannot work; the message says which and what to do."""


def _packages(args) -> dict[str, str]:
    """Target name -> package name for this build (see actgen.backends for the naming rule),
    each checked to be importable as the generated package and nothing else."""
    from .backends import packages

    chosen = packages(args.package, args.target or DEFAULT_TARGETS)
    for name in chosen.values():
        _check_package_name(name)
    return chosen


def _check_package_name(name):
    import importlib.util
    import keyword

    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"--package: '{name}' is not an importable Python name; use letters, digits and underscores, not starting with a digit, and no keyword (e.g. {name.replace('-', '_') if name.replace('-', '_').isidentifier() and not keyword.iskeyword(name.replace('-', '_')) else 'my_acts'})")
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return
    origin = Path(found.origin) if found.origin and found.origin not in ("built-in", "frozen") else None
    try:
        ours = origin is not None and origin.is_file() and "Generated by actgen" in origin.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
    except OSError:
        ours = False
    if not ours:
        where = f" ({origin})" if origin else ""
        raise UsageError(f"--package: '{name}' is the name of an installed module{where}; `import {name}` would not find the generated package: choose another name")


def _owned(args):
    """The output folder's entries a build may write or remove: the selected targets' packages
    (a package of a target not selected is left alone) and the sheets."""
    from .write import BUILD_ROOTS as OWNED_ROOTS

    return list(_packages(args).values()) + list(OWNED_ROOTS)


def _stale(out: Path, files, owned, command) -> str | None:
    """Why ``out`` is not exactly what ``actgen COMMAND`` would write, in one line, or None."""
    from .write import OutputError, plan, status

    try:
        p = plan(out, files, force=True, owned=owned)
    except OutputError as exc:
        return f"stale: {str(exc).splitlines()[0]}"
    edited = [rel for rel in files if (out / rel).exists() and status(out / rel) == "edited"]
    if edited:
        return f"{out / edited[0]} was edited by hand (its content no longer matches its header's hash); run actgen {command} --force"
    if p.write:
        return f"stale: {out / p.write[0]} differs from what `actgen {command}` would write ({len(p.write)} file(s) differ); run actgen {command}"
    if p.remove:
        return f"stale: {out / p.remove[0]} would be removed by `actgen {command}`; run actgen {command}"
    return None


def cmd_check(args):
    files = _generate(args, _Progress(sys.stderr, True))
    out = Path(args.out)
    reason = _stale(out, files, _owned(args), "build")
    if reason:
        print(f"actgen check: {reason}")
        return EXIT_USER
    print(f"actgen check: {out}/ is up to date ({len(files)} files)")
    return EXIT_OK


def cmd_prove(args):
    from .model import load_spec
    from .prove import check_identities, format_proof

    spec = load_spec(args.spec)
    proofs = check_identities(spec, names=args.names or None, raise_on_failure=False)
    if args.names:
        missing = sorted(set(args.names) - {p.identity.name for p in proofs})
        if missing:
            known = ", ".join(i.name for i in spec.identities)
            print(f"actgen prove: unknown identity '{missing[0]}'; known identities are {known}", file=sys.stderr)
            return EXIT_USER
    failed = 0
    for proof in proofs:
        print(format_proof(proof))
        print()
        failed += proof.status not in ("proved", "conjecture")
    print(f"{len(proofs) - failed} of {len(proofs)} identities proved" + (f", {failed} failed" if failed else ""))
    return EXIT_USER if failed else EXIT_OK


def _docs_files(args, report: Path | None, progress):
    """The docs pages of the spec (as `actgen docs` writes them), and the spec."""
    from .docs import render_docs
    from .model import load_spec
    from .pipeline import derive_all
    from .prove import check_identities
    from .write import seal

    spec = load_spec(args.spec)
    derived = derive_all(spec, budget=args.entry_timeout, progress=progress, jobs=args.jobs)
    proofs = check_identities(spec, jobs=args.jobs)
    accuracy = json.loads(report.read_text(encoding="utf-8")) if report is not None and report.exists() else None
    files = {rel: seal(rel, content) for rel, content in render_docs(derived, args.package, proofs, accuracy).items()}
    progress.done()
    return files, spec


def cmd_docs(args):
    from .docs import OWNED_ROOTS
    from .write import apply, plan

    progress = _Progress(sys.stderr, args.quiet or args.check)
    started = time.monotonic()
    files, _ = _docs_files(args, Path(args.out) / "accuracy.json", progress)
    out = Path(args.out)
    if args.check:
        reason = _stale(out, files, list(OWNED_ROOTS), "docs")
        if reason:
            print(f"actgen docs --check: {reason}")
            return EXIT_USER
        print(f"actgen docs --check: {out}/ docs are up to date ({len(files)} files)")
        return EXIT_OK
    p = plan(out, files, force=args.force, owned=list(OWNED_ROOTS))
    apply(out, files, p)
    if not args.quiet:
        print(f"actgen docs: {len(files)} files in {out}/ ({len(p.write)} written, {len(p.unchanged)} unchanged, {len(p.remove)} removed) in {time.monotonic() - started:.1f} s")
    return EXIT_OK


def cmd_site(args):
    from .backends import DEFAULT_PACKAGE
    from .site import SiteError, build_site, check_out

    check_out(Path(args.out))  # before the work: a folder the site may not replace is refused at once
    import importlib.util

    missing = [name for name in ("mkdocs", "material", "pymdownx", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"actgen site needs {', '.join(missing)} (the docs extra): pip install 'actgen[docs]', or pip install -e '.[docs]' in actgen's folder")
    progress = _Progress(sys.stderr, args.quiet)
    started = time.monotonic()
    report = Path(args.accuracy) if args.accuracy else None
    if report is None and args.spec == "spec" and args.package == DEFAULT_PACKAGE:
        report = Path("generated") / "accuracy.json"  # the bundled spec's measurements, where present
    elif report is not None and not report.is_file():
        raise UsageError(f"--accuracy: {report} does not exist; run `actgen accuracy --spec {args.spec} --out DIR` and pass DIR/accuracy.json")
    files, spec = _docs_files(args, report, progress)
    name = "actgen" if args.package == DEFAULT_PACKAGE else args.package
    out = Path(args.out)
    try:
        pages = build_site(files, out, name, spec.sources, f"Activation and loss functions of {', '.join(spec.sources)}: proven derivatives, stable code, docs.")
    except SiteError as exc:
        print(exc, file=sys.stderr)
        print(f"actgen site: mkdocs could not build the site (output above); {out}/ was left as it was", file=sys.stderr)
        return EXIT_USER
    if not args.quiet:
        print(f"actgen site: {pages} pages in {out}/ in {time.monotonic() - started:.1f} s; open {out / 'index.html'} (works offline)")
    return EXIT_OK


def _no_spec(args) -> str:
    where = Path(args.spec).resolve()
    default = args.spec == "spec"
    return (f"--spec: no spec at {args.spec}{' (the default)' if default else ''}: looked for {where}, which does not exist. "
            + ("Run actgen in the folder that holds your spec/ folder, or " if default else "Check the path, or ")
            + f"point at a spec with --spec PATH (a .yaml file, or a folder of *.yaml files), e.g. "
            f"`actgen {args.command} --spec my.yaml" + (" --out mygen --package my_acts`" if args.command in ("build", "check", "docs") else "`"))


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of seconds")
    return value


def _count(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _jobs(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of worker processes") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of worker processes (1 builds in this process)")
    return value


def _default_timeout():
    """$ACTGEN_ENTRY_TIMEOUT, or None for pipeline.ENTRY_BUDGET_S (not imported here: sympy is slow)."""
    try:
        return _seconds(os.environ.get("ACTGEN_ENTRY_TIMEOUT", ""))
    except argparse.ArgumentTypeError:
        return None


ACCURACY_HEADER = "<!-- Measured by `actgen accuracy`; numbers depend on the machine's NumPy/SciPy builds. -->"


def _fuzz(args, out):
    """`actgen accuracy --fuzz N`: random activations from the spec's grammar, built and measured
    (actgen.fuzz); the report goes to OUT/fuzz.md."""
    from . import fuzz
    from .write import atomic_write

    started = time.monotonic()
    shown = None if args.quiet or not sys.stderr.isatty() else (lambda k, n, e: print(f"\ractgen accuracy --fuzz: {k + 1}/{n} {e[:60]:<60}", end="", file=sys.stderr, flush=True))
    samples = fuzz.run(args.fuzz, seed=args.seed, progress=shown)
    if shown:
        print(file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fuzz.md"
    atomic_write(path, fuzz.report(samples, args.seed) + "\n")
    built = [s for s in samples if s.outcome == "ok"]
    print(f"actgen accuracy --fuzz: {len(samples)} expressions (seed {args.seed}): {len(built)} built, "
          f"{sum(s.within_target for s in built)} within 4 ulp, {sum(s.outcome == 'internal_error' for s in samples)} internal errors; "
          f"{path} ({time.monotonic() - started:.0f} s)")
    return EXIT_OK


def cmd_accuracy(args):
    import importlib
    import importlib.util

    import numpy as np

    from .accuracy import measure_all, report_json, report_markdown
    from .model import load_spec
    from .pipeline import derive_all
    from .write import atomic_write

    out = Path(args.out)
    if args.fuzz:
        return _fuzz(args, out)
    if not (out / args.package / "__init__.py").exists():
        print(f"actgen accuracy: {out / args.package} does not exist; run actgen build first", file=sys.stderr)
        return EXIT_USER
    derived = derive_all(load_spec(args.spec), jobs=args.jobs)  # before any framework starts its threads
    dtypes = (np.float64,) if args.float64_only else (np.float64, np.float32)
    results = []
    started = time.monotonic()
    shown = _MeasureProgress(sys.stderr, args.quiet)
    for target, name in _packages(args).items():
        if not (out / name / "__init__.py").exists():
            continue
        if target != "numpy" and importlib.util.find_spec(target) is None:
            print(f"actgen accuracy: {target} is not installed; skipping {out / name} (pip install -e '.[{target}]')", file=sys.stderr)
            continue
        if target == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)  # float64 measurements (the package itself never sets it)
        sys.path.insert(0, str(out.resolve()))
        try:
            package = importlib.import_module(name)
        finally:
            sys.path.pop(0)
        shown.start(target)
        results += measure_all(derived, package, dtypes, backend=target, progress=shown)
        shown.done()
    report = out / "accuracy.md"
    for path, text in ((report, report_markdown(results, ACCURACY_HEADER)), (out / "accuracy.json", report_json(results))):
        if path.exists() and ACCURACY_HEADER not in path.read_text(encoding="utf-8", errors="replace") and path.suffix == ".md":
            print(f"actgen accuracy: {path} was not written by actgen accuracy; refusing to overwrite it", file=sys.stderr)
            return EXIT_USER
        atomic_write(path, text)
    print(accuracy_summary(results, report, time.monotonic() - started))
    return EXIT_OK


def accuracy_summary(results, report, seconds) -> str:
    """One paragraph: what was measured, how many meet the target, the worst, where the report is."""
    from .accuracy import TARGET_ULP

    if not results:
        return f"actgen accuracy: nothing was measured (no built package found); {report} lists no function"
    backends = sorted({m.backend for m in results})
    dtypes = sorted({m.dtype for m in results})
    names = {m.name for m in results}
    over = sorted({(m.name, m.backend) for m in results if not m.max_term_ulp <= TARGET_ULP})
    worst = max(results, key=lambda m: m.max_term_ulp)
    points = sum(m.points for m in results)
    text = (f"actgen accuracy: measured {len(names)} functions ({len(results)} measurements, {points} points) of the "
            f"{', '.join(backends)} package(s) in {', '.join(dtypes)} against mpmath in {seconds:.0f} s; "
            + (f"all within the target of {TARGET_ULP:g} ulp" if not over else
               f"{len(results) - sum(1 for m in results if not m.max_term_ulp <= TARGET_ULP)} of {len(results)} within the target of {TARGET_ULP:g} ulp, "
               f"above it: {', '.join(f'{n} ({b})' for n, b in over[:8])}{' and more' if len(over) > 8 else ''}")
            + f"; worst {worst.name} ({worst.backend}, {worst.dtype}) {worst.max_term_ulp:.3g} ulp at input {worst.worst_term_input:g}. "
            f"Written to {report} and {report.with_suffix('.json')}.")
    return textwrap.fill(text, width=100)


class _MeasureProgress:
    """`actgen accuracy` on a terminal: which package and function is being measured, how far."""

    def __init__(self, stream, quiet=False):
        self.stream = stream
        self.quiet = quiet or not getattr(stream, "isatty", lambda: False)()
        self.target = ""
        self.width = 0

    def start(self, target):
        self.target = target

    def __call__(self, done, total, label, dtype):
        if self.quiet:
            return
        line = f"actgen accuracy: {self.target} {done + 1}/{total} ({100 * done // max(total, 1)}%) {label} {dtype}"
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def done(self):
        if not self.quiet and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


def parser():
    top = argparse.ArgumentParser(
        prog="actgen",
        description="Turn YAML declarations of activation and loss functions into proven derivatives, "
        "numerically stable NumPy code and Markdown documentation.",
    )
    top.add_argument("--version", action="version", version=f"actgen {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")

    def common(p):
        p.add_argument("--spec", default="spec", help="a spec file or a folder of *.yaml files (default: spec/)")
        p.add_argument("--out", default="generated", help="output folder (default: generated/)")
        p.add_argument("--package", default="actgen_numpy", help="name of the generated NumPy package; another target's package is NAME with _numpy replaced by _TARGET, or NAME_TARGET (default: actgen_numpy, so actgen_torch)")
        p.add_argument("--target", action="append", choices=TARGET_NAMES, metavar="TARGET", help=f"a target to generate a package for, repeatable ({', '.join(TARGET_NAMES)}; default: all)")
        p.add_argument("--entry-timeout", type=_seconds, default=_default_timeout(), metavar="SECONDS", help="budget of CPU seconds for deriving each entry (the process's own time, so other load on the machine does not count); an entry that takes longer stops the build with a message naming it (default: $ACTGEN_ENTRY_TIMEOUT or 60)")
        p.add_argument("--jobs", type=_jobs, default=os.cpu_count() or 1, metavar="N", help="worker processes deriving entries and proving identities in parallel; 1 derives in this process (default: the number of cores)")

    b = sub.add_parser("build", help="derive, prove and generate the package and docs", description="Derive every function of the spec, prove its identities, and write the NumPy package and Markdown sheets into the output folder. Only files that actgen generated are ever overwritten or removed.")
    common(b)
    b.add_argument("--force", action="store_true", help="overwrite generated files even if they were edited by hand")
    b.add_argument("--quiet", action="store_true", help="print nothing on success")
    b.set_defaults(fn=cmd_build)
    c = sub.add_parser("check", help="exit 0 if the output folder is exactly what build would write", description="Render everything in memory and compare with the output folder; exit 0 when it is up to date, 2 with a one-line reason when it is stale or edited by hand.")
    common(c)
    c.set_defaults(fn=cmd_check)
    d = sub.add_parser("docs", help="generate the documentation site's pages (mkdocs)", description="Write the docs site's Markdown pages, SVG plots and diagrams into OUT/docs/ and its navigation into OUT/mkdocs_nav.yml; `actgen site` builds the HTML site from the same pages.")
    common(d)
    d.add_argument("--check", action="store_true", help="write nothing; exit 0 if the docs pages are exactly what `actgen docs` would write, 2 otherwise")
    d.add_argument("--force", action="store_true", help="overwrite generated pages even if they were edited by hand")
    d.add_argument("--quiet", action="store_true", help="print nothing on success")
    d.set_defaults(fn=cmd_docs)
    st = sub.add_parser("site", help="build the static HTML docs site of a spec (mkdocs, KaTeX, search)",
                        description="Render the docs pages of the spec (as `actgen docs` does) and build the complete static site "
                        "with mkdocs into OUT: a page per function with its plot, the cheat sheet, a pipeline per task, the proofs, "
                        "typeset math and search. KaTeX is fetched from the npm registry once (npm needed) and cached; the site works "
                        "offline, from a web server or from file://. OUT is replaced only when it is empty or an earlier `actgen site` output.")
    common(st)
    st.set_defaults(out="site")
    for action in st._actions:
        if action.dest == "out":
            action.help = "folder of the built site (default: site/)"
        elif action.dest == "target":
            action.help = argparse.SUPPRESS  # the site documents every target's package
    st.add_argument("--accuracy", metavar="FILE", help="an accuracy.json written by `actgen accuracy` for this spec, shown on the function pages (default: generated/accuracy.json for the bundled spec, none otherwise)")
    st.add_argument("--quiet", action="store_true", help="print nothing on success")
    st.set_defaults(fn=cmd_site)
    pr = sub.add_parser("prove", help="prove the spec's identities and print each proof", description="Prove every identity of the spec (or the named ones) and print its claim, assumptions and proof steps.")
    pr.add_argument("names", nargs="*", help="identities to prove (default: all)")
    pr.add_argument("--spec", default="spec", help="a spec file or a folder of *.yaml files (default: spec/)")
    pr.set_defaults(fn=cmd_prove)
    acc = sub.add_parser("accuracy", help="measure the generated package against an mpmath reference, in ulps", description="Import the built packages from the output folder (NumPy, and PyTorch and JAX where they are installed), measure every elementwise function, gradient, second derivative, fused head, loss and class-axis function against an independent high-precision mpmath reference over [-750, 750], the float edges, log-spaced magnitudes up to the largest float and random off-grid points, and write accuracy.md and accuracy.json there.")
    common(acc)
    acc.add_argument("--float64-only", action="store_true", help="skip the float32 measurements")
    acc.add_argument("--quiet", action="store_true", help="no progress line on a terminal (the summary is still printed)")
    acc.add_argument("--fuzz", type=_count, default=0, metavar="N", help="instead: build and measure N random activations from the spec's grammar, report in OUT/fuzz.md")
    acc.add_argument("--seed", type=int, default=0, help="the random seed of --fuzz (default 0)")
    acc.set_defaults(fn=cmd_accuracy)
    return top


def main(argv=None):
    from .errors import SpecError
    from .write import OutputError

    args = parser().parse_args(argv)
    if not getattr(args, "fn", None):
        parser().print_help()
        return EXIT_USER
    try:
        if getattr(args, "spec", None) is not None and not getattr(args, "fuzz", 0) and not Path(args.spec).exists():
            raise UsageError(_no_spec(args))
        return args.fn(args)
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"actgen: {len(exc.problems)} problem(s) in the spec; nothing was written", file=sys.stderr)
        return EXIT_USER
    except OutputError as exc:
        print(exc, file=sys.stderr)
        print("actgen: nothing was written", file=sys.stderr)
        return EXIT_USER
    except UsageError as exc:
        print(f"actgen: {exc}", file=sys.stderr)
        print("actgen: nothing was written", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("actgen: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
        if os.environ.get("ACTGEN_DEBUG"):
            raise
        print(f"actgen: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"actgen: {REPORT} (set ACTGEN_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
