"""The Adamax specification as plain Python: an oracle for testing implementations.

This package encodes the algorithm's formulas one line each, in three arithmetics
(``float64``, ``float32`` and ``exact``), and holds the spec's worked examples
as data. It never imports the rest of :mod:`adamax_cy`, so it can judge the
compiled kernel (or anybody else's Adamax) independently.
"""

from .adamax import (
    ARITHMETICS,
    CONVENTIONS,
    DEFAULTS,
    EXACT_POWER_STEPS,
    POWER_BITS,
    POWER_FLOOR,
    Trace,
    adamax_step,
    adamax_trace,
    exact_power,
    to_float32,
)
from .examples import WORKED_EXAMPLES, WorkedExample

__all__ = [
    "ARITHMETICS",
    "CONVENTIONS",
    "DEFAULTS",
    "EXACT_POWER_STEPS",
    "POWER_BITS",
    "POWER_FLOOR",
    "Trace",
    "WORKED_EXAMPLES",
    "WorkedExample",
    "adamax_step",
    "adamax_trace",
    "exact_power",
    "to_float32",
]
