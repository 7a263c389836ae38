"""An Adamax step in another process, any language: the line protocol of ``conform --exec``.

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
decimal JSON numbers (``-0`` keeps its sign; a number no double holds is a
protocol error). Hyperparameters are doubles: the implementation rounds
them to the dtype itself, and computes ``1 - beta1``, ``lr * weight_decay``
and ``1 - beta1**t`` in double before rounding them (the arithmetic contract).

:class:`ExecImplementation` is the harness's adapter for such a process;
:func:`check_vectors` runs the test vectors (:mod:`adamax_cy._vectors`)
through it, and :func:`replay` gives the request line that reproduces a
failing step. The command line (``adamax-cy conform --exec``, in
:mod:`adamax_cy.cli.conform`) runs the vectors first, then
:func:`adamax_cy.testing.check_conformance`; the protocol is described on the
documentation's "Test vectors" page.
"""

from __future__ import annotations

import json
import math
import os
import select
import shlex
import subprocess
import tempfile
import time
from typing import Any, Iterable, Iterator, Mapping, Optional

import numpy as np

from .. import _vectors
from ._adapters import Adapter
from ._cases import Case

__all__ = ["DEFAULT_TIMEOUT", "ExecImplementation", "ProtocolError", "check_vectors", "replay", "request"]

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


class _Literal(str):
    """A JSON number as written: ``json.loads("-0")`` is the int 0, which loses the sign."""


def _number(x: Any) -> float:
    try:
        if isinstance(x, _Literal):
            value = float(x)  # "-0" is -0.0; "1e400" and a 401-digit integer are inf
            if not math.isfinite(value):
                raise OverflowError
            return value
        if isinstance(x, str):
            return float.fromhex(x)
        if isinstance(x, float):  # NaN, Infinity and -Infinity, the only constants json reads
            return x
    except (ValueError, OverflowError):
        pass
    text = repr(str(x) if isinstance(x, _Literal) else x)
    raise ValueError(f"{text[:60]}{'...' if len(text) > 60 else ''} is not a number a double holds")


class ExecImplementation(Adapter):
    """An :class:`adamax_cy.testing.Adapter` for a process speaking the line protocol.

    Parameters
    ----------
    command : str
        The command line, split with :func:`shlex.split`; started at the
        first step and kept running until :meth:`close`.
    timeout : float
        Seconds to wait for each answer.
    convention : {"spec", "torch"}
        The convention sent in every request.

    After a protocol error every later step raises it again, and
    :attr:`protocol_error` holds it.
    """

    def __init__(self, command: str, timeout: float = DEFAULT_TIMEOUT, convention: str = "spec") -> None:
        self.command = command
        self.argv = shlex.split(command)  # ValueError for an unclosed quotation
        if not self.argv:
            raise ValueError("the command is empty")
        self.convention = convention
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
            answer = json.loads(line, parse_int=_Literal, parse_float=_Literal)
        except (ValueError, RecursionError) as err:  # RecursionError: nested too deep
            raise self._fail(f"the answer to request {self.requests} is not JSON ({err}): "
                             f"{line[:200].decode('utf-8', 'replace')!r}") from None
        if not isinstance(answer, dict):
            raise self._fail(f"the answer to request {self.requests} is not a JSON object: {line[:200]!r}")
        got = answer.get("id")
        if isinstance(got, _Literal) or got != message["id"]:
            shown = got if isinstance(got, _Literal) else repr(got)  # a number, unquoted
            raise self._fail(f"the answer to request {message['id']!r} has id {shown}")
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

    def steps(self, case: Case) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
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


def check_vectors(implementation: ExecImplementation, dtype: str, convention: str,
                  vary: Iterable[str] = (), nonfinite: bool = True) -> tuple[int, Optional[dict[str, str]]]:
    """Run the test vectors that apply; (vectors run, the first failure or None).

    The test vectors put every step number and the bias-correction window in
    front of the implementation deterministically, where generated cases
    reach them only by chance: those of ``dtype`` and ``convention``, with
    the options in ``vary``, and finite ones only unless ``nonfinite``. A
    failure carries ``replay``, the vector's request line.
    Raises :class:`ProtocolError` when the process breaks the protocol.
    """
    vectors = _vectors.applicable(_vectors.generate_test_vectors(), dtype, convention, vary, nonfinite)
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
