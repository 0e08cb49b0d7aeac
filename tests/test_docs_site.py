"""The docs site in a real browser: build it with `actgen site`, open pages in headless Chromium at
1280 px, and check that the math is typeset by KaTeX, the plots are there, no table needs sideways
scrolling, and no request leaves the machine.

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
        path, _, query = self.path.partition("?")
        if query == "measure" and path.endswith(".html"):
            self._send_measured(path)
        else:
            super().do_GET()
        self.server.requests.append(self.path)

    def _send_measured(self, path):
        """The page with MEASURE added: the layout facts, written into the DOM that Chromium dumps."""
        html = (Path(self.directory) / path.lstrip("/")).read_text(encoding="utf-8")
        body = html.replace("</body>", f"<script>{MEASURE}</script></body>").encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# Run in the page once it has loaded and KaTeX has typeset it: for every table of the content, its
# width against the width of the box that holds it (Material wraps each table in a scrolling box),
# the page's own width against the window's, and how many formulas and images there are.
MEASURE = """
window.addEventListener("load", function () { setTimeout(function () {
  var tables = Array.prototype.map.call(document.querySelectorAll("article table"), function (t, i) {
    var box = t.closest(".md-typeset__scrollwrap") || t.parentElement;
    var column = t.closest(".md-content");
    return {index: i, header: (t.querySelector("th") || {}).textContent || "", table: t.scrollWidth,
            box: box.clientWidth, box_scroll: box.scrollWidth, column: column.clientWidth};
  });
  var images = Array.prototype.map.call(document.querySelectorAll("article img"), function (im) {
    return {src: im.getAttribute("src"), loaded: im.complete && im.naturalWidth > 0};
  });
  var facts = {window: window.innerWidth, page: document.documentElement.scrollWidth, tables: tables, images: images,
               typeset: document.body.getAttribute("data-math-typeset"),
               formulas: document.querySelectorAll("article .arithmatex").length,
               katex: document.querySelectorAll("article .arithmatex .katex").length};
  var pre = document.createElement("pre");
  pre.id = "actgen-measure";
  pre.textContent = JSON.stringify(facts);
  document.body.appendChild(pre);
}, 200); });
"""


@pytest.fixture(scope="module")
def site():
    _require("chromium", _chromium(), "Debian: apt-get install -y chromium")
    _require("npm", shutil.which("npm"), "Debian: apt-get install -y npm; it fetches KaTeX from the npm registry")
    with tempfile.TemporaryDirectory(prefix="actgen-site-") as tmp:
        out = Path(tmp) / "site"
        # the README's command, as a user runs it (no environment variable to silence anything)
        env = {k: v for k, v in os.environ.items() if k not in ("NO_MKDOCS_2_WARNING", "DISABLE_MKDOCS_2_WARNING")}
        done = subprocess.run([sys.executable, "-m", "actgen.cli", "site", "--out", str(out)], capture_output=True, text=True, cwd=ROOT, env=env)
        assert done.returncode == 0, f"actgen site failed:\n{done.stdout}\n{done.stderr}"
        build_output = done.stdout + done.stderr
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Recorder, directory=str(out)))
        server.requests = []
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield dict(root=out, base=f"http://127.0.0.1:{server.server_address[1]}", server=server, tmp=Path(tmp), output=build_output)
        finally:
            server.shutdown()
            server.server_close()  # the listening socket: no ResourceWarning later in the session
            thread.join(timeout=10)


WIDTH = 1280  # a laptop's window


def _open(site, page, query=""):
    """The DOM of PAGE after its scripts ran, and the URLs the page made Chromium request."""
    profile = tempfile.mkdtemp(dir=site["tmp"])
    netlog = site["tmp"] / (page.replace("/", "_") + query + ".netlog.json")
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--disable-features=AutofillServerCommunication", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           f"--window-size={WIDTH},900", f"--log-net-log={netlog}", "--virtual-time-budget=8000", "--dump-dom",
           f"{site['base']}/{page}.html" + (f"?{query}" if query else "")]
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


def test_build_output_is_one_line_without_banner_or_warning(site):
    lines = site["output"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("actgen site: "), site["output"]
    assert "WARNING" not in site["output"] and "MkDocs 2.0" not in site["output"]


LAYOUT_PAGES = ("index", "cheatsheet", "activations/sigmoid", "losses/cce", "tasks/binary", "proofs")


@pytest.fixture(scope="module")
def measured(site):
    out = {}
    for page in LAYOUT_PAGES:
        dom, _ = _open(site, page, "measure")
        found = re.search(r'<pre id="actgen-measure">(.*?)</pre>', dom, re.S)
        assert found, f"{page}: the measurement did not run"
        out[page] = json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    return out


@pytest.mark.parametrize("page", LAYOUT_PAGES)
def test_tables_fit_the_column_at_1280_px(measured, page):
    """No sideways scrolling at 1280 px: every table fits the box that holds it (Material's
    scrolling wrapper), that box is no wider than the content column, and the page no wider than
    the window."""
    facts = measured[page]
    assert facts["window"] == WIDTH
    assert facts["page"] <= facts["window"], f"the page is {facts['page']} px wide in a {facts['window']} px window"
    wide = [(t["header"], t["table"], t["box"]) for t in facts["tables"] if t["table"] > t["box"] or t["box_scroll"] > t["box"] or t["box"] > t["column"]]
    assert facts["tables"] or page != "cheatsheet"
    assert not wide, f"tables wider than their column (first header, table px, column px): {wide}"


@pytest.mark.parametrize("page", LAYOUT_PAGES)
def test_every_formula_typeset_and_every_image_loaded(measured, page):
    facts = measured[page]
    assert facts["typeset"] == "katex"
    assert facts["formulas"] > 0 and facts["katex"] == facts["formulas"], (facts["katex"], facts["formulas"])
    assert all(im["loaded"] for im in facts["images"]), [im["src"] for im in facts["images"] if not im["loaded"]]


def test_search_previews_hold_prose_not_tex_or_code(site):
    """The search index (what Material shows as previews) has the pages' text without the TeX
    source of the formulas or the code blocks."""
    index = json.loads((site["root"] / "search" / "search_index.json").read_text(encoding="utf-8"))
    texts = {doc["location"]: doc["text"] for doc in index["docs"]}
    assert any("prediction minus target" in t for t in texts.values())
    tex = [loc for loc, t in texts.items() if re.search(r"\\\(|\\\[|\\frac|\\left|\$\$", t)]
    code = [loc for loc, t in texts.items() if "<pre>" in t or "import numpy" in t]
    assert not tex, f"TeX source in the search index: {tex[:5]}"
    assert not code, f"code blocks in the search index: {code[:5]}"


USER_SPEC = """\
activations:
  bent_identity:
    expr: (sqrt(z**2 + 1) - 1) / 2 + z
  scaled_swish:
    expr: z / (1 + exp(-beta * z))
    params: {beta: 1.5}
losses:
  half_square:
    expr: (y_hat - y)**2 / 2
tasks:
  fit:
    title: Curve fitting
    output: bent_identity
    loss: half_square
"""


def test_a_users_spec_gets_its_own_site_with_one_command(tmp_path):
    """`actgen site --spec my.yaml --out mysite --package my_acts`, from a folder with nothing of
    actgen's in it; run again, it replaces its own earlier site."""
    _require("npm", shutil.which("npm"), "Debian: apt-get install -y npm; it fetches KaTeX from the npm registry")
    (tmp_path / "my.yaml").write_text(USER_SPEC, encoding="utf-8")
    cmd = [sys.executable, "-m", "actgen.cli", "site", "--spec", "my.yaml", "--out", "mysite", "--package", "my_acts"]
    for _ in range(2):
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("actgen site: ") and not done.stderr, done.stdout + done.stderr
    site = tmp_path / "mysite"
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    for page in ("index.html", "cheatsheet.html", "proofs.html", "activations/bent_identity.html", "activations/scaled_swish.html",
                 "losses/half_square.html", "tasks/fit.html"):
        assert page in pages, pages
    assert not any(p.startswith("activations/sigmoid") for p in pages), "the bundled spec's pages leaked in"
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "<title>my_acts</title>" in index or ">my_acts<" in index
    assert (site / "activations" / "scaled_swish.svg").is_file() and (site / "assets" / "vendor" / "katex" / "katex.min.js").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my.yaml", "mysite"], "nothing but the site is written"


@pytest.mark.parametrize("page", ("index", "activations/sigmoid", "losses/cce", "cheatsheet"))
def test_screenshot_at_1280_px(site, page):
    """What a person sees: a screenshot of the page at 1280 x 900 (kept in the test's temporary
    folder; set ACTGEN_SCREENSHOTS=DIR to keep copies), a PNG of that size with more than a blank
    page's content. The layout facts are asserted above, on the same pages."""
    import struct

    png = site["tmp"] / (page.replace("/", "_") + ".png")
    profile = tempfile.mkdtemp(dir=site["tmp"])
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--window-size={WIDTH},900",
           "--virtual-time-budget=8000", f"--screenshot={png}", f"{site['base']}/{page}.html"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (WIDTH, 900)
    # a blank page compresses to almost nothing; a page of text, formulas and a plot does not
    assert len(data) > 40_000, len(data)
    if os.environ.get("ACTGEN_SCREENSHOTS"):
        keep = Path(os.environ["ACTGEN_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, keep / png.name)
