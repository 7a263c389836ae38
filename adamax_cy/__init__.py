"""adamax_cy: the Adamax optimizer step, compiled, and faithful to its specification.

Public names
------------
adamax_step          the spec's function: new (param, m, u), inputs untouched
adamax_step_inplace  the same step, updating the arrays in place
adamax_step_many     the in-place step on many arrays in one compiled call
Adamax               the stateful optimizer: parameter groups, schedules, atomic checkpoints
CheckpointError      a state dict or checkpoint file that cannot be loaded
openmp_enabled       whether this build can use threads
show_config          version, OpenMP, threads and build flags
reference            the specification in plain Python (an independent oracle)
torch.Adamax         a torch.optim.Optimizer running the compiled step (imports
                     torch; ``pip install adamax_cy[torch]``)
"""

from . import _source_check  # noqa: F401  (first: a clear error from an unbuilt checkout)
from ._config import openmp_enabled, show_config
from ._defaults import DEFAULTS
from ._version import __version__
from .api import adamax_step, adamax_step_inplace, adamax_step_many
from .optimizer import Adamax, CheckpointError

__all__ = [
    "Adamax",
    "CheckpointError",
    "DEFAULTS",
    "__version__",
    "adamax_step",
    "adamax_step_inplace",
    "adamax_step_many",
    "openmp_enabled",
    "show_config",
]
