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
``.. adamax-conventions-results::``
    The worked examples computed by the library under each framework's
    convention, with the call that reproduces it.
``.. adamax-worked-examples::``
    The spec's table of worked examples, from ``reference/examples.py``.
``.. adamax-api::``
    Autodoc entries for every name in ``adamax_cy.__all__``.
``.. optional-include:: FILE``
    Include ``FILE`` (Markdown or reST) when it exists; otherwise render the
    directive's content.
"""

from __future__ import annotations

import inspect
import os
import re
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any, Callable, NamedTuple, Sequence

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import adamax_cy
from adamax_cy.reference import DEFAULTS, WORKED_EXAMPLES, adamax_trace

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
        return str(d) if Fraction(d) == q else f"{d}…"
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
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source=self.get_source_info()[0]), container)
        return container.children


# --------------------------------------------------------------------------
# The worked examples, step by step


class Step(NamedTuple):
    name: str  # reST (math) for the quantity
    formula: str  # reST math for the formula
    value: Callable[[Any, dict[str, Any]], str]  # (trace, inputs) -> substituted text


def _steps(convention: str, eps: float, arithmetic: str) -> list[Step]:
    f = lambda x: fmt(x, arithmetic)  # noqa: E731
    b1, b2, lr = DEFAULTS["beta1"], DEFAULTS["beta2"], DEFAULTS["lr"]
    steps = [
        Step(
            r":math:`m_t`",
            r":math:`\beta_1 m_{t-1} + (1-\beta_1)\, g_t`",
            lambda tr, x: f"{f(b1)} · {f(x['m'])} + {f(1 - b1)} · {f(tr.g)} = **{f(tr.m_t)}**",
        ),
    ]
    if convention == "spec":
        steps += [
            Step(
                r":math:`u_t`",
                r":math:`\max(\beta_2 u_{t-1},\ |g_t|)`",
                lambda tr, x: f"max({f(b2)} · {f(x['u'])}, {f(abs(tr.g))}) = **{f(tr.u_t)}**",
            ),
            Step(
                r"denominator",
                r":math:`u_t + \epsilon`",
                lambda tr, x: f"{f(tr.u_t)} + {f(eps)} = **{f(tr.denominator)}**",
            ),
        ]
    else:
        steps += [
            Step(
                r":math:`u_t`",
                r":math:`\max(\beta_2 u_{t-1},\ |g_t| + \epsilon)`",
                lambda tr, x: f"max({f(b2)} · {f(x['u'])}, {f(abs(tr.g))} + {f(eps)}) = **{f(tr.u_t)}**",
            ),
            Step(r"denominator", r":math:`u_t`", lambda tr, x: f"**{f(tr.denominator)}**"),
        ]
    steps += [
        Step(
            r"bias correction",
            r":math:`1 - \beta_1^t`",
            lambda tr, x: f"1 − {f(b1)}^{x['t']} = **{f(tr.bias_correction)}**",
        ),
        Step(
            r":math:`\hat m_t`",
            r":math:`m_t / (1 - \beta_1^t)`",
            lambda tr, x: f"{f(tr.m_t)} / {f(tr.bias_correction)} = **{f(tr.m_hat)}**",
        ),
        Step(
            r"step size",
            r":math:`\alpha / \text{denominator}`",
            lambda tr, x: f"{f(lr)} / {f(tr.denominator)} = **{f(tr.step_size)}**",
        ),
        Step(
            r"update",
            r":math:`\text{step size} \cdot \hat m_t`",
            lambda tr, x: f"{f(tr.step_size)} · {f(tr.m_hat)} = **{f(tr.update)}**",
        ),
        Step(
            r":math:`\theta_t`",
            r":math:`\theta_{t-1} - \text{update}`",
            lambda tr, x: f"{f(x['param'])} − {f(tr.update)} = **{f(tr.param_t)}**",
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
        header = ["quantity", "formula"] + (
            [f"element {i}" for i in range(len(elements))] if several else ["with the numbers"]
        )
        rows = [[s.name, s.formula, *(s.value(tr, x) for tr, x in zip(traces, inputs))] for s in steps]
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
        where_eps=r"added to the norm: :math:`\alpha / (u_t + \epsilon)`",
        defaults=_SPEC_DEFAULTS,
        weight_decay="``weight_decay`` (L2, PyTorch's), or decoupled with ``decoupled_weight_decay=True``",
        maximize="``maximize=True``",
        options={"convention": "spec"},
        reproduce="adamax_step(param, grad, m, u, t)",
    ),
    Framework(
        name="Keras / TensorFlow ``Adamax``",
        where_eps=r"added to the norm: :math:`\alpha / (u_t + \epsilon)` (as the spec)",
        defaults="learning_rate = 0.001, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-07",
        weight_decay=r"``weight_decay`` (Keras 3), decoupled: :math:`\theta \leftarrow \theta - \alpha\lambda\theta` before the step",
        maximize="none (negate the loss)",
        options={"convention": "spec", "eps": 1e-7},
        reproduce=(
            'adamax_step(param, grad, m, u, t, lr=0.001, eps=1e-7, convention="spec", '
            "weight_decay=wd, decoupled_weight_decay=True)"
        ),
    ),
    Framework(
        name="PyTorch ``torch.optim.Adamax``",
        where_eps=r"inside the max: :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`, divide by :math:`u_t`",
        defaults="lr = 0.002, betas = (0.9, 0.999), eps = 1e-08",
        weight_decay=r"``weight_decay``, L2: :math:`g \leftarrow g + \lambda\theta` (after ``maximize``)",
        maximize="``maximize=True`` negates the gradient",
        options={"convention": "torch"},
        reproduce='adamax_step(param, grad, m, u, t, convention="torch", weight_decay=wd, maximize=flag)',
    ),
    Framework(
        name="Optax ``adamax`` / ``adamaxw``",
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
        where_eps=r"no ε: :math:`\theta_t = \theta_{t-1} - (\alpha / (1-\beta_1^t))\, m_t / u_t`",
        defaults="α = 0.002, β₁ = 0.9, β₂ = 0.999",
        weight_decay="none",
        maximize="none",
        options={"convention": "spec", "eps": 0.0},
        reproduce="adamax_step(param, grad, m, u, t, eps=0.0)",
    ),
    Framework(
        name="MXNet ``mxnet.optimizer.Adamax``",
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
        header = ["", "where ε goes", "defaults", "weight decay", "maximize", "reproduce with"]
        rows = [
            [fw.name, fw.where_eps, fw.defaults, fw.weight_decay, fw.maximize, f"``{fw.reproduce}``"]
            for fw in FRAMEWORKS
        ]
        return self.parse(rst_table(header, rows, widths="14 20 18 20 12 26"))


class ConventionsResultsDirective(AdamaxDirective):
    """The worked examples, computed by the compiled library under each convention."""

    def run(self) -> list[nodes.Node]:
        def show(v: Any) -> str:
            v = v.tolist() if hasattr(v, "tolist") else v
            return "[" + ", ".join(fmt(x) for x in v) + "]" if isinstance(v, list) else fmt(v)

        header = ["", "options"] + [f"example {ex.number}: θ_t; u_t" for ex in WORKED_EXAMPLES]
        rows = []
        for fw in FRAMEWORKS:
            row = [fw.name, "``" + ", ".join(f"{k}={v!r}" for k, v in fw.options.items()) + "``"]
            for ex in WORKED_EXAMPLES:
                param, _m, u = adamax_cy.adamax_step(ex.param, ex.grad, ex.m, ex.u, ex.t, **fw.options)
                row.append(f"{show(param)}; {show(u)}")
            rows.append(row)
        return self.parse(rst_table(header, rows))


# --------------------------------------------------------------------------
# The API: every public name


class ApiDirective(AdamaxDirective):
    """Autodoc entries for every name in ``adamax_cy.__all__``."""

    def run(self) -> list[nodes.Node]:
        lines: list[str] = []
        for name in adamax_cy.__all__:
            obj = getattr(adamax_cy, name)
            if inspect.ismodule(obj):
                lines += [f".. automodule:: {obj.__name__}", "   :members:", ""]
            elif inspect.isclass(obj):
                lines += [f".. autoclass:: adamax_cy.{name}", "   :members:", ""]
            elif callable(obj):
                lines += [f".. autofunction:: adamax_cy.{name}", ""]
            else:
                lines += [f".. autodata:: adamax_cy.{name}", ""]
        return self.parse(lines)


# --------------------------------------------------------------------------
# Pages written on other branches: include them when they exist


class OptionalIncludeDirective(AdamaxDirective):
    """Include a file when it exists, else render this directive's content."""

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        rel = self.arguments[0]
        _, path = self.env.relfn2path(rel, self.env.docname)
        if os.path.exists(path):
            self.env.note_dependency(path)
            lines = [f".. include:: {rel}"]
            if rel.endswith(".md"):
                lines.append("   :parser: myst_parser.sphinx_")
            return self.parse(lines + [""])
        return self.parse(list(self.content))


# --------------------------------------------------------------------------
# Compiled functions: the signature comes from the function (binding=True),
# not from the line Cython embeds at the top of the docstring.

_EMBEDDED_SIGNATURE = re.compile(r"^\s*\w+\(.*\)\s*(->.*)?$")


def strip_embedded_signature(app, what, name, obj, options, lines) -> None:
    if name.startswith("adamax_cy._kernel.") and lines and _EMBEDDED_SIGNATURE.match(lines[0]):
        del lines[0]
        while lines and not lines[0].strip():
            del lines[0]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("adamax-trace", TraceDirective)
    app.add_directive("adamax-worked-examples", WorkedExamplesDirective)
    app.add_directive("adamax-frameworks", FrameworksDirective)
    app.add_directive("adamax-conventions-results", ConventionsResultsDirective)
    app.add_directive("adamax-api", ApiDirective)
    app.add_directive("optional-include", OptionalIncludeDirective)
    app.connect("autodoc-process-docstring", strip_embedded_signature)
    return {"version": adamax_cy.__version__, "parallel_read_safe": True, "parallel_write_safe": True}
