"""The command line: ``adamax-cy`` and ``python -m adamax_cy``.

With no command it does the main job: the specification's worked examples
through the compiled kernel beside the reference, then a short training run
with :class:`adamax_cy.Adamax`. Commands:

``examples``  the worked examples (``--trace`` shows every intermediate)
``demo``      the training demonstration, with its options
``info``      the build: version, OpenMP, threads, compiler flags
``bench``     the benchmark (from :mod:`adamax_cy.bench`)
``conform``   conformance of anyone's Adamax to the specification

Tables and the progress bar use `rich <https://rich.readthedocs.io>`_ when it
is installed (``pip install "adamax_cy[cli]"``) and plain text otherwise.
Nothing here is imported by ``import adamax_cy``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, NoReturn, Sequence

import numpy as np

from . import _config
from ._defaults import BETA1, BETA2, CONVENTIONS, EPS, LR
from ._version import __version__
from .api import adamax_step
from .reference import WORKED_EXAMPLES, Trace, WorkedExample, adamax_trace

__all__ = ["main"]

DTYPES = ("float64", "float32")

#: Commands implemented in other modules: name -> (help, candidate modules).
#: Each module provides ``configure_parser(parser)`` and ``run(args) -> int``
#: and is imported only when its command is chosen, so a missing optional
#: dependency never breaks the rest of the command line.
PLUGINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bench": (
        "time the kernel against NumPy, torch and the memory floor",
        ("adamax_cy.bench",),
    ),
    "conform": (
        "check anyone's Adamax against the specification",
        ("adamax_cy._conform_cli", "adamax_cy.testing"),
    ),
}


class CommandUnavailable(Exception):
    """A command whose module (or one of its dependencies) is not installed."""


# --------------------------------------------------------------------------
# Output: rich when installed, plain text otherwise.


def _rich_console() -> Any:
    """A rich Console on the current ``sys.stdout``, or None without rich."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=sys.stdout, highlight=False)


def _print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[str] = (),
    caption: str | None = None,
    section_every: int = 0,
) -> None:
    """Print ``rows`` (cells may hold several lines) under ``columns``.

    ``right`` names the columns to align right (numbers); ``section_every``
    draws a line after every that many rows.
    """
    console = _rich_console()
    if console is not None:
        from rich import box
        from rich.table import Table

        # Title and caption as text, so that they wrap to the console, not the table.
        table = Table(
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            show_edge=False,
            collapse_padding=True,
            show_header=any(columns),
        )
        for name in columns:
            number = name in right
            table.add_column(name, justify="right" if number else "left", no_wrap=number)
        for k, row in enumerate(rows, 1):
            table.add_row(*row, end_section=bool(section_every) and k % section_every == 0)
        console.print(title, style="bold")
        console.print(table)
        if caption:
            console.print(caption, style="dim")
        console.print()
        return
    cells = [[cell.split("\n") for cell in row] for row in rows]
    widths = [
        max([len(name)] + [len(line) for row in cells for line in row[i]])
        for i, name in enumerate(columns)
    ]

    def line(parts: Sequence[str]) -> str:
        return "  ".join(
            p.rjust(w) if name in right else p.ljust(w)
            for p, w, name in zip(parts, widths, columns)
        ).rstrip()

    rule = line(["-" * w for w in widths])
    out = [title] + ([line(columns), rule] if any(columns) else [])
    for n, cell_lines in enumerate(cells, 1):
        for k in range(max(len(c) for c in cell_lines)):
            out.append(line([c[k] if k < len(c) else "" for c in cell_lines]))
        if section_every and n % section_every == 0 and n < len(cells):
            out.append(rule)
    if caption:
        out.append(caption)
    print("\n".join(out) + "\n")


class _Progress:
    """A progress bar over ``total`` steps on a terminal with rich; otherwise nothing."""

    def __init__(self, total: int, description: str, enabled: bool = True) -> None:
        self.total, self.description = total, description
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            console = _rich_console()
            if console is not None and console.is_terminal:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )

                self._bar = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TextColumn("loss {task.fields[loss]}"),
                    console=console,
                    transient=True,
                )

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, loss="...")
        return self

    def advance(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, loss=f"{loss:.4f}")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _emit_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, allow_nan=True)
    sys.stdout.write("\n")


# --------------------------------------------------------------------------
# The worked examples.


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


def _as_list(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]


def run_example(example: WorkedExample, convention: str = "spec", dtype: str = "float64") -> ExampleResult:
    """Run one worked example through the compiled kernel and the reference.

    The kernel agrees when it gives the spec's values to the places the spec
    shows, and matches the reference (in the same arithmetic) under the
    arithmetic contract: ``m`` and ``u`` bitwise, the parameter within
    ``4 ulp(update) + 1 ulp(param)``.

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
        np.asarray(_as_list(x), dtype=dtype) for x in (example.param, example.grad, example.m, example.u)
    )
    new = adamax_step(param, grad, m, u, example.t, convention=convention)
    computed = (new[0].tolist(), new[1].tolist(), new[2].tolist())
    traces = [
        adamax_trace(*elements, example.t, convention=convention, arithmetic=dtype)
        for elements in zip(param.tolist(), grad.tolist(), m.tolist(), u.tolist())
    ]
    tolerance = 0.5 * 10.0**-example.places
    close = [
        [abs(c - e) <= tolerance for c, e in zip(got, _as_list(want))]
        for got, want in zip(computed, example.expected)
    ]

    def ulp(x: float | Fraction) -> float:
        return float(np.spacing(np.abs(np.asarray(float(x), dtype=dtype))))

    agrees_with_reference = (
        computed[1] == [tr.m_t for tr in traces]
        and computed[2] == [tr.u_t for tr in traces]
        and all(
            abs(c - tr.param_t) <= 4 * ulp(tr.update) + ulp(tr.param_t)
            for c, tr in zip(computed[0], traces)
        )
    )
    return ExampleResult(
        example, convention, dtype, computed, traces, (close[0], close[1], close[2]), agrees_with_reference
    )


def _fmt(x: float, dtype: str) -> str:
    """The shortest text that reads back as ``x`` in ``dtype``."""
    return str(np.float32(x)) if dtype == "float32" else repr(float(x))


_QUANTITIES = ("θ", "m", "u")


def _print_examples(results: Sequence[ExampleResult]) -> None:
    convention, dtype = results[0].convention, results[0].dtype
    rows = []
    for res in results:
        ex = res.example
        param, grad, m, u = (_as_list(x) for x in (ex.param, ex.grad, ex.m, ex.u))
        for i in range(len(param)):
            label = f"{ex.number}" + (f"[{i}]" if len(param) > 1 else "")
            before = (param[i], m[i], u[i])
            expected = [_as_list(e)[i] for e in ex.expected]
            reference = res.reference
            for q in range(3):
                close = res.close_to_spec[q][i]
                rows.append(
                    [
                        (label, f"t={ex.t}", f"g={_fmt(grad[i], dtype)}")[q],
                        _QUANTITIES[q],
                        _fmt(before[q], dtype),
                        repr(expected[q]),
                        _fmt(res.computed[q][i], dtype),
                        _fmt(reference[q][i], dtype),
                        "yes" if close and res.agrees_with_reference else "NO",
                    ]
                )
    _print_table(
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


_TRACE_FIELDS = (
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
        return list(_TRACE_FIELDS)
    torch_labels = {"u_t": "u = max(β2·u, |g| + ε)", "denominator": "u"}
    return [(f, torch_labels.get(f, label)) for f, label in _TRACE_FIELDS]


def _print_trace(res: ExampleResult) -> None:
    ex = res.example
    for i, tr in enumerate(res.traces):
        label = f"{ex.number}" + (f"[{i}]" if len(res.traces) > 1 else "")
        _print_table(
            f"Example {label}, every intermediate (reference, {res.dtype}): {ex.note}",
            ["intermediate", "formula", "value"],
            [
                [field, formula, _fmt(getattr(tr, field), res.dtype)]
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
                "param": _as_list(ex.param),
                "grad": _as_list(ex.grad),
                "m": _as_list(ex.m),
                "u": _as_list(ex.u),
                "t": ex.t,
            },
            "expected": dict(zip(("param", "m", "u"), map(_as_list, ex.expected))),
            "places": ex.places,
            "computed": dict(zip(("param", "m", "u"), res.computed)),
            "reference": dict(zip(("param", "m", "u"), res.reference)),
            "agrees_with_spec": res.agrees_with_spec,
            "agrees_with_reference": res.agrees_with_reference,
            "agrees": res.agrees,
        }
        if trace:
            item["trace"] = [
                {field: float(getattr(tr, field)) for field, _ in _TRACE_FIELDS} for tr in res.traces
            ]
        items.append(item)
    return {
        "convention": results[0].convention,
        "dtype": results[0].dtype,
        "hyperparameters": {"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS},
        "examples": items,
        "all_agree": all(res.agrees for res in results),
    }


def cmd_examples(args: argparse.Namespace) -> int:
    results = [run_example(ex, args.convention, args.dtype) for ex in WORKED_EXAMPLES]
    ok = all(res.agrees for res in results)
    if args.json:
        _emit_json(examples_document(results, args.trace))
        return 0 if ok else 1
    _print_examples(results)
    if args.trace:
        for res in results:
            _print_trace(res)
    print(
        f"All {len(results)} worked examples agree."
        if ok
        else "Some worked examples DO NOT agree: "
        + ", ".join(str(r.example.number) for r in results if not r.agrees)
    )
    return 0 if ok else 1


# --------------------------------------------------------------------------
# The training demonstration.


@dataclass
class SoftmaxRegression:
    """Multinomial logistic regression on data generated from a hidden model."""

    x: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    @classmethod
    def generate(cls, size: int, samples: int, dtype: str, seed: int) -> SoftmaxRegression:
        """About ``size`` parameters: as many features as classes."""
        features = classes = max(2, math.isqrt(size))
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((samples, features), dtype=np.dtype(dtype).type)
        hidden = rng.standard_normal((features, classes), dtype=np.dtype(dtype).type)
        labels = np.argmax(x @ hidden, axis=1)
        weights = np.zeros((features, classes), dtype=dtype)
        bias = np.zeros(classes, dtype=dtype)
        return cls(x, labels, weights, bias)

    @property
    def params(self) -> list[np.ndarray]:
        return [self.weights, self.bias]

    @property
    def size(self) -> int:
        return self.weights.size + self.bias.size

    def loss_and_grads(self) -> tuple[float, float, list[np.ndarray]]:
        """Mean cross-entropy, accuracy and the gradients of the parameters."""
        n = len(self.labels)
        rows = np.arange(n)
        logits = self.x @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        accuracy = float(np.mean(np.argmax(logits, axis=1) == self.labels))
        exp = np.exp(logits)
        total = exp.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - logits[rows, self.labels]))
        probs = exp / total
        probs[rows, self.labels] -= 1
        probs /= n
        return loss, accuracy, [self.x.T @ probs, probs.sum(axis=0)]


def run_demo(
    size: int = 1_000_000,
    steps: int = 50,
    dtype: str = "float32",
    threads: int | None = None,
    seed: int = 0,
    lr: float = LR,
    samples: int = 512,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a softmax regression with :class:`adamax_cy.Adamax`; return a summary.

    The data are generated from a hidden random model (no downloads): standard
    normal inputs, each labelled with the class its hidden logits rank first.
    The model starts from zero weights, so the first loss is ``log(classes)``.

    Parameters
    ----------
    size : int
        About this many parameters: ``isqrt(size)`` features and as many classes.
    steps : int
        Full-batch training steps.
    dtype : {"float32", "float64"}
        Dtype of the data and the parameters.
    threads : int or None
        ``num_threads`` of the optimizer (None: the OpenMP default).
    seed : int
        Seed of the generated data.
    lr : float
        Learning rate.
    samples : int
        Number of generated samples.
    progress : bool
        Show a progress bar (on a terminal, with rich installed).

    Returns
    -------
    dict
        Sizes, loss and accuracy before and after, seconds, steps per second,
        milliseconds per optimizer step and the threads the kernel used.

    Examples
    --------
    >>> summary = run_demo(size=100, steps=20, samples=32, progress=False)
    >>> summary["parameters"], summary["loss_after"] < summary["loss_before"]
    (110, True)
    """
    from . import Adamax

    model = SoftmaxRegression.generate(size, samples, dtype, seed)
    optimizer = Adamax(model.params, lr=lr, num_threads=threads)
    losses, accuracies = [], []
    optimizer_seconds = 0.0
    start = time.perf_counter()
    with _Progress(steps, "training", enabled=progress) as bar:
        for _ in range(steps):
            loss, accuracy, grads = model.loss_and_grads()
            losses.append(loss)
            accuracies.append(accuracy)
            tick = time.perf_counter()
            optimizer.step(grads)
            optimizer_seconds += time.perf_counter() - tick
            bar.advance(loss)
    seconds = time.perf_counter() - start
    final_loss, final_accuracy, _ = model.loss_and_grads()
    info = _config.config()
    return {
        "model": "softmax regression",
        "parameters": model.size,
        "features": model.weights.shape[0],
        "classes": model.weights.shape[1],
        "samples": samples,
        "dtype": dtype,
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "loss_before": losses[0] if losses else final_loss,
        "loss_after": final_loss,
        "accuracy_before": accuracies[0] if accuracies else final_accuracy,
        "accuracy_after": final_accuracy,
        "seconds": seconds,
        "steps_per_second": steps / seconds if seconds > 0 else math.inf,
        "optimizer_ms_per_step": 1e3 * optimizer_seconds / steps if steps else 0.0,
        "num_threads": threads,
        "threads": _threads_used(model.size, threads, info),
        "openmp": info["openmp"],
    }


def _threads_used(size: int, num_threads: int | None, info: dict[str, Any]) -> int:
    """How many threads the kernel uses for a step over ``size`` elements."""
    if not info["openmp"] or size < info["serial_threshold"]:
        return 1
    return num_threads or info["default_threads"]


def _print_demo(summary: dict[str, Any]) -> None:
    s = summary
    rows = [
        ["model", f"{s['model']}: {s['features']:,} features × {s['classes']:,} classes"],
        ["parameters", f"{s['parameters']:,} ({s['dtype']})"],
        ["data", f"{s['samples']:,} generated samples (seed {s['seed']})"],
        ["loss", f"{s['loss_before']:.4f} → {s['loss_after']:.4f}"],
        ["accuracy", f"{s['accuracy_before']:.1%} → {s['accuracy_after']:.1%}"],
        ["steps", f"{s['steps']} in {s['seconds']:.2f} s: {s['steps_per_second']:.1f} steps/s"],
        [
            "optimizer step",
            f"{s['optimizer_ms_per_step']:.3f} ms/step "
            f"({s['optimizer_ms_per_step'] * s['steps'] / 1e3 / s['seconds']:.1%} of the time)"
            if s["seconds"] > 0
            else "-",
        ],
        ["threads", f"{s['threads']}" + ("" if s["openmp"] else " (built without OpenMP)")],
    ]
    _print_table(f"Adamax (lr={s['lr']}) on a softmax regression", ["", ""], rows)


def cmd_demo(args: argparse.Namespace) -> int:
    summary = run_demo(
        size=args.size,
        steps=args.steps,
        dtype=args.dtype,
        threads=args.threads,
        seed=args.seed,
        lr=args.lr,
        samples=args.samples,
        progress=not args.json,
    )
    if args.json:
        _emit_json(summary)
    else:
        _print_demo(summary)
    return 0 if math.isfinite(summary["loss_after"]) else 1


# --------------------------------------------------------------------------
# info, the default job, and the commands of other modules.


def cmd_info(args: argparse.Namespace) -> int:
    info = _config.show_config(as_dict=True)
    assert info is not None
    if args.json:
        _emit_json(info)
    else:
        _print_table(
            f"adamax_cy {info['version']}", ["", ""], [[k, str(v)] for k, v in info.items()]
        )
    return 0


def cmd_default(args: argparse.Namespace) -> int:
    parser = build_parser()
    status = cmd_examples(parser.parse_args(["examples"]))
    print()
    cmd_demo(parser.parse_args(["demo"]))
    return status


def load_plugin(command: str) -> Any:
    """Import the module that implements ``command``, or raise CommandUnavailable."""
    _help, candidates = PLUGINS[command]
    for name in candidates:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not in this installation; try the next candidate
            raise CommandUnavailable(
                f"the '{command}' command needs {exc.name!r}, which is not installed"
            ) from None
        except ImportError as exc:
            raise CommandUnavailable(f"the '{command}' command cannot be loaded: {exc}") from None
        if callable(getattr(module, "configure_parser", None)) and callable(
            getattr(module, "run", None)
        ):
            return module
    raise CommandUnavailable(f"the '{command}' command is not available in this version of adamax_cy")


# --------------------------------------------------------------------------
# Argument parsing.


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as a single line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low, with a one-line error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def build_parser(command: str | None = None, prog: str = "adamax-cy") -> argparse.ArgumentParser:
    """The argument parser; the module of ``command`` is imported if it is a plugin."""
    parser = _Parser(
        prog=prog,
        description=(
            "The Adamax optimizer step, compiled with Cython. Without a command: the "
            "specification's worked examples through the compiled kernel, then a short "
            "training demonstration."
        ),
    )
    parser.add_argument("--version", action="version", version=f"adamax_cy {__version__}")
    parser.set_defaults(func=cmd_default)
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "examples",
        help="the spec's worked examples: kernel, reference, agreement",
        description="Run the specification's worked examples through the compiled kernel "
        "beside the reference; exit 1 if any disagrees.",
    )
    p.add_argument("--trace", action="store_true", help="show every intermediate of each step")
    p.add_argument("--convention", choices=CONVENTIONS, default="spec",
                   help="where eps goes: 'spec' (Keras) or 'torch' (PyTorch) (default: spec)")
    p.add_argument("--dtype", choices=DTYPES, default="float64",
                   help="arithmetic of the kernel and the reference (default: float64)")
    _add_json(p)
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser(
        "demo",
        help="train a softmax regression with Adamax on generated data",
        description="Train a multinomial logistic regression with adamax_cy.Adamax on data "
        "generated from a hidden model (no downloads), and summarise.",
    )
    p.add_argument("--size", type=_positive_int, default=1_000_000,
                   help="approximate number of parameters (default: 1_000_000)")
    p.add_argument("--steps", type=_positive_int, default=50, help="training steps (default: 50)")
    p.add_argument("--samples", type=_positive_int, default=512,
                   help="generated training samples (default: 512)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="dtype of the data and the parameters (default: float32)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for the optimizer step (default: the OpenMP default)")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--lr", type=_positive_float, default=LR, help=f"learning rate (default: {LR})")
    _add_json(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "info",
        help="the build: version, OpenMP, threads, compiler flags",
        description="Show how this copy of adamax_cy was built and what it will use at run time.",
    )
    _add_json(p)
    p.set_defaults(func=cmd_info)

    for name, (help_text, _modules) in PLUGINS.items():
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name == command:
            module = load_plugin(name)
            module.configure_parser(p)
            p.set_defaults(func=module.run)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _default_prog() -> str:
    return "python -m adamax_cy" if os.path.basename(sys.argv[0]) == "__main__.py" else "adamax-cy"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments, without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success; 1 when a check fails (a worked example disagrees);
        2 for bad arguments or a command that is not installed.

    Examples
    --------
    >>> main(["info", "--json"])  # doctest: +ELLIPSIS
    {
      "version": ...
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = _default_prog()
    command = _command_of(argv)
    try:
        parser = build_parser(command, prog)
    except CommandUnavailable as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return int(func(args))
    except SystemExit as exc:  # argparse: --help, --version and bad arguments
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: error: not enough memory (try a smaller size)", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``adamax-cy info | head``): silence the
        # interpreter's final flush of stdout, as the Python docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1

