from typing import Any, Callable

from typing_extensions import disjoint_base

import numpy as np
from numpy.typing import NDArray

_Float = NDArray[np.float32] | NDArray[np.float64]

serial_threshold: int
thread_limit: int
LEVELS: tuple[str, ...]

def set_serial_threshold(n: int) -> int: ...

def available_levels() -> tuple[str, ...]: ...
def level() -> str: ...
def use_level(name: str) -> str | None: ...

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

@disjoint_base
class TensorTable:
    count: int
    unchecked: bool
    def __init__(self, params: list[Any], to_dlpack: Callable[[Any], Any]) -> None: ...
    def set_entry(
        self,
        j: int,
        param: Any,
        dtype: Any,
        state: dict[str, Any],
        exp_avg: Any,
        exp_inf: Any,
        step: Any,
        param_ptr: int,
        m_ptr: int,
        u_ptr: int,
        step_ptr: int,
        size: int,
        is64: bool,
        step64: bool,
        keep: Any,
    ) -> None: ...
    def mark_checked(self) -> None: ...
    def set_grad(self, j: int, grad: Any, ptr: int) -> None: ...
    def gather(
        self,
        params: list[Any],
        state_of: dict[Any, Any],
        refresh_entry: Callable[[int, Any, dict[Any, Any]], object],
        refresh_grad: Callable[[int, Any, Any], object],
    ) -> int: ...
    def written(self) -> list[tuple[Any, Any, Any]]: ...
    def selected_params(self) -> list[Any]: ...
    def prepare(
        self,
        lr: Any,
        beta1: Any,
        beta2: Any,
        eps: Any,
        weight_decay: Any,
        maximize: Any,
        convention: Any,
        num_threads: Any,
    ) -> bool: ...
    def run(self) -> None: ...
