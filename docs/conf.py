"""Sphinx configuration for the adamax_cy documentation.

Build: ``pip install ".[docs]"`` then
``sphinx-build -W --keep-going -b html docs docs/_build/html`` (and
``-b doctest`` for the examples). Everything is served from the build
directory itself, MathJax included, so the site reads offline.
"""

import importlib.util
import os
import sys

sys.path.insert(0, os.path.abspath("_ext"))


def _import_the_installed_package():
    """``python -m sphinx`` from the checkout's root puts the root first on
    sys.path, where an unbuilt source folder hides the installed package
    (and says so): leave the root out, as the test suite does."""
    try:
        import adamax_cy  # noqa: F401
    except ImportError as error:
        root = os.path.dirname(error.path or "")
        if error.name != "adamax_cy" or not root:
            raise
        kept = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
        if kept == sys.path:
            raise
        sys.path[:] = kept
        import adamax_cy  # noqa: F401, F811


_import_the_installed_package()

import adamax_cy  # noqa: E402

project = "adamax_cy"
author = "The adamax_cy developers"
copyright = "the adamax_cy developers"
version = release = adamax_cy.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_copybutton",
    "myst_parser",
    # MathJax 3 from a PyPI package, copied into _static/mathjax: no CDN.
    "sphinx-mathjax-offline",
    "adamax_docs",
]

# The defaults, read from their one definition: |lr|, |beta1|, |beta2|, |eps|.
rst_epilog = "\n".join(
    f".. |{name}| replace:: ``{value!r}``" for name, value in adamax_cy.DEFAULTS.items()
)

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# Markdown pages written elsewhere are included by the page that owns them.
exclude_patterns = ["_build", "conformance.md", "performance.md", "performance-results.md", "README.md"]

# Offline: the MathJax copy shipped with the docs (see sphinx-mathjax-offline).
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "furo"
html_title = f"adamax_cy {release}"
html_static_path = ["_static"]
html_css_files = ["adamax.css"]
html_show_sourcelink = False

# Signatures come from the functions (Cython's binding=True gives the compiled
# ones real signatures); the line Cython embeds atop a docstring is dropped.
autodoc_docstring_signature = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # types are stated in the numpydoc Parameters
# The docs extra brings neither torch nor pytest: where they are missing,
# adamax_cy.torch and the pytest fixture of adamax_cy.testing are documented
# from mocks, so the API reference is complete either way.
autodoc_mock_imports = [name for name in ("torch", "pytest") if importlib.util.find_spec(name) is None]
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True

# Docstring examples run under the doctest builder; they use the public names.
doctest_global_setup = """
import numpy as np
import adamax_cy
"""
doctest_test_doctest_blocks = "default"

# No intersphinx: it reads other projects' inventories over the network, and
# this build must work offline.

# Markdown pages from elsewhere may start at any heading level once included.
suppress_warnings = ["myst.header"]

# Every cross-reference must resolve. Names of other projects cannot (no
# intersphinx, offline), so they are listed; so are two targets in
# adamax_cy.testing's docstrings that are not public names.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(torch|numpy|fractions|os|timeit)\..*")]
nitpick_ignore = [("py:meth", "steps"), ("py:class", "UnsupportedCase")]
