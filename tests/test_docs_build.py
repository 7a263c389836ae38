"""The documentation builds with the docs extra alone, and names no missing file.

The build runs in a subprocess in which the packages the docs extra does not
bring (torch, pytest, the command line's and the benchmark's extras, other
frameworks) cannot be imported, as in an environment made with
``pip install ".[docs]"`` only. It must pass with warnings as errors (every
cross-reference resolved), document ``adamax_cy.torch`` and the pytest fixture
all the same, and show no private function.

Then, on the built pages: every link inside the site leads to a page and an
anchor that exist, and every file a page names in its text exists (a docs
page is linked, not named by its source file; a file of the repository exists
in the repository).

Needs Sphinx and the docs extra's packages; skipped with the reason otherwise.
"""

from __future__ import annotations

import html.parser
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"

DOCS_EXTRA = ("sphinx", "furo", "sphinx-copybutton", "numpydoc", "myst-parser", "sphinx-mathjax-offline")


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


missing = [name for name in DOCS_EXTRA if not _installed(name)]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"the docs extra is not installed (missing: {missing})")

#: Not in the docs extra: the build must not need any of them.
NOT_IN_THE_DOCS_EXTRA = (
    "torch", "pytest", "_pytest", "rich", "tqdm", "matplotlib", "mypy",
    "jax", "jaxlib", "optax", "keras", "tensorflow", "threadpoolctl",
)

# Run in the subprocess: hide those packages from every finder (as if they
# were not installed: find_spec gives None, import raises), then run Sphinx.
# Finders added later, such as Sphinx's mock of autodoc_mock_imports, still work.
_BUILD = """
import sys
BLOCKED = set({blocked!r})
class Hide:
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        return self.finder.find_spec(name, path, target)
    def __getattr__(self, name):
        return getattr(self.finder, name)
sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
assert not BLOCKED & set(sys.modules)
from sphinx.cmd.build import main
sys.exit(main(sys.argv[1:]))
"""


def sphinx(builder: str, out: Path) -> subprocess.CompletedProcess[str]:
    code = _BUILD.format(blocked=NOT_IN_THE_DOCS_EXTRA)
    command = [sys.executable, "-c", code, "-W", "--keep-going", "-q", "-E", "-b", builder, str(DOCS), str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "html"
    done = sphinx("html", out)
    assert done.returncode == 0, done.stderr[-5000:]
    return out


def test_html_builds_with_the_docs_extra_alone(built: Path) -> None:
    assert (built / "index.html").is_file()


def test_doctests_pass_with_the_docs_extra_alone(tmp_path: Path) -> None:
    done = sphinx("doctest", tmp_path / "doctest")
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]


def test_api_reference_is_complete_without_torch_or_pytest(built: Path) -> None:
    page = (built / "api.html").read_text(encoding="utf-8")
    for name in ("adamax_cy.torch.Adamax", "adamax_cy.torch.Adamax.step", "adamax_cy.testing.adamax_conformance",
                 "adamax_cy.testing.check_conformance", "adamax_cy.adamax_step"):
        assert f'id="{name}"' in page, name
    # The constructor's signature, not the mock's (*args, **kwargs).
    torch_adamax = page[page.index('id="adamax_cy.torch.Adamax"'):][:3000]
    assert "lr" in torch_adamax.partition("</dt>")[0] and "args" not in torch_adamax.partition("</dt>")[0]
    assert "_kernel" not in page
    private = re.findall(r'id="(adamax_cy\.(?:\w+\.)*_[a-z]\w*)"', page)
    assert private == []


# --------------------------------------------------------------------------
# Links and the files pages name


class _Page(html.parser.HTMLParser):
    """A page's ids, links, and the text it shows (code included)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag in ("script", "style"):
            self._skip += 1
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def pages(built: Path) -> dict[Path, _Page]:
    parsed = {}
    for path in built.rglob("*.html"):
        if "_static" in path.parts or "_sources" in path.parts:
            continue
        page = _Page()
        page.feed(path.read_text(encoding="utf-8"))
        parsed[path] = page
    return parsed


def test_every_link_inside_the_site_resolves(built: Path) -> None:
    parsed = pages(built)
    broken = []
    for path, page in parsed.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//") or link.startswith("mailto:"):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.exists():
                broken.append(f"{path.name}: {link}")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else set()
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{path.name}: {link} (no such anchor)")
    assert broken == []


#: A file name as a page would write it: a path, or a name with an extension of
#: the project's sources.
_FILE = re.compile(r"(?<![\w./:-])((?:[\w.-]+/)*[\w.-]+\.(?:py|pyi|pyx|pxd|pxi|md|rst|toml|cfg|txt|json|png|npz))\b")

#: Files the reader makes by following the docs (outputs of commands, their own).
READERS_FILES = {"adamax-vectors.json", "vectors.json", "results.json", "results.md", "bench.png", "conftest.py", "checkpoint.npz", "model.npz", "run.npz", "path.png"}


def named_files(text: str) -> set[str]:
    return {name for name in _FILE.findall(text) if not re.fullmatch(r"[\d.]+", name.rsplit(".", 1)[0])}


def test_no_page_names_a_file_that_is_not_there(built: Path) -> None:
    bad = []
    for path, page in pages(built).items():
        for name in sorted(named_files(" ".join(page.text))):
            if name in READERS_FILES or name.endswith(".html"):
                continue
            if name.startswith("docs/") or (name.endswith((".md", ".rst")) and (DOCS / name).exists()):
                bad.append(f"{path.name}: {name} is a page of these docs: link it instead")
            elif "/" in name and not (ROOT / name).exists():
                bad.append(f"{path.name}: {name} does not exist")
            elif "/" not in name and not any(ROOT.glob(f"**/{name}")):
                bad.append(f"{path.name}: {name} does not exist in the repository")
    assert bad == [], "\n".join(bad)


def test_the_file_name_check_catches_names() -> None:
    text = "see docs/performance.md and tests/test_keras_parity.py, or reference/examples.py; 0.25 µs"
    assert named_files(text) == {"docs/performance.md", "tests/test_keras_parity.py", "reference/examples.py"}
