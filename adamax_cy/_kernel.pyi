from typing import Any

import numpy as np
from numpy.typing import NDArray

_Float = NDArray[np.float32] | NDArray[np.float64]

serial_threshold: int
keep_gil_elements: int
thread_limit: int
LEVELS: tuple[str, ...]
__pyx_capi__: dict[str, Any]

def set_serial_threshold(n: int) -> int: ...
def set_adaptive(on: bool) -> bool: ...
def adaptive() -> bool: ...
def policy_reset() -> None: ...
def policy_state() -> list[dict[str, Any]]: ...
def _policy_call(itemsize: int, n: int, seconds: float, many: bool = ...) -> int: ...
def _policy_next(itemsize: int, n: int, many: bool = ...) -> bool: ...

def available_levels() -> tuple[str, ...]: ...
def level() -> str: ...
def use_level(name: str) -> str | None: ...

def update(
    param: _Float,
    grad: _Float,
    m: _Float,
    u: _Float,
    *,
    t: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    convention: str,
    num_threads: int,
) -> None: ...
def update_many(
    params: list[Any],
    grads: list[Any],
    ms: list[Any],
    us: list[Any],
    *,
    t: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    convention: str,
    num_threads: int,
) -> None: ...
def floor(
    param: _Float,
    grad: _Float,
    m: _Float,
    u: _Float,
    scale: float,
    num_threads: int,
    division: bool = False,
) -> None: ...
def step_inplace(
    param: Any,
    grad: Any,
    m: Any,
    u: Any,
    t: Any,
    lr: Any,
    beta1: Any,
    beta2: Any,
    eps: Any,
    weight_decay: Any,
    decoupled_weight_decay: Any,
    maximize: Any,
    convention: Any,
    num_threads: Any,
) -> bool: ...
def step_many(
    params: Any,
    grads: Any,
    ms: Any,
    us: Any,
    t: Any,
    lr: Any,
    beta1: Any,
    beta2: Any,
    eps: Any,
    weight_decay: Any,
    decoupled_weight_decay: Any,
    maximize: Any,
    convention: Any,
    num_threads: Any,
) -> bool: ...
def all_finite(x: _Float, num_threads: int) -> bool: ...
def openmp_enabled() -> bool: ...
def max_threads() -> int: ...
def compile_flags() -> str: ...
def compiler_version() -> str: ...
def check_many_fast(params: Any, grads: Any, ms: Any, us: Any) -> bool: ...
def kept_tables() -> dict[str, Any]: ...
