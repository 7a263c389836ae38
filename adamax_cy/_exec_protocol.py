"""``conform --exec COMMAND``: conformance of an Adamax step in another process, any language.

The harness starts ``COMMAND`` once (split as a shell would, not run through
one) and speaks a line protocol with it: for every step of every case one
JSON object on the process's stdin, with the fields of a test vector but for
``expected`` and ``tolerance``::

    {"id": "17", "dtype": "float32", "convention": "spec", "t": 3,
     "lr": "0x1.0624dd2f1a9fcp-9", "beta1": ..., "beta2": ..., "eps": ...,
     "weight_decay": "0x0.0p+0", "decoupled_weight_decay": false, "maximize": false,
     "param": ["0x1.8p+0"], "grad": [...], "m": [...], "u": [...]}

and one JSON line back, ``{"id": "17", "param": [...], "m": [...], "u": [...]}``,
floats as ``float.hex()`` strings (``"inf"``, ``"-inf"``, ``"nan"``) or as
decimal JSON numbers. Hyperparameters are doubles: the implementation rounds
them to the dtype itself, and computes ``1 - beta1``, ``lr * weight_decay``
and ``1 - beta1**t`` in double before rounding them (the arithmetic contract).

The test vectors of the chosen dtype and convention run first (see
:mod:`adamax_cy._vectors`), then the harness's worked examples, edge cases
and generated cases. The verdicts are those of
:func:`adamax_cy.testing.check_conformance` on the answers: exit 0 when the implementation conforms, 1 when it does not (naming
the first wrong formula and the request to replay), 2 for a protocol error
(an answer that is not JSON, a wrong id, a list of the wrong length, the
process exited or did not answer within the timeout).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from . import _vectors, testing

__all__ = ["ExecImplementation", "ProtocolError", "configure_parser", "main", "request", "run"]

DEFAULT_TIMEOUT = 10.0
_OPTIONS = {"weight_decay": 0.0, "decoupled_weight_decay": False, "maximize": False}


class ProtocolError(Exception):
    """The process broke the protocol: what it did, in words."""


def _hex(x: Any) -> str:
    return float(x).hex()


def request(id: str, dtype: str, convention: str, t: int, hyper: Mapping[str, Any],
            param: np.ndarray, grad: np.ndarray, m: np.ndarray, u: np.ndarray) -> dict[str, Any]:
    """The JSON object sent for one step (arrays flattened)."""
    out: dict[str, Any] = {"id": id, "dtype": dtype, "convention": convention, "t": int(t)}
    for name in ("lr", "beta1", "beta2", "eps"):
        out[name] = _hex(hyper[name])
    out["weight_decay"] = _hex(hyper.get("weight_decay", 0.0))
    out["decoupled_weight_decay"] = bool(hyper.get("decoupled_weight_decay", False))
    out["maximize"] = bool(hyper.get("maximize", False))
    for name, a in (("param", param), ("grad", grad), ("m", m), ("u", u)):
        out[name] = [_hex(x) for x in np.ravel(a)]
    return out


def _number(x: Any) -> float:
    if isinstance(x, str):
        return float.fromhex(x)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    raise ValueError(f"{x!r} is not a number")


class ExecImplementation(testing.Adapter):
    """An :class:`adamax_cy.testing.Adapter` for a process speaking the line protocol.

    Parameters
    ----------
    command : str
        The command line, split with :func:`shlex.split`; started at the
        first step and kept running until :meth:`close`.
    timeout : float
        Seconds to wait for each answer.

    After a protocol error every later step raises it again, and
    :attr:`protocol_error` holds it.
    """

    def __init__(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.command = command
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("--exec needs a command")
        self.timeout = float(timeout)
        self.name = f"exec {command}"
        self.protocol_error: Optional[ProtocolError] = None
        self.last_request: Optional[str] = None
        self.requests = 0
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._stderr: Any = None
        self._buffer = b""

    # -------------------------------------------------------- the process

    def start(self) -> None:
        self._stderr = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=self._stderr)
        except OSError as err:
            raise self._fail(f"cannot start {self.command!r}: {err}") from None

    def close(self) -> None:
        """Close the process's stdin, give it a moment to exit, then kill it."""
        process, self._process = self._process, None
        if process is not None:
            try:
                if process.stdin:
                    process.stdin.close()
                process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> "ExecImplementation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read()[-1000:].decode("utf-8", "replace").strip()
        return f"; its stderr ends: {text}" if text else ""

    def _fail(self, message: str) -> ProtocolError:
        self.protocol_error = ProtocolError(message)
        return self.protocol_error

    def _exited(self) -> ProtocolError:
        assert self._process is not None
        try:
            status = self._process.wait(timeout=1)
            what = f"the process exited with status {status}"
        except subprocess.TimeoutExpired:
            what = "the process closed its stdout"
        return self._fail(f"{what} (request {self.requests}){self._stderr_tail()}")

    def _readline(self) -> bytes:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                raise self._fail(f"no answer within {self.timeout:g} s to request {self.requests}: "
                                 f"{self.last_request}")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._exited()
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def exchange(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request and read its answer, checking the protocol."""
        if self.protocol_error is not None:
            raise self.protocol_error
        if self._process is None:
            self.start()
        assert self._process is not None and self._process.stdin is not None
        self.requests += 1
        self.last_request = json.dumps(message)
        try:
            self._process.stdin.write(self.last_request.encode() + b"\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._exited() from None
        line = self._readline()
        try:
            answer = json.loads(line)
        except ValueError as err:
            raise self._fail(f"the answer to request {self.requests} is not JSON ({err}): "
                             f"{line[:200].decode('utf-8', 'replace')!r}") from None
        if not isinstance(answer, dict):
            raise self._fail(f"the answer to request {self.requests} is not a JSON object: {line[:200]!r}")
        if answer.get("id") != message["id"]:
            raise self._fail(f"the answer to request {message['id']!r} has id {answer.get('id')!r}")
        n = len(message["param"])
        for name in ("param", "m", "u"):
            values = answer.get(name)
            if not isinstance(values, list) or len(values) != n:
                got = f"{len(values)} values" if isinstance(values, list) else repr(values)
                raise self._fail(f"the answer to request {message['id']!r} gives {name} as {got}, "
                                 f"expected a list of {n}")
            try:
                answer[name] = [_number(x) for x in values]
            except ValueError as err:
                raise self._fail(f"the answer to request {message['id']!r}: {name}: {err}") from None
        return answer

    # --------------------------------------------------------- the adapter

    convention = "spec"

    def steps(self, case: testing.Case) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        dtype = str(case.dtype)
        hyper = {**_OPTIONS, **case.hyperparameters}
        param, m, u = case.param, case.m, case.u
        for k, grad in enumerate(case.grads):
            message = request(str(self.requests + 1), dtype, self.convention, case.t + k, hyper,
                              param, grad, m, u)
            answer = self.exchange(message)
            with np.errstate(over="ignore"):
                param, m, u = (np.array(answer[name], dtype=dtype).reshape(case.param.shape)
                               for name in ("param", "m", "u"))
            yield param, m, u


def check_vectors(implementation: ExecImplementation,
                  args: argparse.Namespace) -> tuple[int, Optional[dict[str, str]]]:
    """Run the test vectors that apply to these options; (vectors run, the first failure or None).

    The test vectors put every step number and the bias-correction window in
    front of the implementation deterministically, where generated cases
    reach them only by chance.

    Vectors of the chosen dtype and convention, with the options the run
    varies, and finite ones only with ``--finite-only``. None run when an
    option is held fixed (``--option``; the vectors use their own values) or
    with ``--no-vectors``.
    """
    if getattr(args, "option", None) or getattr(args, "no_vectors", False):
        return 0, None
    vectors = _vectors.applicable(_vectors.generate(), args.dtype, args.convention,
                                  getattr(args, "vary", []) or [], not getattr(args, "finite_only", False))
    count, wrong = _vectors.run_on(implementation, vectors)
    if wrong is not None:
        v = next(v for v in vectors if v["id"] == wrong["vector"])
        wrong["replay"] = json.dumps({k: v[k] for k in _vectors.INPUT_FIELDS})
    return count, wrong


def replay(mismatch: Any, convention: str) -> Optional[str]:
    """The request line that reproduces a mismatch's failing step."""
    if mismatch is None or mismatch.start is None or mismatch.grad is None:
        return None
    param, m, u = mismatch.start
    hyper = {**_OPTIONS, **mismatch.case.hyperparameters}
    return json.dumps(request("replay", str(mismatch.case.dtype), convention, mismatch.t, hyper,
                              param, mismatch.grad, m, u))


# ------------------------------------------------------------ command line


def _option(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or true/false: {value!r}") from None


def _widening(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if sep:
            return name, float(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected FIELD=ULPS, got {text!r}")


def configure_parser(parser: argparse.ArgumentParser, *, conform_options: bool = True) -> None:
    """Add ``--exec`` and ``--timeout``; with ``conform_options`` the rest of ``conform``'s too."""
    parser.add_argument("--exec", dest="exec_command", metavar="COMMAND",
                        help="check a program in any language speaking the line protocol (see the docs)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds to wait for each answer of --exec (default %(default)s)")
    parser.add_argument("--no-vectors", action="store_true",
                        help="with --exec, skip the test vectors that run before the generated cases")
    if not conform_options:
        return
    parser.add_argument("--convention", choices=("spec", "torch"), default="spec")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--option", action="append", type=_option, default=[], metavar="NAME=VALUE")
    parser.add_argument("--vary", action="append", choices=("weight_decay", "decoupled_weight_decay", "maximize"),
                        default=[])
    parser.add_argument("--widen", action="append", type=_widening, default=[], metavar="FIELD=ULPS")
    parser.add_argument("--finite-only", action="store_true")
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run ``conform --exec``; the exit status (0 conforms, 1 does not, 2 protocol error).

    Reads ``conform``'s options from ``args`` by their names (``convention``,
    ``dtype``, ``option``, ``vary``, ``widen``, ``finite_only``,
    ``max_examples``, ``seed``, ``json``) and ``exec_command``, ``timeout``.
    """
    try:
        implementation = ExecImplementation(args.exec_command, timeout=args.timeout)
    except ValueError as err:
        print(f"conform: {err}", file=sys.stderr)
        return 2
    implementation.convention = args.convention
    with implementation:
        try:
            vectors_run, wrong = check_vectors(implementation, args)
        except ProtocolError:
            vectors_run, wrong = 0, None  # reported below
        if wrong is not None:
            if getattr(args, "json", False):
                print(json.dumps({"implementation": implementation.name, "conforms": False,
                                  "convention": args.convention, "dtype": args.dtype, "test_vectors": vectors_run,
                                  "mismatch": wrong, "replay": wrong["replay"]}, indent=2))
            else:
                print(f"{implementation.name}: convention {args.convention!r}, {args.dtype}\n"
                      f"verdict: DOES NOT CONFORM\n"
                      f"first wrong output: {wrong['formula']}  (test vector {wrong['vector']}, {wrong['why']})\n"
                      f"{wrong['detail']}\n"
                      f"replay the failing step: echo {shlex.quote(wrong['replay'])} | {args.exec_command}")
            return 1
        try:
            report = testing.check_conformance(
                implementation,
                convention=args.convention,
                dtype=args.dtype,
                options=dict(getattr(args, "option", [])),
                vary=tuple(dict.fromkeys(getattr(args, "vary", []))),
                tolerance=dict(getattr(args, "widen", [])) or None,
                nonfinite=not getattr(args, "finite_only", False),
                max_examples=getattr(args, "max_examples", 200),
                seed=getattr(args, "seed", None),
            )
        except (ValueError, TypeError) as err:
            print(f"conform: {err}", file=sys.stderr)
            return 2
    if implementation.protocol_error is not None:
        print(f"{implementation.name}: PROTOCOL ERROR: {implementation.protocol_error}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"implementation": implementation.name, "conforms": False,
                              "protocol_error": str(implementation.protocol_error)}, indent=2))
        return 2
    line = replay(report.mismatch, args.convention)
    if getattr(args, "json", False):
        out = report.to_dict()
        out["test_vectors"] = vectors_run
        out["replay"] = line
        print(json.dumps(out, indent=2, allow_nan=False))
    else:
        print(report)
        print(f"test vectors: {vectors_run} passed before the generated cases")
        if line is not None:
            print(f"replay the failing step: echo {shlex.quote(line)} | {args.exec_command}")
    return 0 if report.conforms else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``conform --exec COMMAND`` as a command of its own."""
    parser = argparse.ArgumentParser(
        prog="adamax-cy conform --exec",
        description="Hold an Adamax step running in another process (any language) against the "
                    "specification. Exit 0 if it conforms, 1 if not, 2 on a protocol error.")
    configure_parser(parser)
    args = parser.parse_args(argv)
    if args.exec_command is None:
        parser.error("--exec COMMAND is required")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error("--timeout must be a positive number of seconds")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
