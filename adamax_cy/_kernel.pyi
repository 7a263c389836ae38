from typing import Any

import numpy as np
from numpy.typing import NDArray

_Float = NDArray[np.float32] | NDArray[np.float64]

serial_threshold: int

def update(
    param: _Float,
    grad: _Float,
    m: _Float,
    u: _Float,
    beta1: float,
    beta2: float,
    eps: float,
    step_size: float,
    weight_decay: float,
    lr_weight_decay: float,
    torch_convention: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    num_threads: int,
) -> None: ...
def update_many(
    params: list[Any],
    grads: list[Any],
    ms: list[Any],
    us: list[Any],
    beta1: float,
    beta2: float,
    eps: float,
    step_size: float,
    weight_decay: float,
    lr_weight_decay: float,
    torch_convention: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    num_threads: int,
) -> None: ...
def floor(
    param: _Float, grad: _Float, m: _Float, u: _Float, scale: float, num_threads: int
) -> None: ...
def all_finite(x: _Float, num_threads: int) -> bool: ...
def openmp_enabled() -> bool: ...
def max_threads() -> int: ...
def compile_flags() -> str: ...
def compiler_version() -> str: ...
