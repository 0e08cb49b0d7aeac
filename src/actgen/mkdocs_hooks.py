"""mkdocs hooks (see mkdocs.yml): serve the pinned npm browser assets and the KaTeX start-up script.

The assets are fetched by :func:`actgen.docs.fetch_vendor` into the ignored ``.actgen-cache/``
beside mkdocs.yml and added to the built site as files; nothing third-party is committed.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

from actgen.docs import KATEX_INIT, VendorError, vendor_files


def on_files(files, config):
    cache = Path(config.config_file_path).resolve().parent / ".actgen-cache" / "docs-vendor"
    try:
        assets = vendor_files(cache)
    except VendorError as exc:
        raise PluginError(str(exc)) from exc
    for site_path, local in sorted(assets.items()):
        files.append(File.generated(config, site_path, abs_src_path=str(local)))
    files.append(File.generated(config, "assets/katex-init.js", content=KATEX_INIT))
    return files
