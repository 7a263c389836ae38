"""The worked examples of the specification, as data.

Each example is stated once, here; tests, the documentation and the command
line read them from this module. ``expected`` holds the spec's rounded values
and ``places`` the number of decimal places to which they are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

Value = Union[float, Sequence[float]]


@dataclass(frozen=True)
class WorkedExample:
    """One row of the specification's table of worked examples."""

    number: int
    param: Value
    grad: Value
    m: Value
    u: Value
    t: int
    expected: tuple[Value, Value, Value]
    places: int
    note: str = ""


#: The specification's worked examples, in its order.
WORKED_EXAMPLES: tuple[WorkedExample, ...] = (
    WorkedExample(
        number=1,
        param=1.0,
        grad=0.1,
        m=0.0,
        u=0.0,
        t=1,
        expected=(0.998, 0.01, 0.1),
        places=6,
        note="the first step from zero state",
    ),
    WorkedExample(
        number=2,
        param=[1.0, 2.0, 3.0],
        grad=[0.1, 0.2, 0.3],
        m=[0.0, 0.0, 0.0],
        u=[0.0, 0.0, 0.0],
        t=1,
        expected=([0.998, 1.998, 2.998], [0.01, 0.02, 0.03], [0.1, 0.2, 0.3]),
        places=6,
        note="the same step, element-wise",
    ),
    WorkedExample(
        number=3,
        param=0.5,
        grad=0.05,
        m=0.02,
        u=0.15,
        t=5,
        expected=(0.49925, 0.023, 0.14985),
        places=5,
        note="a later step in which the decayed history beats the gradient",
    ),
)
