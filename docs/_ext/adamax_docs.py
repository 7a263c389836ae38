"""Sphinx directives that compute the documentation's numbers at build time.

Every number on the algorithm and conventions pages comes from here: the
reference's trace (``adamax_cy.reference.adamax_trace``) for the step-by-step
tables, and the compiled library (``adamax_cy.adamax_step``) for the results
under each framework's convention. Nothing is copied by hand, so the pages
cannot drift from the code.

Directives
----------
``.. adamax-trace:: N``
    The spec's worked example ``N``, every intermediate, one column per
    element. Options: ``:arithmetic:`` (float64, float32 or exact),
    ``:convention:``, ``:eps:``.
``.. adamax-frameworks::``
    The side-by-side table of conventions (one row per framework).
``.. adamax-conventions-results:: N``
    Worked example ``N`` computed by the library under each framework's
    convention.
``.. adamax-frameworks-reproduce::``
    The call that reproduces each framework, with its own defaults.
``.. adamax-worked-examples::``
    The spec's table of worked examples, from ``reference/examples.py``.
``.. adamax-api:: [MODULE]``
    Autodoc entries for every name in ``MODULE.__all__`` (``adamax_cy`` by
    default). Options: ``:title:`` (a section with the module's docstring).
    The module is imported with ``autodoc_mock_imports`` mocked, so that
    ``adamax_cy.torch`` and the pytest fixture of ``adamax_cy.testing`` are
    documented where torch or pytest is not installed.
``.. optional-include:: FILE``
    Include ``FILE`` (Markdown or reST) when it exists; otherwise render the
    directive's content. ``:skip-title:`` drops the file's top heading.
"""

from __future__ import annotations

import inspect
import os
import sys
from decimal import Decimal, localcontext
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Callable, NamedTuple, Sequence

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import adamax_cy
import adamax_cy.api
from adamax_cy.reference import adamax as reference_adamax
from adamax_cy.reference import examples as reference_examples
from adamax_cy.reference import DEFAULTS, WORKED_EXAMPLES, adamax_trace

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------
# Formatting


def fmt(x: Any, arithmetic: str = "float64") -> str:
    """A number as the reader should see it.

    Floats: the shortest repr that round-trips (in float32 for the float32
    arithmetic). Exact results: 30 significant digits, marked ``…`` when
    the decimal expansion goes on.
    """
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    if arithmetic == "exact" or isinstance(x, Fraction):
        q = Fraction(x)
        with localcontext() as ctx:
            ctx.prec = 30
            d = Decimal(q.numerator) / Decimal(q.denominator)
        return f"{d:f}" if Fraction(d) == q else f"{d:f}…"
    if arithmetic == "float32":
        import numpy as np

        return str(np.float32(x))
    return repr(float(x))


def as_list(value: Any) -> list[float]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def rst_table(header: Sequence[str], rows: Sequence[Sequence[str]], widths: str = "auto") -> list[str]:
    """A ``list-table`` as reST lines."""
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        first, *rest = row
        lines.append(f"   * - {first}")
        lines.extend(f"     - {cell}" for cell in rest)
    lines.append("")
    return lines


class AdamaxDirective(SphinxDirective):
    """Shared helper: parse generated reST (with titles) into nodes."""

    def parse(self, lines: list[str]) -> list[nodes.Node]:
        # The output depends on this file and on the code it runs: rebuild the
        # page when either changes.
        for module in (__file__, reference_examples.__file__, reference_adamax.__file__, adamax_cy.api.__file__):
            self.env.note_dependency(os.path.abspath(module))
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source=self.get_source_info()[0]), container)
        return container.children


# --------------------------------------------------------------------------
# The worked examples, step by step


class Step(NamedTuple):
    name: str  # reST for the quantity
    formula: str  # reST math for the formula
    operands: Callable[[Any, dict[str, Any]], str]  # (trace, inputs) -> the formula with numbers
    field: str  # the Trace field that holds the result


def _steps(convention: str, eps: float, arithmetic: str) -> list[Step]:
    f = lambda x: fmt(x, arithmetic)  # noqa: E731
    b1, b2, lr = DEFAULTS["beta1"], DEFAULTS["beta2"], DEFAULTS["lr"]
    steps = [
        Step(
            r":math:`m_t`",
            r":math:`\beta_1 m_{t-1} + (1-\beta_1)\, g_t`",
            lambda tr, x: f"{f(b1)} · {f(x['m'])} + {f(1 - b1)} · {f(tr.g)}",
            "m_t",
        ),
    ]
    if convention == "spec":
        steps += [
            Step(
                r":math:`u_t`",
                r":math:`\max(\beta_2 u_{t-1},\ |g_t|)`",
                lambda tr, x: f"max({f(b2)} · {f(x['u'])}, {f(abs(tr.g))})",
                "u_t",
            ),
            Step(
                "denominator",
                r":math:`u_t + \epsilon`",
                lambda tr, x: f"{f(tr.u_t)} + {f(eps)}",
                "denominator",
            ),
        ]
    else:
        steps += [
            Step(
                r":math:`u_t`",
                r":math:`\max(\beta_2 u_{t-1},\ |g_t| + \epsilon)`",
                lambda tr, x: f"max({f(b2)} · {f(x['u'])}, {f(abs(tr.g))} + {f(eps)})",
                "u_t",
            ),
            Step("denominator", r":math:`u_t`", lambda tr, x: f(tr.u_t), "denominator"),
        ]
    steps += [
        Step(
            "bias correction",
            r":math:`1 - \beta_1^t`",
            lambda tr, x: f"1 − {f(b1)}^{x['t']}",
            "bias_correction",
        ),
        Step(
            r":math:`\hat m_t`",
            r":math:`m_t / (1 - \beta_1^t)`",
            lambda tr, x: f"{f(tr.m_t)} / {f(tr.bias_correction)}",
            "m_hat",
        ),
        Step(
            "step size",
            r":math:`\alpha / \text{denominator}`",
            lambda tr, x: f"{f(lr)} / {f(tr.denominator)}",
            "step_size",
        ),
        Step(
            "update",
            r":math:`\text{step size} \cdot \hat m_t`",
            lambda tr, x: f"{f(tr.step_size)} · {f(tr.m_hat)}",
            "update",
        ),
        Step(
            r":math:`\theta_t`",
            r":math:`\theta_{t-1} - \text{update}`",
            lambda tr, x: f"{f(tr.param_decayed)} − {f(tr.update)}",
            "param_t",
        ),
    ]
    return steps


def _example(number: int):
    for ex in WORKED_EXAMPLES:
        if ex.number == number:
            return ex
    raise ValueError(f"no worked example number {number}")


class TraceDirective(AdamaxDirective):
    """One worked example, every intermediate, from the reference's trace."""

    required_arguments = 1
    option_spec = {
        "arithmetic": lambda a: directives.choice(a, ("float64", "float32", "exact")),
        "convention": lambda a: directives.choice(a, ("spec", "torch")),
        "eps": float,
    }

    def run(self) -> list[nodes.Node]:
        ex = _example(int(self.arguments[0]))
        arithmetic = self.options.get("arithmetic", "float64")
        convention = self.options.get("convention", "spec")
        eps = self.options.get("eps", DEFAULTS["eps"])
        elements = list(zip(*(as_list(v) for v in (ex.param, ex.grad, ex.m, ex.u))))
        traces = [
            adamax_trace(p, g, m, u, ex.t, eps=eps, convention=convention, arithmetic=arithmetic)
            for p, g, m, u in elements
        ]
        inputs = [dict(param=p, grad=g, m=m, u=u, t=ex.t) for p, g, m, u in elements]
        steps = _steps(convention, eps, arithmetic)
        several = len(elements) > 1
        # One element: the formula and its operands. Several: the results
        # only, one column per element (the formulas are those of one element).
        header = ["quantity"] + (
            [f"element {i}" for i in range(len(elements))] if several else ["formula", "with the numbers"]
        )
        def cell(step: Step, tr: Any, x: dict[str, Any]) -> str:
            result = fmt(getattr(tr, step.field), arithmetic)
            if several:  # the operands would make the table too wide: results only
                return result
            return f"{step.operands(tr, x)} = **{result}**"

        rows = [
            [s.name, *([] if several else [s.formula]), *(cell(s, tr, x) for tr, x in zip(traces, inputs))]
            for s in steps
        ]
        given = ", ".join(
            f"{name} = {fmt(getattr(ex, key)) if not several else [fmt(v) for v in getattr(ex, key)]}"
            for name, key in (("θ", "param"), ("g", "grad"), ("m", "m"), ("u", "u"))
        ).replace("'", "")
        lines = [
            f"Inputs: {given}, t = {ex.t}; α = {fmt(DEFAULTS['lr'])}, β₁ = {fmt(DEFAULTS['beta1'])}, "
            f"β₂ = {fmt(DEFAULTS['beta2'])}, ε = {fmt(eps)}; ``convention={convention!r}``, "
            f"``arithmetic={arithmetic!r}``.",
            "",
            *rst_table(header, rows),
        ]
        return self.parse(lines)


class WorkedExamplesDirective(AdamaxDirective):
    """The spec's table of worked examples, from ``reference/examples.py``."""

    def run(self) -> list[nodes.Node]:
        def show(v: Any) -> str:
            return "[" + ", ".join(fmt(x) for x in v) + "]" if isinstance(v, (list, tuple)) else fmt(v)

        rows = [
            [
                str(ex.number),
                show(ex.param),
                show(ex.grad),
                show(ex.m),
                show(ex.u),
                str(ex.t),
                "(" + ", ".join(show(v) for v in ex.expected) + ")",
                str(ex.places),
                ex.note,
            ]
            for ex in WORKED_EXAMPLES
        ]
        header = ["#", "θ", "g", "m", "u", "t", "expected (θ, m, u)", "decimal places", "what it shows"]
        return self.parse(rst_table(header, rows))


# --------------------------------------------------------------------------
# Conventions of other frameworks: one record per framework, read by both tables


class Framework(NamedTuple):
    name: str
    short: str  # for the narrow tables
    where_eps: str
    defaults: str
    weight_decay: str
    maximize: str
    options: dict[str, Any]  # adamax_cy options that reproduce its formula
    reproduce: str  # the call, with the framework's own defaults


_SPEC_DEFAULTS = (
    f"α = {fmt(DEFAULTS['lr'])}, β₁ = {fmt(DEFAULTS['beta1'])}, "
    f"β₂ = {fmt(DEFAULTS['beta2'])}, ε = {fmt(DEFAULTS['eps'])}"
)

FRAMEWORKS: tuple[Framework, ...] = (
    Framework(
        name="this spec (``adamax_cy``)",
        short="spec",
        where_eps=r"added to the norm: :math:`\alpha / (u_t + \epsilon)`",
        defaults=_SPEC_DEFAULTS,
        weight_decay="``weight_decay`` (L2, PyTorch's), or decoupled with ``decoupled_weight_decay=True``",
        maximize="``maximize=True``",
        options={"convention": "spec"},
        reproduce="adamax_step(param, grad, m, u, t)",
    ),
    Framework(
        name="Keras / TensorFlow ``Adamax``",
        short="Keras, TF",
        where_eps=r"added to the norm: :math:`\alpha / (u_t + \epsilon)` (as the spec)",
        defaults="learning_rate = 0.001, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-07",
        weight_decay=r"``weight_decay`` (Keras 3), decoupled: :math:`\theta \leftarrow \theta - \alpha\lambda\theta` before the step",
        maximize="none (negate the loss)",
        options={"convention": "spec", "eps": 1e-7},
        reproduce=(
            "adamax_step(param, grad, m, u, t, lr=float(np.float32(0.001)), eps=1e-7, "
            "weight_decay=wd, decoupled_weight_decay=True)"
        ),
    ),
    Framework(
        name="PyTorch ``torch.optim.Adamax``",
        short="PyTorch",
        where_eps=r"inside the max: :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`, divide by :math:`u_t`",
        defaults="lr = 0.002, betas = (0.9, 0.999), eps = 1e-08",
        weight_decay=r"``weight_decay``, L2: :math:`g \leftarrow g + \lambda\theta` (after ``maximize``)",
        maximize="``maximize=True`` negates the gradient",
        options={"convention": "torch"},
        reproduce='adamax_step(param, grad, m, u, t, convention="torch", weight_decay=wd, maximize=flag)',
    ),
    Framework(
        name="Optax ``adamax`` / ``adamaxw``",
        short="Optax",
        where_eps=r"inside the max, as PyTorch",
        defaults="learning_rate passed explicitly; b1 = 0.9, b2 = 0.999, eps = 1e-08",
        weight_decay=r"``adamax``: none; ``adamaxw``: ``weight_decay`` (default 1e-4), decoupled",
        maximize="none (negate the loss)",
        options={"convention": "torch"},
        reproduce=(
            'adamax_step(param, grad, m, u, t, lr=lr, convention="torch", '
            "weight_decay=wd, decoupled_weight_decay=True)"
        ),
    ),
    Framework(
        name="the paper (Algorithm 2)",
        short="paper",
        where_eps=r"no ε: :math:`\theta_t = \theta_{t-1} - (\alpha / (1-\beta_1^t))\, m_t / u_t`",
        defaults="α = 0.002, β₁ = 0.9, β₂ = 0.999",
        weight_decay="none",
        maximize="none",
        options={"convention": "spec", "eps": 0.0},
        reproduce="adamax_step(param, grad, m, u, t, eps=0.0)",
    ),
    Framework(
        name="MXNet ``mxnet.optimizer.Adamax``",
        short="MXNet",
        where_eps=r"no ε: ``weight -= lr / (1 - beta1**t) * m / u``",
        defaults="learning_rate = 0.002, beta1 = 0.9, beta2 = 0.999",
        weight_decay=r"``wd``, L2: ``grad = clip(grad * rescale_grad, clip_gradient) + wd * weight``",
        maximize="none",
        options={"convention": "spec", "eps": 0.0},
        reproduce=(
            "adamax_step(param, grad_rescaled_and_clipped, m, u, t, eps=0.0, weight_decay=wd)"
        ),
    ),
)


class FrameworksDirective(AdamaxDirective):
    """The side-by-side table of conventions."""

    def run(self) -> list[nodes.Node]:
        # Two tables of three columns: five columns of formulas and code do
        # not fit the page's column.
        formula = [[fw.name, fw.where_eps, fw.defaults] for fw in FRAMEWORKS]
        options = [[fw.name, fw.weight_decay, fw.maximize] for fw in FRAMEWORKS]
        return self.parse(
            rst_table(["", "where ε goes", "defaults"], formula, widths="22 46 32")
            + rst_table(["", "weight decay", "maximize"], options, widths="22 50 28")
        )


def _wrap_call(call: str, width: int = 68) -> str:
    """A call on as many lines as it needs, continuation lines aligned
    under the first argument (no line longer than ``width`` when the
    arguments allow it: the code block must fit the page's column)."""
    head, _, arguments = call.partition("(")
    indent = " " * (len(head) + 1)
    lines = [head + "("]
    for argument in arguments.split(", "):
        piece = argument if lines[-1].endswith("(") else " " + argument
        if len(lines[-1]) + len(piece) + 1 > width and not lines[-1].endswith("("):
            lines[-1] += ","
            lines.append(indent + argument)
        else:
            lines[-1] += ("," if not lines[-1].endswith("(") else "") + piece
    return "\n".join(lines)


class ReproduceDirective(AdamaxDirective):
    """For each framework, the call that reproduces it with its own defaults."""

    def run(self) -> list[nodes.Node]:
        lines = [".. code-block:: python", ""]
        for fw in FRAMEWORKS:
            call = _wrap_call(fw.reproduce)
            lines += [f"   # {fw.name.replace('``', '')}"]
            lines += [f"   {line}" for line in call.splitlines()]
        lines.append("")
        return self.parse(lines)


def _show(v: Any) -> str:
    v = v.tolist() if hasattr(v, "tolist") else v
    return "[" + ", ".join(fmt(x) for x in v) + "]" if isinstance(v, list) else fmt(v)


class ConventionsResultsDirective(AdamaxDirective):
    """One worked example, computed by the compiled library under each convention."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        import numpy as np

        ex = _example(int(self.arguments[0]))
        spec_param = None
        rows = []
        for fw in FRAMEWORKS:
            param, _m, u = adamax_cy.adamax_step(ex.param, ex.grad, ex.m, ex.u, ex.t, **fw.options)
            if spec_param is None:
                spec_param = param
            difference = np.atleast_1d(np.subtract(param, spec_param))
            shown = ", ".join(f"{d:.3g}" for d in difference)
            options = ", ".join(f"{k}={v!r}" for k, v in fw.options.items())
            rows.append([fw.short, f"``{options}``", _show(param), _show(u), shown])
        header = ["", "options", ":math:`\\theta_t`", ":math:`u_t`", ":math:`\\theta_t - \\theta_t^{\\text{spec}}`"]
        return self.parse(rst_table(header, rows))


# --------------------------------------------------------------------------
# The API: every public name


def _attribute_doc(package: str, name: str) -> str:
    """The ``#:`` comment documenting a public data name, wherever it is defined."""
    from sphinx.pycode import ModuleAnalyzer

    modules = (package, *sorted(m for m in sys.modules if m.startswith(package + ".")))
    for module in modules:
        try:
            docs = ModuleAnalyzer.for_module(module).find_attr_docs()
        except Exception:  # compiled or generated modules have no source to read
            continue
        if ("", name) in docs:
            return " ".join(line.strip() for line in docs["", name] if line.strip())
    return {"__version__": "The version of this installation."}.get(name, "")


class ApiDirective(AdamaxDirective):
    """Autodoc entries for every name in a module's ``__all__`` (``adamax_cy`` by default)."""

    optional_arguments = 1
    option_spec = {"title": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        import importlib

        from sphinx.ext.autodoc.mock import mock

        package = self.arguments[0] if self.arguments else "adamax_cy"
        with mock(self.config.autodoc_mock_imports):
            module = importlib.import_module(package)
        lines: list[str] = []
        if "title" in self.options:
            title = self.options["title"]
            lines += [title, "-" * len(title), ""]
        if self.arguments:  # a module of its own: its docstring first
            lines += [f".. automodule:: {package}", ""]
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                lines += [f".. automodule:: {obj.__name__}", "   :members:", ""]
            elif inspect.isclass(obj):
                lines += [f".. autoclass:: {package}.{name}", "   :members:", ""]
            elif callable(obj):
                lines += [f".. autofunction:: {package}.{name}", ""]
            else:
                value = repr(dict(obj) if isinstance(obj, MappingProxyType) else obj)
                lines += [f".. py:data:: {name}", f"   :module: {package}"]
                if len(value) <= 100:
                    lines += [f"   :value: {value}"]
                lines += ["", f"   {_attribute_doc(package, name)}", ""]
        return self.parse(lines)


# --------------------------------------------------------------------------
# Pages written on other branches: include them when they exist


class OptionalIncludeDirective(AdamaxDirective):
    """Include a file when it exists, else render this directive's content.

    ``:skip-title:`` leaves out a Markdown file's first line when it is a
    top-level heading, for a page whose own title stands for it.
    """

    required_arguments = 1
    has_content = True
    option_spec = {"skip-title": directives.flag}

    def run(self) -> list[nodes.Node]:
        rel = self.arguments[0]
        _, path = self.env.relfn2path(rel, self.env.docname)
        if os.path.exists(path):
            self.env.note_dependency(path)
            lines = [f".. include:: {rel}"]
            if rel.endswith(".md"):
                lines.append("   :parser: myst_parser.sphinx_")
                with open(path, encoding="utf-8") as f:
                    if "skip-title" in self.options and f.readline().startswith("# "):
                        lines.append("   :start-line: 1")
            return self.parse(lines + [""])
        return self.parse(list(self.content))


# --------------------------------------------------------------------------
# Docstrings of modules documented from mocks: their examples cannot run


def examples_of_mocked_modules_as_code(app, what, name, obj, options, lines) -> None:
    """Show the examples of a module that needs a mocked package as code.

    Where torch is mocked (not installed), the examples in
    ``adamax_cy.torch``'s docstrings are shown as they are but not run by the
    doctest builder: they would run against the mock.
    """
    mocked = set(app.config.autodoc_mock_imports)
    if not any(name.startswith(module) for module, package in _NEEDS.items() if package in mocked):
        return
    out: list[str] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if not stripped.startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        indent = lines[i][: len(lines[i]) - len(stripped)]
        out += [indent + ".. code-block:: pycon", ""]
        while i < len(lines) and lines[i].strip():
            out.append("   " + lines[i])
            i += 1
        out.append("")
    lines[:] = out


def signature_of_a_class_on_a_mock(app, what, name, obj, options, signature, return_annotation):
    """The constructor's own signature for a class whose base is mocked.

    A mocked base (``torch.optim.Optimizer`` where torch is not installed)
    brings a ``__new__(*args, **kwargs)`` that autodoc would show instead.
    """
    if what != "class" or signature != "(*args, **kwargs)" or "__init__" not in vars(obj):
        return None
    own = inspect.signature(obj.__init__)
    parameters = [p.replace(annotation=inspect.Parameter.empty) for p in list(own.parameters.values())[1:]]
    return str(own.replace(parameters=parameters, return_annotation=inspect.Signature.empty)), None


#: Modules whose examples need a package that ``autodoc_mock_imports`` may mock.
_NEEDS = {"adamax_cy.torch": "torch"}


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("adamax-trace", TraceDirective)
    app.add_directive("adamax-worked-examples", WorkedExamplesDirective)
    app.add_directive("adamax-frameworks", FrameworksDirective)
    app.add_directive("adamax-conventions-results", ConventionsResultsDirective)
    app.add_directive("adamax-frameworks-reproduce", ReproduceDirective)
    app.add_directive("adamax-api", ApiDirective)
    app.add_directive("optional-include", OptionalIncludeDirective)
    # After numpydoc (priority 500), which leaves the examples' lines as they are.
    app.connect("autodoc-process-docstring", examples_of_mocked_modules_as_code, priority=600)
    app.connect("autodoc-process-signature", signature_of_a_class_on_a_mock)
    return {"version": adamax_cy.__version__, "parallel_read_safe": True, "parallel_write_safe": True}
