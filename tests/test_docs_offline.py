"""The built documentation works without network access.

Opens the built pages in headless Chromium with every outside host made
unreachable (a proxy on a closed loopback port, and a host resolver that
resolves nothing), and checks that the formulas were typeset by the bundled
MathJax and that the search page finds things. A control page that loads
MathJax from a CDN must come out untypeset, which shows the browser really
was offline.

Needs the HTML build (``sphinx-build -b html docs docs/_build/html``) and
Debian's ``chromium``; skipped with the reason when either is missing.
``ADAMAX_CY_DOCS_SCREENSHOT=path.png`` keeps the screenshot of the
algorithm page for a person to look at.
"""

from __future__ import annotations

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
