"""mkdocs hooks (named in the mkdocs.yml that `actgen site` writes): serve the pinned npm browser
assets, the KaTeX start-up script and the site's style sheet.

The assets are fetched by :func:`actgen.docs.fetch_vendor` into :func:`actgen.docs.vendor_cache`
(once; later builds are offline) and added to the built site as files; nothing third-party is
committed.
"""
from __future__ import annotations

import re

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

from actgen.docs import KATEX_INIT, SITE_CSS, WIDE_PAGES, VendorError, vendor_cache, vendor_files


# formulas (TeX source until KaTeX typesets them in the browser) and code blocks: Material's search
# skips every element that carries data-search-exclude, so its previews show the prose
_NOT_SEARCHED = re.compile(r'<(span|div) class="(arithmatex|[^"]*\bhighlight\b[^"]*)"')


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri in WIDE_PAGES:  # Material's front-matter key, set here: the first line is the generated header
        page.meta["hide"] = sorted(set(page.meta.get("hide", [])) | {"toc"})
    return markdown


def on_page_content(html, page, config, files):
    return _NOT_SEARCHED.sub(lambda m: f'<{m.group(1)} class="{m.group(2)}" data-search-exclude', html)


def on_files(files, config):
    try:
        assets = vendor_files(vendor_cache())
    except VendorError as exc:
        raise PluginError(str(exc)) from exc
    for site_path, local in sorted(assets.items()):
        files.append(File.generated(config, site_path, abs_src_path=str(local)))
    files.append(File.generated(config, "assets/katex-init.js", content=KATEX_INIT))
    files.append(File.generated(config, "assets/actgen.css", content=SITE_CSS))
    return files
