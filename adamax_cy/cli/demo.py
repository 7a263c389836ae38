"""``adamax-cy demo``: a short training run with :class:`adamax_cy.Adamax`."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _config
from .._defaults import LR
from .arguments import DTYPES, UsageError, non_negative_int, positive_float, positive_int
from .render import JSON_HELP, Progress, emit_json, print_table


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
        """Mean cross-entropy, accuracy and the gradients of the parameters.

        A run that diverges (a huge learning rate) gives a NaN loss, reported
        as such; NumPy's warnings about it would only repeat that.
        """
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            return self._loss_and_grads()

    def _loss_and_grads(self) -> tuple[float, float, list[np.ndarray]]:
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
        Show progress on standard error when it is a terminal.

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
    from .. import Adamax

    model = SoftmaxRegression.generate(size, samples, dtype, seed)
    optimizer = Adamax(model.params, lr=lr, num_threads=threads)
    losses, accuracies = [], []
    optimizer_seconds = 0.0
    start = time.perf_counter()
    with Progress(steps, "training", enabled=progress) as bar:
        for _ in range(steps):
            loss, accuracy, grads = model.loss_and_grads()
            losses.append(loss)
            accuracies.append(accuracy)
            tick = time.perf_counter()
            optimizer.step(grads)
            optimizer_seconds += time.perf_counter() - tick
            bar.advance(status=f"loss {loss:.4f}")
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


def print_demo(summary: dict[str, Any]) -> None:
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
    print_table(f"Adamax (lr={s['lr']}) on a softmax regression", ["", ""], rows)


HELP = "train a softmax regression with Adamax on generated data"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` command's arguments to ``parser``."""
    parser.description = (
        "Train a multinomial logistic regression with adamax_cy.Adamax on data "
        "generated from a hidden model (no downloads), and summarise."
    )
    parser.add_argument("--size", type=positive_int, default=1_000_000,
                        help="approximate number of parameters (default: 1_000_000)")
    parser.add_argument("--steps", type=positive_int, default=50, help="training steps (default: 50)")
    parser.add_argument("--samples", type=positive_int, default=512,
                        help="generated training samples (default: 512)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="dtype of the data and the parameters (default: float32)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads for the optimizer step (default: the OpenMP default)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")
    parser.add_argument("--lr", type=positive_float, default=LR, help=f"learning rate (default: {LR})")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def _check(args: argparse.Namespace) -> None:
    """The optimizer's own checks of ``--lr`` and ``--threads``, before any work."""
    from .. import Adamax

    for option, value in (("--lr", {"lr": args.lr}), ("--threads", {"num_threads": args.threads})):
        try:
            Adamax([np.zeros(1, args.dtype)], **value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"argument {option}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run the ``demo`` command; 0 when the loss stays finite."""
    _check(args)
    summary = run_demo(
        size=args.size,
        steps=args.steps,
        dtype=args.dtype,
        threads=args.threads,
        seed=args.seed,
        lr=args.lr,
        samples=args.samples,
    )
    if args.json:
        emit_json(summary)
    else:
        print_demo(summary)
    return 0 if math.isfinite(summary["loss_after"]) else 1
