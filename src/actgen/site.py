"""Stage 10: the static HTML site of a spec, built with mkdocs (Material) in one command.

:func:`build_site` writes the pages that :func:`actgen.docs.render_docs` rendered, with an mkdocs
configuration from ``templates/docs/mkdocs.yml.j2``, into a temporary folder, runs ``mkdocs build
--strict`` there, and moves the finished site into the output folder. The output folder is
replaced only when the build succeeded, and only when it is empty or a site that ``actgen site``
built before (it holds :data:`SITE_MARK`); anything else is refused.

Browser assets (KaTeX, the iframe-worker polyfill) come from the npm registry through the hooks in
:mod:`actgen.mkdocs_hooks`, cached in :func:`actgen.docs.vendor_cache` after the first fetch, so
later builds and the built site work offline.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import docs
from .write import OutputError

SITE_MARK = ".actgen-site"
# Material for MkDocs prints a banner about a future MkDocs release unless this is set
# (material/templates/__init__.py checks NO_MKDOCS_2_WARNING)
QUIET_ENV = {"NO_MKDOCS_2_WARNING": "true"}


class SiteError(Exception):
    """mkdocs could not build the site; carries its output."""


def check_out(out: Path):
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"{out}: is not a folder; choose another --out for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_MARK).is_file():
        raise OutputError(f"{out}: is not empty and was not built by `actgen site` (no {SITE_MARK} in it); "
                          "the site replaces the folder's content, so choose another --out or empty it")


def mkdocs_config(tmp: Path, site_name: str, sources, description: str) -> str:
    from . import mkdocs_hooks

    return docs.environment().get_template("mkdocs.yml.j2").render(
        header=docs.header("#", sources).replace("`actgen docs`", "`actgen site`"), nav=docs.NAV_FILE, site_name=site_name,
        description=description, docs_dir=str(tmp / docs.DOCS_ROOT), site_dir=str(tmp / "site"),
        hooks=str(Path(mkdocs_hooks.__file__).resolve()))


def build_site(files: dict[str, str], out: Path, site_name: str, sources, description: str) -> int:
    """Build the site of the rendered docs ``files`` (``docs/...`` and the navigation) into
    ``out``; returns the number of HTML pages."""
    check_out(out)
    with tempfile.TemporaryDirectory(prefix="actgen-site-") as name:
        tmp = Path(name)
        for rel, content in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(content, encoding="utf-8")
        config = tmp / "mkdocs.yml"
        config.write_text(mkdocs_config(tmp, site_name, sources, description), encoding="utf-8")
        env = {**os.environ, **QUIET_ENV, docs.VENDOR_CACHE_ENV: str(docs.vendor_cache())}
        done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)],
                              capture_output=True, text=True, cwd=tmp, env=env)
        if done.returncode != 0:
            raise SiteError((done.stdout + done.stderr).strip()[-4000:])
        built = tmp / "site"
        (built / SITE_MARK).write_text("built by actgen site; `actgen site` may replace this folder\n", encoding="utf-8")
        pages = sum(1 for _ in built.rglob("*.html"))
        check_out(out)
        if out.is_dir():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), str(out))
    return pages
