"""``python -m adamax_cy``: the spec's worked examples through the compiled kernel."""

import sys

from .reference import WORKED_EXAMPLES
from .api import adamax_step


def main() -> int:
    ok = True
    for ex in WORKED_EXAMPLES:
        got = adamax_step(ex.param, ex.grad, ex.m, ex.u, ex.t)
        agree = all(
            abs(float(g) - float(e)) <= 0.5 * 10.0**-ex.places
            for gs, es in zip(got, ex.expected)
            for g, e in zip(*(([gs], [es]) if isinstance(es, float) else (gs, es)))
        )
        ok &= agree
        shown = tuple(g.tolist() if hasattr(g, "tolist") else g for g in got)
        print(f"example {ex.number}: expected {ex.expected}")
        print(f"           computed {shown}  {'agrees' if agree else 'DIFFERS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
