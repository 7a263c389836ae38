"""Test vectors: the Adamax step as data, for implementations in any language.

:func:`generate_test_vectors` builds one JSON-ready document of single steps
with their expected results; :func:`write_test_vectors` saves it and
:func:`load_test_vectors` reads it back (the three are public as
:mod:`adamax_cy.testing`'s); :func:`conforms` and :func:`check_results` are
the consumer's side, :func:`applicable` and :func:`run_on` run vectors
through a harness adapter. The format is described on the documentation's
"Test vectors" page. This module needs NumPy only (no hypothesis), so that
``adamax-cy vectors`` works in any installation.

Every expected value is computed here from exact rational arithmetic
(:class:`fractions.Fraction`), each operation of the specification's
formulas rounded once to the vector's dtype (round to nearest, ties to even,
with subnormals and overflow as IEEE 754 has them); the scalar coefficients
``1 - beta1`` and ``lr * weight_decay`` are rounded first to double and then
to the dtype, as the arithmetic contract says; the learning rate and the bias
correction ``1 - beta1**t`` (``beta1**t`` rounded to double before the
subtraction, as a correctly rounded ``pow`` gives it) stay in double, each
entering one division that is rounded once to the dtype. This code
path shares nothing with :mod:`adamax_cy.reference` but the order of the
formulas, so the reference can check it.

Floats are written as ``float.hex()`` strings (``"0x1.999999999999ap-4"``,
``"-0x0.0p+0"``, ``"inf"``, ``"-inf"``, ``"nan"``), exact for their dtype.
"""

from __future__ import annotations

import json
import os
import math
import random
import sys
from decimal import Context, Decimal
from fractions import Fraction
from types import SimpleNamespace
from typing import IO, Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from . import _contract
from ._version import __version__

__all__ = [
    "CONTRACT",
    "FORMAT",
    "VERSION",
    "applicable",
    "check_results",
    "conforms",
    "decode",
    "encode",
    "generate_test_vectors",
    "load_test_vectors",
    "run_on",
    "write_test_vectors",
]

FORMAT = "adamax-test-vectors"
VERSION = 1
DTYPES = ("float32", "float64")
CONVENTIONS = ("spec", "torch")
HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps", "weight_decay")
#: The fields of a vector an implementation is given (``expected`` and
#: ``tolerance`` are what it is judged by).
INPUT_FIELDS = (
    "id", "dtype", "convention", "t", "lr", "beta1", "beta2", "eps", "weight_decay",
    "decoupled_weight_decay", "maximize", "param", "grad", "m", "u",
)

CONTRACT = (
    "One Adamax step per vector, element-wise. m and u must be bitwise equal to "
    "expected (NaN matches NaN, the sign of zero counts): they are the formulas "
    "m_t = beta1*m + (1 - beta1)*g and u_t = max(beta2*u, |g|) (torch convention: "
    "max(beta2*u, |g| + eps)) with every operation rounded to the dtype, the "
    "coefficients 1 - beta1 and lr*weight_decay rounded to double and then to the "
    "dtype, maximize negating g first and L2 weight decay adding weight_decay*param "
    "to g (decoupled: param -= (lr*weight_decay)*param before the step). param must "
    "be bitwise equal to expected or within tolerance.param_abs of it (element by "
    "element): 4 ulp of the update plus 1 ulp of the larger of the old and new "
    "parameter, plus, for each intermediate of an allowed evaluation order that falls "
    "below the normal range, the smallest subnormal times the factor by which its "
    "rounding reaches the update (the arithmetic contract's bound, as the harness "
    "applies it). A NaN or infinite expected param "
    "has tolerance 0 and must be matched exactly. The bias correction 1 - beta1**t is "
    "computed in double (beta1**t rounded to double, subtracted from 1 in double) and "
    "kept in double, like lr: each enters one division rounded once to the dtype. With eps = 0, an element whose m_t and "
    "denominator are both zero keeps its parameter."
)


# ------------------------------------------------------- exact, rounded once

#: Significand bits, least and greatest normal exponent.
_FORMATS = {"float64": (53, -1022, 1023), "float32": (24, -126, 127)}


def round_exact(q: Fraction, dtype: str) -> float:
    """The rational ``q`` rounded to ``dtype`` (nearest, ties to even; overflow to infinity).

    The sign of a zero result is that of ``q`` (a positive ``q`` too small
    gives ``+0.0``). An exact zero gives ``+0.0``.
    """
    precision, emin, emax = _FORMATS[dtype]
    if q == 0:
        return 0.0
    sign = -1.0 if q < 0 else 1.0
    n, d = abs(q.numerator), q.denominator
    e = n.bit_length() - d.bit_length()
    if (n < d << e) if e >= 0 else (n << -e < d):
        e -= 1  # now 2**e <= |q| < 2**(e + 1)
    e = max(e, emin)  # subnormals keep the least exponent's spacing
    shift = e - precision + 1  # the spacing of the dtype at |q| is 2**shift
    if shift >= 0:
        d <<= shift
    else:
        n <<= -shift
    significand, rest = divmod(n, d)
    if 2 * rest > d or (2 * rest == d and significand & 1):
        significand += 1
    if significand.bit_length() + shift > emax + 1:
        return sign * math.inf
    return math.copysign(math.ldexp(float(significand), shift), sign)


class _Arithmetic:
    """Operations on values of one dtype, each exact and then rounded once.

    Operands that are infinite or NaN, and division by zero, follow IEEE 754
    through NumPy in the dtype (no rounding happens there); zeros get IEEE's
    signs.
    """

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self._np = np.dtype(dtype).type

    def _ieee(self, op: str, a: float, b: float) -> float:
        x, y = self._np(a), self._np(b)
        with np.errstate(all="ignore"):
            return float({"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}[op](x, y))

    def add(self, a: float, b: float) -> float:
        if not (math.isfinite(a) and math.isfinite(b)):
            return self._ieee("+", a, b)
        exact = Fraction(a) + Fraction(b)
        if exact == 0:  # -0 only when both are -0 (round to nearest)
            both_negative = math.copysign(1, a) < 0 and math.copysign(1, b) < 0
            return -0.0 if both_negative else 0.0
        return round_exact(exact, self.dtype)

    def sub(self, a: float, b: float) -> float:
        return self.add(a, -b)

    def mul(self, a: float, b: float) -> float:
        if not (math.isfinite(a) and math.isfinite(b)):
            return self._ieee("*", a, b)
        exact = Fraction(a) * Fraction(b)
        if exact == 0:
            return math.copysign(0.0, math.copysign(1, a) * math.copysign(1, b))
        return round_exact(exact, self.dtype)

    def div(self, a: float, b: float) -> float:
        if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
            return self._ieee("/", a, b)
        exact = Fraction(a) / Fraction(b)
        if exact == 0:
            return math.copysign(0.0, math.copysign(1, a) * math.copysign(1, b))
        return round_exact(exact, self.dtype)

    @staticmethod
    def max(a: float, b: float) -> float:
        """``max`` propagating NaN like ``numpy.maximum`` (first operand's NaN first)."""
        if math.isnan(a) or a > b:
            return a
        return b

    def coefficient(self, exact: Fraction) -> float:
        """A scalar coefficient: exact, rounded to double, then to the dtype."""
        return round_exact(Fraction(round_exact(exact, "float64")), self.dtype)


def bias_correction(beta1: float, t: int) -> float:
    """``1 - beta1**t`` in double as the contract has it: the power rounded to double, then the difference.

    That is what ``1.0 - pow(beta1, t)`` gives with a correctly rounded
    ``pow``. ``Fraction(beta1)**t`` grows without bound in ``t``, so: where
    ``beta1**t < 2**-80`` the result is 1.0 (``1 - x`` rounds to 1.0 for any
    ``x <= 2**-54``); for ``t`` up to 4096 the power is exact; beyond, it is
    computed in decimal with 80 significant digits, far more than the 17 that
    decide its rounding to double.
    """
    if beta1 == 0:
        return 1.0
    if 0 < beta1 < 1 and t * math.log2(beta1) < -80:
        return 1.0
    if t <= 4096 or not 0 < beta1 < 1:
        power = Fraction(beta1) ** t
    else:
        power = Fraction(Context(prec=80).power(Decimal(beta1), t))
    return round_exact(1 - Fraction(round_exact(power, "float64")), "float64")


def expected_element(
    param: float, grad: float, m: float, u: float, t: int, hyper: Mapping[str, Any],
    convention: str, dtype: str,
) -> dict[str, float]:
    """One element's step and every intermediate, in the order of the specification."""
    a = _Arithmetic(dtype)
    lr, beta1, beta2, eps, wd = (float(hyper[k]) for k in HYPERPARAMETERS)
    one_minus_beta1 = a.coefficient(1 - Fraction(beta1))
    lr_wd = a.coefficient(Fraction(lr) * Fraction(wd))
    # The bias correction stays in double: it enters one division only
    # (m_t / (1 - beta1**t)), rounded once to the dtype.
    bc = bias_correction(beta1, t)
    theta, g = param, grad
    if hyper.get("maximize"):
        g = -g
    if wd != 0 and not hyper.get("decoupled_weight_decay"):
        g = a.add(g, a.mul(wd, theta))
    if wd != 0 and hyper.get("decoupled_weight_decay"):
        theta = a.sub(theta, a.mul(lr_wd, theta))
    m_t = a.add(a.mul(beta1, m), a.mul(one_minus_beta1, g))
    if convention == "spec":
        u_t = a.max(a.mul(beta2, u), abs(g))
        d = a.add(u_t, eps)
    else:
        u_t = a.max(a.mul(beta2, u), a.add(abs(g), eps))
        d = u_t
    m_hat = a.div(m_t, bc)
    if m_t == 0 and d == 0:
        step_size = update = a.sub(m_t, m_t)
    else:
        step_size = a.div(lr, d)
        update = a.mul(step_size, m_hat)
    param_t = a.sub(theta, update)
    return {
        "param_decayed": theta, "g": g, "m_t": m_t, "u_t": u_t, "denominator": d,
        "bias_correction": bc, "m_hat": m_hat, "step_size": step_size, "update": update,
        "param_t": param_t,
    }


# --------------------------------------------------------------- tolerance


def param_abs(tr: Mapping[str, float], t: int, hyper: Mapping[str, Any], dtype: str) -> Optional[float]:
    """The contract's absolute tolerance for θ at one element; ``None`` when exempt.

    It is :func:`adamax_cy._contract.theta_allowance` (the one definition of
    the contract, which the harness applies too) for the element's step
    ``tr`` (:func:`expected_element`): ``1 ulp(θ) + 4 ulp(update)`` plus the
    subnormal allowance. Where the contract exempts θ (an intermediate of an
    allowed order overflows from finite operands) ``None``: the generator
    leaves such vectors out. A non-finite expected θ must be matched
    exactly: 0.
    """
    trace = SimpleNamespace(**tr)
    keywords = {"lr": float(hyper["lr"]), "beta1": float(hyper["beta1"])}
    kept = tr["m_t"] == 0 and tr["denominator"] == 0  # eps = 0, nothing to learn: θ is kept
    if not kept and _contract.overflowed(trace, t, keywords, dtype):
        return None
    if not math.isfinite(tr["param_t"]):
        return 0.0
    return _contract.theta_allowance(trace, t, keywords, dtype)


# --------------------------------------------------------------- encoding


def encode(x: float) -> str:
    """A float as ``float.hex()`` (``"inf"``, ``"-inf"``, ``"nan"`` for the specials)."""
    return float(x).hex()


def decode(text: Any) -> float:
    """A hex string (or a decimal JSON number) as a float."""
    if isinstance(text, str):
        return float.fromhex(text)
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    raise ValueError(f"not a float: {text!r}")


def _to_dtype(x: float, dtype: str) -> float:
    return float(np.asarray(x, dtype=dtype)) if math.isfinite(x) else x


def make_vector(
    id: str, why: str, dtype: str, convention: str, t: int, hyper: Mapping[str, Any],
    param: Sequence[float], grad: Sequence[float], m: Sequence[float], u: Sequence[float],
) -> Optional[dict[str, Any]]:
    """One vector, its inputs rounded to ``dtype``; ``None`` when an element is exempt."""
    h = {k: _to_dtype(float(hyper.get(k, 0.0)), dtype) for k in HYPERPARAMETERS}
    options = {"decoupled_weight_decay": bool(hyper.get("decoupled_weight_decay", False)),
               "maximize": bool(hyper.get("maximize", False))}
    inputs = [[_to_dtype(float(x), dtype) for x in seq] for seq in (param, grad, m, u)]
    if len({len(s) for s in inputs}) != 1:
        raise ValueError(f"{id}: param, grad, m and u differ in length")
    out: dict[str, list[float]] = {"param": [], "m": [], "u": []}
    tol: list[float] = []
    for p, g, mi, ui in zip(*inputs):
        tr = expected_element(p, g, mi, ui, t, {**h, **options}, convention, dtype)
        abs_tol = param_abs(tr, t, h, dtype)
        if abs_tol is None:
            return None
        out["param"].append(tr["param_t"])
        out["m"].append(tr["m_t"])
        out["u"].append(tr["u_t"])
        tol.append(abs_tol)
    vector: dict[str, Any] = {"id": id, "why": why, "dtype": dtype, "convention": convention, "t": t}
    vector.update({k: encode(v) for k, v in h.items()})
    vector.update(options)
    vector.update({k: [encode(x) for x in seq] for k, seq in zip(("param", "grad", "m", "u"), inputs)})
    vector["expected"] = {k: [encode(x) for x in v] for k, v in out.items()}
    vector["tolerance"] = {"m": 0, "u": 0, "param_abs": [encode(x) for x in tol]}
    return vector


# --------------------------------------------------------------- the set

_DEFAULT_HYPER = {"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}


def _specs(dtype: str, rng: random.Random) -> Iterable[tuple[str, str, int, dict[str, Any], list[float], list[float], list[float], list[float]]]:
    """(name, why, t, hyperparameters, param, grad, m, u) for one dtype and convention."""
    from .reference import WORKED_EXAMPLES

    D = _DEFAULT_HYPER
    fi = np.finfo(dtype)
    tiny, normal, big = float(fi.smallest_subnormal), float(fi.tiny), float(fi.max)
    inf, nan = math.inf, math.nan

    def listed(x: Any) -> list[float]:
        return [float(v) for v in x] if isinstance(x, (list, tuple)) else [float(x)]

    for ex in WORKED_EXAMPLES:
        yield (f"worked-example-{ex.number}", ex.note, ex.t, dict(D),
               *(listed(x) for x in (ex.param, ex.grad, ex.m, ex.u)))  # type: ignore[misc]

    for name, opts in (("l2", {"weight_decay": 0.01}),
                       ("decoupled", {"weight_decay": 0.01, "decoupled_weight_decay": True}),
                       ("maximize", {"maximize": True}),
                       ("maximize-l2", {"maximize": True, "weight_decay": 0.1}),
                       ("maximize-decoupled", {"maximize": True, "weight_decay": 0.1,
                                               "decoupled_weight_decay": True})):
        yield (f"option-{name}-fresh", f"option {name} from the fresh state", 1, {**D, **opts},
               [1.0, -2.0, 0.5], [0.1, 0.3, -0.05], [0.0] * 3, [0.0] * 3)
        yield (f"option-{name}-later", f"option {name} at a later step", 7, {**D, **opts},
               [1.0, -2.0, 0.5], [0.1, 0.3, -0.05], [0.02, -0.01, 0.3], [0.15, 0.4, 0.35])

    grads = {"negative": -0.5, "zero": 0.0, "negative-zero": -0.0, "subnormal": tiny,
             "negative-subnormal": -tiny, "smallest-normal": normal, "huge": big / 4,
             "inf": inf, "negative-inf": -inf, "nan": nan}
    for gname, g in grads.items():
        yield (f"grad-{gname}-fresh", f"gradient {gname} from the fresh state", 1, dict(D),
               [1.5], [g], [0.0], [0.0])
        yield (f"grad-{gname}-later", f"gradient {gname} from a later state", 3, dict(D),
               [1.5], [g], [-0.25], [0.75])

    params = {"zero": 0.0, "negative-zero": -0.0, "subnormal": tiny, "huge": big / 2,
              "negative-huge": -big / 2, "inf": inf, "negative-inf": -inf, "nan": nan, "tiny": 1e-30}
    for pname, p in params.items():
        yield (f"param-{pname}", f"parameter {pname}", 2, dict(D), [p], [0.25], [0.01], [0.3])
    yield ("param-negative-zero-no-step", "a -0 parameter with a zero gradient keeps its sign",
           1, {**D, "eps": 0.0}, [-0.0], [0.0], [0.0], [0.0])
    yield ("m-negative-zero", "signed zeros in the first moment", 1, dict(D),
           [1.0, 1.0], [-0.0, 0.0], [-0.0, -0.0], [0.0, 0.0])
    yield ("state-subnormal", "subnormal moments", 4, dict(D), [1.0, -1.0], [tiny, -tiny],
           [tiny, -tiny * 3], [tiny * 2, tiny])
    yield ("state-inf-m", "an infinite first moment", 2, dict(D), [1.0], [0.5], [inf], [1.0])
    yield ("state-nan-u", "a NaN infinity norm", 2, dict(D), [1.0], [0.5], [0.1], [nan])
    yield ("magnitudes", "huge and tiny magnitudes together", 9, dict(D),
           [1e30, -1e-30, 3e-20, 1e20], [1e-20, 1e20, -1e-30, 7.0], [1e-21, 0.1, -1e-31, 1.0],
           [1e-20, 1e19, 1e-30, 8.0])

    for state in ("fresh", "later"):
        t, m0, u0 = (1, 0.0, 0.0) if state == "fresh" else (5, 0.01, 0.2)
        yield (f"eps-zero-{state}", "eps = 0 (the paper), zero and non-zero gradients", t,
               {**D, "eps": 0.0}, [1.0, 1.0, -2.0], [0.0, 0.5, -0.0], [m0, m0, 0.0], [u0, u0, 0.0])
        yield (f"beta1-zero-{state}", "beta1 = 0: no momentum, no bias correction", t,
               {**D, "beta1": 0.0}, [1.0, -1.0], [0.3, -0.2], [m0, m0], [u0, u0])
        yield (f"beta2-zero-{state}", "beta2 = 0: u is |g|", t, {**D, "beta2": 0.0},
               [1.0, -1.0], [0.3, -0.2], [m0, m0], [u0, u0])
        yield (f"lr-large-{state}", "a large learning rate", t, {**D, "lr": 1.0},
               [1.0, -1.0], [0.3, -0.2], [m0, m0], [u0, u0])
        yield (f"eps-large-{state}", "eps dominating u", t, {**D, "eps": 1e-2},
               [1.0, -1.0], [1e-4, -2e-4], [m0, m0], [u0 / 100, u0 / 100])

    for beta1 in (0.9, 0.99, 0.999, 0.9999):
        for t in (2, 10, 100, 1000, 10_000, 1_000_000, 10**9):
            yield (f"t-{t}-beta1-{beta1}", "large step numbers", t, {**D, "beta1": beta1},
                   [1.0, -0.5], [0.01, -0.02], [0.005, -0.01], [0.02, 0.03])
        # The window where 1 - beta1**t stops changing: beta1**t near half an ulp of 1.
        for bits in (25, 54):
            edge = math.ceil(bits / -math.log2(beta1))
            for t in (edge - 1, edge, edge + 1):
                yield (f"bias-window-{bits}-t-{t}-beta1-{beta1}",
                       "where 1 - beta1**t stops changing", t, {**D, "beta1": beta1},
                       [1.0], [0.01], [0.005], [0.02])

    for k in range(24):
        n = rng.randint(1, 6)
        hyper = {"lr": rng.choice([0.002, 10 ** rng.uniform(-5, 0)]),
                 "beta1": rng.choice([0.9, 0.5, rng.uniform(0.0, 0.9999)]),
                 "beta2": rng.choice([0.999, rng.uniform(0.0, 0.9999)]),
                 "eps": rng.choice([1e-8, 10 ** rng.uniform(-12, -2)]),
                 "weight_decay": rng.choice([0.0, 0.0, rng.uniform(0.0, 0.1)]),
                 "decoupled_weight_decay": rng.random() < 0.3, "maximize": rng.random() < 0.3}
        # Bias t toward where the bias correction matters (beta1**t not negligible).
        t = rng.choice([1, rng.randint(1, 20), rng.randint(1, 2000), rng.randint(1, 10**6)])
        values = [rng.uniform(-10, 10) * 10 ** rng.randint(-6, 3) for _ in range(4 * n)]
        param, grad, m = values[:n], values[n:2 * n], values[2 * n:3 * n]
        u = [abs(x) for x in values[3 * n:]]
        yield (f"generated-{k}", "seeded random arrays and hyperparameters", t, hyper,
               param, grad, m, u)


def generate_test_vectors(seed: int = 0) -> dict[str, Any]:
    """The Adamax test vectors: single steps with their exact expected results.

    A JSON-ready document for implementations in any language: several
    hundred steps (the worked examples, every option, signed zeros,
    subnormals, infinities, NaN, huge and tiny magnitudes, ``eps = 0``,
    ``beta1 = 0``, large ``t`` and the window where ``1 - beta1**t`` stops
    changing, and seeded random arrays) in float32 and float64 and in both
    conventions. Every expected value is computed in exact rational
    arithmetic and rounded once per operation to the vector's dtype; the
    format is described on the documentation's "Test vectors" page.

    Parameters
    ----------
    seed : int, optional
        Seed of the random arrays and hyperparameters (default 0). The
        document is deterministic for a seed.

    Returns
    -------
    dict
        ``{"format": "adamax-test-vectors", "version": 1, "generator": ...,
        "contract": ..., "vectors": [...]}``, with every float written as a
        ``float.hex()`` string; ready for ``json.dumps``.

    See Also
    --------
    write_test_vectors : the same document, written to a file.
    load_test_vectors : read a document back, checking its format.

    Examples
    --------
    >>> doc = generate_test_vectors()
    >>> doc["format"], doc["version"], len(doc["vectors"]) > 300
    ('adamax-test-vectors', 1, True)
    >>> v = next(v for v in doc["vectors"] if v["id"] == "worked-example-1-float64-spec")
    >>> v["param"], v["grad"], v["t"]
    (['0x1.0000000000000p+0'], ['0x1.999999999999ap-4'], 1)
    >>> float.fromhex(v["expected"]["param"][0])
    0.9980000002
    """
    vectors = []
    for dtype in DTYPES:
        for convention in CONVENTIONS:
            rng = random.Random(f"{seed}-{dtype}-{convention}")
            for name, why, t, hyper, param, grad, m, u in _specs(dtype, rng):
                vector = make_vector(f"{name}-{dtype}-{convention}", why, dtype, convention, t,
                                     hyper, param, grad, m, u)
                if vector is not None:
                    vectors.append(vector)
    return {"format": FORMAT, "version": VERSION, "generator": f"adamax_cy {__version__}",
            "contract": CONTRACT, "vectors": vectors}


PathOrFile = Union[str, "os.PathLike[str]", IO[str]]


def write_test_vectors(file: PathOrFile, seed: int = 0) -> int:
    """Write the test vectors of :func:`generate_test_vectors` as JSON.

    The document is generated completely before anything is written.

    Parameters
    ----------
    file : str, path-like or text file
        Where to write: a path (created or replaced) or an open text file
        (``sys.stdout``, for example), which is left open.
    seed : int, optional
        Seed of the random arrays and hyperparameters (default 0).

    Returns
    -------
    int
        The number of vectors written.

    Raises
    ------
    OSError
        The file cannot be written.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> write_test_vectors(out) == len(load_test_vectors(io.StringIO(out.getvalue()))["vectors"])
    True
    """
    doc = generate_test_vectors(seed)
    text = json.dumps(doc, indent=1) + "\n"
    if isinstance(file, (str, os.PathLike)):
        with open(file, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        file.write(text)
    return len(doc["vectors"])


def load_test_vectors(file: PathOrFile) -> dict[str, Any]:
    """Read a test-vector document, checking its format and version.

    Parameters
    ----------
    file : str, path-like or text file
        A path, or an open text file.

    Returns
    -------
    dict
        The document, as :func:`generate_test_vectors` returns it (floats
        still as hex strings; ``float.fromhex`` reads them).

    Raises
    ------
    ValueError
        The file is not JSON, not an ``adamax-test-vectors`` document, or of
        a version this reader does not know.
    OSError
        The file cannot be read.
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, encoding="utf-8") as f:
            doc = json.load(f)
    else:
        doc = json.load(file)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} document")
    if doc.get("version") != VERSION:
        raise ValueError(f"unsupported version {doc.get('version')!r}; this reader knows {VERSION}")
    return doc


# ----------------------------------------------------------- consumer side


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def conforms(value: float, expected: float, tolerance: float = 0.0) -> bool:
    """Bitwise equal (NaN matches NaN, the sign of zero kept) or within a positive ``tolerance``."""
    return _same(value, expected) or (tolerance > 0 and abs(value - expected) <= tolerance)


def check_results(vector: Mapping[str, Any], result: Mapping[str, Any]) -> Optional[str]:
    """Judge one implementation's ``{"param", "m", "u"}`` against a vector.

    Returns ``None`` when it conforms, else what is wrong, naming the first
    wrong output in the order of the formulas (m, u, then θ).
    """
    expected = vector["expected"]
    param_abs_ = [decode(x) for x in vector["tolerance"]["param_abs"]]
    for name in ("m", "u", "param"):
        got = result.get(name)
        if not isinstance(got, list) or len(got) != len(expected[name]):
            return f"{name}: expected a list of {len(expected[name])} values, got {got!r}"
        for i, (g, e) in enumerate(zip(got, expected[name])):
            gv, ev = decode(g), decode(e)
            tol = param_abs_[i] if name == "param" else 0.0
            if not conforms(gv, ev, tol):
                formula = "θ" if name == "param" else name
                return (f"{formula}: element {i} is {gv.hex()} ({gv!r}), expected {ev.hex()} "
                        f"({ev!r}) within {tol!r}")
    return None


def applicable(doc: Mapping[str, Any], dtype: str, convention: str, vary: Iterable[str] = (),
               nonfinite: bool = True) -> list[dict[str, Any]]:
    """The vectors an implementation can be given: its dtype and convention, the options it varies.

    A vector using ``weight_decay``, ``decoupled_weight_decay`` or
    ``maximize`` is left out unless that option is in ``vary``; with
    ``nonfinite=False`` so are vectors with an infinity or NaN anywhere.
    """
    vary = set(vary)
    out = []
    for v in doc["vectors"]:
        if v["dtype"] != dtype or v["convention"] != convention:
            continue
        if ((decode(v["weight_decay"]) != 0 and "weight_decay" not in vary)
                or (v["decoupled_weight_decay"] and "decoupled_weight_decay" not in vary)
                or (v["maximize"] and "maximize" not in vary)):
            continue
        values = [x for k in ("param", "grad", "m", "u") for x in v[k]]
        values += [x for seq in v["expected"].values() for x in seq]
        if not nonfinite and any(x in ("inf", "-inf", "nan") for x in values):
            continue
        out.append(v)
    return out


def inputs(vector: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A vector's arrays (``param``, ``grad``, ``m``, ``u``, of its dtype) and step keywords.

    The keywords hold ``lr``, ``beta1``, ``beta2``, ``eps``, and the options
    only where the vector uses them (so that an implementation without them
    can be given the others).
    """
    dtype = vector["dtype"]
    arrays = {k: np.array([decode(x) for x in vector[k]], dtype=dtype) for k in ("param", "grad", "m", "u")}
    hyper: dict[str, Any] = {k: decode(vector[k]) for k in ("lr", "beta1", "beta2", "eps")}
    if decode(vector["weight_decay"]) != 0 or vector["decoupled_weight_decay"]:
        hyper["weight_decay"] = decode(vector["weight_decay"])
        hyper["decoupled_weight_decay"] = vector["decoupled_weight_decay"]
    if vector["maximize"]:
        hyper["maximize"] = True
    return arrays, hyper


def run_on(adapter: Any, vectors: Iterable[Mapping[str, Any]]) -> tuple[int, Optional[dict[str, str]]]:
    """Run vectors through an :class:`adamax_cy.testing.Adapter`, one step each.

    Returns the number run and the first failure (``formula``, ``vector``,
    ``why``, ``detail``), or ``None``. Errors the adapter raises propagate.
    """
    from .testing._cases import vector_case  # needs hypothesis, like every adapter

    count = 0
    for v in vectors:
        dtype = v["dtype"]
        case = vector_case(v)
        with np.errstate(all="ignore"):
            theta, m, u = next(iter(adapter.steps(case)))
        count += 1
        result = {k: [float(x) for x in np.ravel(np.asarray(a, dtype=dtype))]
                  for k, a in (("param", theta), ("m", m), ("u", u))}
        wrong = check_results(v, result)
        if wrong is not None:
            formula, _, detail = wrong.partition(": ")
            return count, {"formula": formula, "vector": v["id"], "why": v["why"], "detail": detail}
    return count, None
