"""The benchmark: every implementation of the step, timed side by side.

Run ``python -m adamax_cy.bench`` (or ``python -m adamax_cy bench``);
``--quick`` finishes in under a minute. Implementations are timed in turn
(A B C A B C ...) so that drift of a shared machine falls on all of them
alike; each number is the median of several batches of calls.

The **floor** is a compiled loop of this project that moves exactly the
bytes of a step (reads param, grad, m and u; writes param, m and u) with
trivial arithmetic: the practical memory limit of the machine. Effective
bandwidth counts those 7 x itemsize x n bytes for every implementation.
The **floor with division** moves the same bytes and does exactly one IEEE
division per element, as the step must: the limit in cache.

The **busy-machine scenario** (:mod:`.busy`) starts busy-loop processes and
times the default threads against one thread, mean and 90th percentile.

Optional packages: ``rich`` (a progress bar; a plain line without it),
``matplotlib`` (``--plot``), ``torch`` (``torch.optim.Adamax`` as a
baseline); ``pip install ".[bench]"`` from a checkout installs the first two.
Progress is shown only when standard error is a terminal.

One module per job: :mod:`.baselines` (what is timed), :mod:`.timing` (the
harness), :mod:`.busy` (the busy-machine scenario), :mod:`.targets` (the targets and their verdicts), :mod:`.report`
(text, Markdown, plot) and :mod:`.runner` (the options and a whole run).
"""

from .baselines import (
    ASSIGN,
    BASELINES,
    CY_TORCH,
    DTYPES,
    FLOOR,
    FLOOR_1T,
    FLOOR_DIV,
    FLOOR_DIV_1T,
    GRADIENTS,
    IMPLEMENTATIONS,
    INPLACE,
    INPLACE_1T,
    INPLACE_ALL,
    NUMPY,
    NUMPY_OUT,
    TORCH,
    TORCH_FOREACH,
    numpy_step,
    numpy_step_out,
    state,
)
from .busy import busy_cores, measure_busy
from .report import markdown, plot, report
from .runner import (
    OPTIMIZERS,
    SMOKE_OPTIMIZERS,
    benchmark,
    configure_parser,
    machine,
    main,
    run,
    settings,
)
from .targets import Target, evaluate
from .timing import Timing, allocation_per_step, time_step

__all__ = [
    "ASSIGN", "BASELINES", "CY_TORCH", "DTYPES", "FLOOR", "FLOOR_1T", "FLOOR_DIV",
    "FLOOR_DIV_1T", "GRADIENTS",
    "IMPLEMENTATIONS", "INPLACE", "INPLACE_1T", "INPLACE_ALL", "NUMPY", "NUMPY_OUT", "OPTIMIZERS",
    "SMOKE_OPTIMIZERS", "TORCH", "TORCH_FOREACH", "Target", "Timing", "allocation_per_step",
    "benchmark", "busy_cores", "configure_parser", "evaluate", "machine", "main", "markdown", "measure_busy", "numpy_step",
    "numpy_step_out", "plot", "report", "run", "settings", "state", "time_step",
]
