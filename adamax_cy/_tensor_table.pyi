from typing import Any, Callable

from typing_extensions import disjoint_base

@disjoint_base
class TensorTable:
    count: int
    unchecked: bool
    stale: list[int]
    to_copy: list[int]
    exchange: bool
    def __init__(
        self, params: list[Any], tensor_type: type, to_dlpack: Callable[[Any], Any], exchange: bool = True
    ) -> None: ...
    def set_entry(
        self,
        j: int,
        param: Any,
        state: dict[str, Any],
        exp_avg: Any,
        exp_inf: Any,
        step: Any,
        m_ptr: int,
        u_ptr: int,
        step_ptr: int,
        step64: bool,
        keep: Any,
    ) -> None: ...
    def mark_checked(self) -> None: ...
    def set_grad(self, j: int, grad: Any, ptr: int) -> None: ...
    def gather(self, params: list[Any], state_of: dict[Any, Any]) -> int: ...
    def written(self) -> list[tuple[Any, Any, Any]]: ...
    def counters(self) -> list[Any]: ...
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
    def release(self) -> None: ...
