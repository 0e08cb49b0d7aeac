"""The docs site in a real browser: build it with mkdocs, open pages in headless Chromium, and check
that the math is typeset by KaTeX, the plots are there, and no request leaves the machine.

Skips (with the reason) where chromium or npm is missing; fails instead when CI is set.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("index", "cheatsheet", "proofs", "activations/sigmoid", "activations/softmax", "losses/cce", "tasks/multi_class")
FUNCTION_PAGES = ("activations/sigmoid", "activations/softmax", "losses/cce")


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _require(tool, found, how):
    if found:
        return
    message = f"{tool} is not installed ({how}); the browser test of the docs site needs it"
    if os.environ.get("CI"):
        pytest.fail(message + " and CI is set, so this is a failure, not a skip")
    pytest.skip(message)


class _Recorder(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean; requests are recorded instead
        pass

    def do_GET(self):
        super().do_GET()
        self.server.requests.append(self.path)


@pytest.fixture(scope="module")
def site():
    _require("chromium", _chromium(), "Debian: apt-get install -y chromium")
    _require("npm", shutil.which("npm"), "Debian: apt-get install -y npm; it fetches KaTeX from the npm registry")
    with tempfile.TemporaryDirectory(prefix="actgen-site-") as tmp:
        out = Path(tmp) / "site"
        mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)]
        done = subprocess.run(mkdocs, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
        assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Recorder, directory=str(out)))
        server.requests = []
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield dict(root=out, base=f"http://127.0.0.1:{server.server_address[1]}", server=server, tmp=Path(tmp))
        finally:
            server.shutdown()
            server.server_close()  # the listening socket: no ResourceWarning later in the session
            thread.join(timeout=10)


def _open(site, page):
    """The DOM of PAGE after its scripts ran, and the URLs the page made Chromium request."""
    profile = tempfile.mkdtemp(dir=site["tmp"])
    netlog = site["tmp"] / (page.replace("/", "_") + ".netlog.json")
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--disable-features=AutofillServerCommunication", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           f"--log-net-log={netlog}", "--virtual-time-budget=8000", "--dump-dom", f"{site['base']}/{page}.html"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        # requests made on behalf of the page carry its network isolation key; Chromium's own
        # background services (update checks, account probes) do not
        if names.get(event["type"]) == "URL_REQUEST_START_JOB" and "127.0.0.1" in str(params.get("network_isolation_key", "")):
            urls.append(params["url"])
    return done.stdout, urls


@pytest.fixture(scope="module")
def opened(site):
    return {page: _open(site, page) for page in PAGES}


@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset(opened, page):
    dom, _ = opened[page]
    assert dom.count('class="katex"') > 0, "KaTeX rendered nothing"
    assert "katex-error" not in dom, re.findall(r'katex-error[^>]*title="([^"]*)"', dom)[:3]
    assert "$$" not in dom
    assert not re.search(r'class="arithmatex">\s*\\[(\[]', dom), "a formula was left untypeset"


@pytest.mark.parametrize("page", FUNCTION_PAGES + ("tasks/multi_class",))
def test_plots_are_present(site, opened, page):
    dom, urls = opened[page]
    svgs = re.findall(r'<img[^>]+src="([^"]+\.svg)"', dom)
    assert svgs, "no SVG plot on the page"
    assert any(u.endswith(".svg") for u in urls)
    for svg in svgs:
        assert (site["root"] / Path(page).parent / svg).is_file()


@pytest.mark.parametrize("page", PAGES)
def test_no_request_leaves_the_machine(site, opened, page):
    _, urls = opened[page]
    assert any(u.endswith("/assets/vendor/katex/katex.min.js") for u in urls), "KaTeX was not loaded from the site"
    outside = [u for u in urls if not u.startswith(site["base"] + "/")]
    assert not outside, f"requests to outside the site: {outside}"


def test_built_pages_reference_no_remote_assets(site):
    remote = re.compile(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="(?:https?:)?//')
    for html in site["root"].rglob("*.html"):
        assert not remote.search(html.read_text(encoding="utf-8")), html
