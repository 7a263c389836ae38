"""``adamax-cy examples``: the specification's worked examples, kernel beside reference."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import _contract
from .._defaults import BETA1, BETA2, CONVENTIONS, EPS, LR
from ..api import adamax_step
from ..reference import WORKED_EXAMPLES, Trace, WorkedExample, adamax_trace
from .arguments import DTYPES
from .render import JSON_HELP, emit_json, print_table


@dataclass(frozen=True)
class ExampleResult:
    """One worked example through the kernel and through the reference.

    ``computed`` and ``reference`` hold ``(param, m, u)``, each a list over
    the example's elements; ``close_to_spec`` says, for each of those values,
    whether the kernel gives the spec's value to the places the spec shows.
    """

    example: WorkedExample
    convention: str
    dtype: str
    computed: tuple[list[float], list[float], list[float]]
    traces: list[Trace]  # the reference's intermediates, one per element
    close_to_spec: tuple[list[bool], list[bool], list[bool]]
    agrees_with_reference: bool

    @property
    def reference(self) -> tuple[list[float], list[float], list[float]]:
        return (
            [float(tr.param_t) for tr in self.traces],
            [float(tr.m_t) for tr in self.traces],
            [float(tr.u_t) for tr in self.traces],
        )

    @property
    def agrees_with_spec(self) -> bool:
        return all(all(flags) for flags in self.close_to_spec)

    @property
    def agrees(self) -> bool:
        return self.agrees_with_spec and self.agrees_with_reference


def as_list(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]


def run_example(example: WorkedExample, convention: str = "spec", dtype: str = "float64") -> ExampleResult:
    """Run one worked example through the compiled kernel and the reference.

    The kernel agrees when it gives the spec's values to the places the spec
    shows, and matches the reference (in the same arithmetic) under the
    arithmetic contract (:mod:`adamax_cy._contract`, the documentation's
    contract page).

    Parameters
    ----------
    example : WorkedExample
        One of :data:`adamax_cy.reference.WORKED_EXAMPLES`.
    convention : {"spec", "torch"}
        Where eps goes, for the kernel and the reference alike.
    dtype : {"float64", "float32"}
        The arrays' dtype, and the reference's arithmetic.

    Returns
    -------
    ExampleResult

    Examples
    --------
    >>> from adamax_cy.reference import WORKED_EXAMPLES
    >>> run_example(WORKED_EXAMPLES[0], dtype="float32").agrees
    True
    """
    param, grad, m, u = (
        np.asarray(as_list(x), dtype=dtype) for x in (example.param, example.grad, example.m, example.u)
    )
    new = adamax_step(param, grad, m, u, example.t, convention=convention)
    computed = (new[0].tolist(), new[1].tolist(), new[2].tolist())
    traces = [
        adamax_trace(*elements, example.t, convention=convention, arithmetic=dtype)
        for elements in zip(param.tolist(), grad.tolist(), m.tolist(), u.tolist())
    ]
    tolerance = 0.5 * 10.0**-example.places
    close = [
        [abs(c - e) <= tolerance for c, e in zip(got, as_list(want))]
        for got, want in zip(computed, example.expected)
    ]
    return ExampleResult(
        example, convention, dtype, computed, traces, (close[0], close[1], close[2]),
        _contract.first_breach(traces, (param, grad, m, u), new, example.t,
                               {"convention": convention}) is None,
    )


def fmt(x: float, dtype: str) -> str:
    """The shortest text that reads back as ``x`` in ``dtype``."""
    return str(np.float32(x)) if dtype == "float32" else repr(float(x))


_QUANTITIES = ("θ", "m", "u")


def print_examples(results: Sequence[ExampleResult]) -> None:
    convention, dtype = results[0].convention, results[0].dtype
    rows = []
    for res in results:
        ex = res.example
        param, grad, m, u = (as_list(x) for x in (ex.param, ex.grad, ex.m, ex.u))
        for i in range(len(param)):
            label = f"{ex.number}" + (f"[{i}]" if len(param) > 1 else "")
            before = (param[i], m[i], u[i])
            expected = [as_list(e)[i] for e in ex.expected]
            reference = res.reference
            for q in range(3):
                close = res.close_to_spec[q][i]
                rows.append(
                    [
                        (label, f"t={ex.t}", f"g={fmt(grad[i], dtype)}")[q],
                        _QUANTITIES[q],
                        fmt(before[q], dtype),
                        repr(expected[q]),
                        fmt(res.computed[q][i], dtype),
                        fmt(reference[q][i], dtype),
                        "yes" if close and res.agrees_with_reference else "NO",
                    ]
                )
    print_table(
        f"Worked examples: kernel beside reference ({convention} convention, {dtype})",
        ["example", "", "before", "spec", "kernel", "reference", "agrees"],
        rows,
        right=["before", "spec", "kernel", "reference"],
        caption=(
            "agrees: the kernel gives the spec's values to the places shown, and matches\n"
            "the reference: m and u bitwise, θ within 4 ulp(update) + 1 ulp(θ)."
        ),
        section_every=3,
    )


TRACE_FIELDS = (
    ("g", "g, after maximize and L2 decay"),
    ("param_decayed", "θ, after decoupled decay"),
    ("m_t", "m = β1·m + (1 − β1)·g"),
    ("u_t", "u = max(β2·u, |g|)"),
    ("denominator", "u + ε"),
    ("bias_correction", "1 − β1^t"),
    ("m_hat", "m̂ = m / (1 − β1^t)"),
    ("step_size", "lr / denominator"),
    ("update", "step_size · m̂"),
    ("param_t", "θ − update"),
)


def _trace_labels(convention: str) -> list[tuple[str, str]]:
    if convention == "spec":
        return list(TRACE_FIELDS)
    torch_labels = {"u_t": "u = max(β2·u, |g| + ε)", "denominator": "u"}
    return [(f, torch_labels.get(f, label)) for f, label in TRACE_FIELDS]


def print_trace(res: ExampleResult) -> None:
    ex = res.example
    for i, tr in enumerate(res.traces):
        label = f"{ex.number}" + (f"[{i}]" if len(res.traces) > 1 else "")
        print_table(
            f"Example {label}, every intermediate (reference, {res.dtype}): {ex.note}",
            ["intermediate", "formula", "value"],
            [
                [field, formula, fmt(getattr(tr, field), res.dtype)]
                for field, formula in _trace_labels(res.convention)
            ],
            right=["value"],
        )


def examples_document(results: Sequence[ExampleResult], trace: bool) -> dict[str, Any]:
    """The worked examples' results as a JSON-ready dict."""
    items = []
    for res in results:
        ex = res.example
        item: dict[str, Any] = {
            "number": ex.number,
            "note": ex.note,
            "inputs": {
                "param": as_list(ex.param),
                "grad": as_list(ex.grad),
                "m": as_list(ex.m),
                "u": as_list(ex.u),
                "t": ex.t,
            },
            "expected": dict(zip(("param", "m", "u"), map(as_list, ex.expected))),
            "places": ex.places,
            "computed": dict(zip(("param", "m", "u"), res.computed)),
            "reference": dict(zip(("param", "m", "u"), res.reference)),
            "agrees_with_spec": res.agrees_with_spec,
            "agrees_with_reference": res.agrees_with_reference,
            "agrees": res.agrees,
        }
        if trace:
            item["trace"] = [
                {field: float(getattr(tr, field)) for field, _ in TRACE_FIELDS} for tr in res.traces
            ]
        items.append(item)
    return {
        "convention": results[0].convention,
        "dtype": results[0].dtype,
        "hyperparameters": {"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS},
        "examples": items,
        "all_agree": all(res.agrees for res in results),
    }


HELP = "the spec's worked examples: kernel, reference, agreement"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``examples`` command's arguments to ``parser``."""
    parser.description = (
        "Run the specification's worked examples through the compiled kernel "
        "beside the reference; exit 1 if any disagrees."
    )
    parser.add_argument("--trace", action="store_true", help="show every intermediate of each step")
    parser.add_argument("--convention", choices=CONVENTIONS, default="spec",
                        help="where eps goes: 'spec' (Keras) or 'torch' (PyTorch) (default: spec)")
    parser.add_argument("--dtype", choices=DTYPES, default="float64",
                        help="arithmetic of the kernel and the reference (default: float64)")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def run(args: argparse.Namespace) -> int:
    """Run the ``examples`` command; 0 if every example agrees, 1 otherwise."""
    results = [run_example(ex, args.convention, args.dtype) for ex in WORKED_EXAMPLES]
    ok = all(res.agrees for res in results)
    if args.json:
        emit_json(examples_document(results, args.trace))
        return 0 if ok else 1
    print_examples(results)
    if args.trace:
        for res in results:
            print_trace(res)
    print(
        f"All {len(results)} worked examples agree."
        if ok
        else "Some worked examples DO NOT agree: "
        + ", ".join(str(r.example.number) for r in results if not r.agrees)
    )
    return 0 if ok else 1
