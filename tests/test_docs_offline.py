"""The built documentation works without network access.

Opens the built pages in headless Chromium with every outside host made
unreachable (a proxy on a closed loopback port, and a host resolver that
resolves nothing), and checks that the formulas were typeset by the bundled
MathJax and that the search page finds things. A control page that loads
MathJax from a CDN must come out untypeset, which shows the browser really
was offline. Then measures every page's layout in the same browser: at
1280 × 900 no table, display formula or code block is wider than the text
column, and at 420 px (a phone) no display formula is.

Needs the HTML build (``sphinx-build -b html docs docs/_build/html``) and
Debian's ``chromium``; skipped with the reason when either is missing.
``ADAMAX_CY_DOCS_SCREENSHOT=path.png`` keeps the screenshot of the
algorithm page for a person to look at.
"""

from __future__ import annotations

import html
import html.parser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HTML = Path(os.environ.get("ADAMAX_CY_DOCS_HTML", Path(__file__).parents[1] / "docs" / "_build" / "html"))
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)

needs_build = pytest.mark.skipif(
    not (HTML / "algorithm.html").is_file(),
    reason=f"the docs are not built ({HTML}); run: sphinx-build -b html docs docs/_build/html",
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)

# Sphinx's own default, the CDN a site without a local MathJax would load.
CDN_MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"


def chromium(tmp_path: Path, url: str, *args: str) -> str:
    """Run headless Chromium offline on ``url``; return its standard output."""
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        # Every outside host unreachable: all traffic through a proxy on a
        # closed loopback port, and no host name resolves.
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=20000",
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


class _MathSource(html.parser.HTMLParser):
    """Counts the math elements Sphinx wrote, and finds remote assets."""

    def __init__(self) -> None:
        super().__init__()
        self.math = 0
        self.remote: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "math" in (a.get("class") or "").split():
            self.math += 1
        url = a.get("src") if tag in ("script", "img", "iframe") else a.get("href") if tag == "link" else None
        if url and re.match(r"^(https?:)?//", url):
            self.remote.append(f"<{tag}> {url}")


def parse(path: Path) -> _MathSource:
    parser = _MathSource()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def typeset(dom: str) -> int:
    return dom.count("<mjx-container")


def raw_tex(dom: str) -> list[str]:
    """Math that was left as TeX source: Sphinx's ``\\(`` and ``\\[`` delimiters."""
    return re.findall(r'class="math[^"]*">\s*(\\[(\[].{0,40})', dom)


@needs_build
def test_no_page_loads_anything_from_another_host() -> None:
    remote = {str(p.relative_to(HTML)): parse(p).remote for p in HTML.rglob("*.html")}
    assert {page: urls for page, urls in remote.items() if urls} == {}


@needs_build
def test_api_page_documents_every_public_name() -> None:
    import adamax_cy

    page = (HTML / "api.html").read_text(encoding="utf-8")
    missing = [name for name in adamax_cy.__all__ if f'id="adamax_cy.{name}"' not in page]
    assert missing == []


@needs_build
@needs_chromium
def test_math_is_typeset_offline(tmp_path: Path) -> None:
    page = HTML / "algorithm.html"
    expected = parse(page).math
    assert expected > 10, "the algorithm page should hold the formulas"

    dom = chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert raw_tex(dom) == []
    assert typeset(dom) >= expected
    assert 'class="copybtn' in dom, "code blocks should have a copy button"

    shot = Path(os.environ.get("ADAMAX_CY_DOCS_SCREENSHOT", tmp_path / "algorithm.png"))
    chromium(tmp_path, page.as_uri(), "--window-size=1280,2400", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_build
@needs_chromium
def test_a_page_that_needs_a_cdn_is_not_typeset(tmp_path: Path) -> None:
    """The control: the browser above really had no network."""
    source = (HTML / "algorithm.html").read_text(encoding="utf-8")
    local = re.search(r'src="(_static/mathjax/[^"]+)"', source)
    assert local, "the algorithm page should load the bundled MathJax"
    control = HTML / "_offline_control.html"
    control.write_text(source.replace(local.group(1), CDN_MATHJAX), encoding="utf-8")
    try:
        dom = chromium(tmp_path, control.as_uri(), "--dump-dom")
    finally:
        control.unlink()
    assert typeset(dom) == 0
    assert raw_tex(dom) != []


@needs_build
@needs_chromium
def test_search_works_offline(tmp_path: Path) -> None:
    dom = chromium(tmp_path, (HTML / "search.html").as_uri() + "?q=adamax_step_many", "--dump-dom")
    assert 'href="api.html#adamax_cy.adamax_step_many"' in dom


# --------------------------------------------------------------------------
# Layout: nothing wider than its column

# Runs in the page once MathJax has typeset it (every <details> opened), and
# writes what overflows into the DOM as JSON, for --dump-dom to carry out.
# "Wider than its column": an element whose full width (its scrollWidth, which
# counts what a scroll container hides) reaches past the right edge of the
# article's content box. A scroll container does not excuse it: the reader
# would see it cut at the column's edge.
_MEASURE = r"""
<script>
(function () {
  function measure() {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
    var main = document.querySelector("article[role=main]") || document.body;
    var style = getComputedStyle(main);
    var right = main.getBoundingClientRect().left + main.clientWidth - parseFloat(style.paddingRight);
    var found = [];
    main.querySelectorAll("table, mjx-container[display=true], pre").forEach(function (el) {
      var box = el.getBoundingClientRect();
      if (box.width === 0) return;
      var need = Math.max(el.scrollWidth, box.width);
      var over = box.left + need - right;
      if (over <= 1) return;
      found.push({tag: el.tagName.toLowerCase(), over: Math.round(over),
                  text: (el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 60)});
    });
    var out = document.createElement("pre");
    out.id = "layout-report";
    out.textContent = JSON.stringify(found);
    document.body.appendChild(out);
  }
  window.addEventListener("load", function () {
    var mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
    (mj ? mj : Promise.resolve()).then(function () { setTimeout(measure, 100); });
  });
})();
</script>
"""


def overflowing(tmp_path: Path, page: Path, width: int) -> list[dict]:
    """What on ``page`` is wider than its column in a ``width`` px window."""
    import json

    source = page.read_text(encoding="utf-8")
    probe = page.with_name(f"_layout_{page.name}")
    probe.write_text(source.replace("</body>", _MEASURE + "</body>", 1), encoding="utf-8")
    try:
        dom = chromium(tmp_path, probe.as_uri(), f"--window-size={width},900", "--dump-dom")
    finally:
        probe.unlink()
    found = re.search(r'<pre id="layout-report">(.*?)</pre>', dom, re.S)
    assert found, f"{page.name}: the layout probe did not run"
    return json.loads(html.unescape(found.group(1)))


def content_pages() -> list[Path]:
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    return sorted(p for p in HTML.glob("*.html") if p.name not in skip and not p.name.startswith("_"))


@needs_build
@needs_chromium
def test_nothing_is_wider_than_its_column_at_1280px(tmp_path: Path) -> None:
    pages = content_pages()
    assert len(pages) >= 8
    wide = {p.name: found for p in pages if (found := overflowing(tmp_path, p, 1280))}
    assert wide == {}


@needs_build
@needs_chromium
def test_display_math_fits_the_column_at_420px(tmp_path: Path) -> None:
    """On a phone's width too, no formula is cut at the column's edge.

    (Tables and code may scroll sideways there; formulas are written to fit.)
    """
    pages = [p for p in content_pages() if parse(p).math]
    assert pages
    cut = {p.name: found for p in pages if (found := [
        f for f in overflowing(tmp_path, p, 420) if f["tag"] == "mjx-container"
    ])}
    assert cut == {}
