# The memory floor and the finiteness check (included by _kernel.pyx): the
# benchmark's practical memory limit of a step, and the optimizer's
# non-finite gradient check.

def floor(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] u,
          double scale, int num_threads, bint division=False):
    """The memory floor of a step: adds ``scale * grad`` to param, m and u (no checks).

    The same bytes as a step (4 reads, 3 writes per element), the same
    split between threads and the same instruction-set level, with trivial
    arithmetic: the practical memory limit of the machine. With
    ``division``, also exactly one IEEE division per element
    (``scale * m / (u + 1)`` is added to param instead): the floor of a
    step whose results must be bitwise those of the formulas.
    """
    if param.shape[0] == 0:
        return
    with nogil:
        floor_blocks(&param[0], &grad[0], &m[0], &u[0], param.shape[0], scale, num_threads,
                     division)


cdef bint all_finite_range(const floating* x, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating acc = 0
    for i in range(start, stop):
        acc = acc + (x[i] - x[i])  # 0 for finite x, NaN for inf or NaN
    return acc == 0


def all_finite(const floating[::1] x, int num_threads):
    """Whether every element of flat ``x`` is finite (parallel, no allocation)."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int threads = resolve_threads(num_threads)
    cdef Py_ssize_t blocks = block_count(n, threads)
    cdef Py_ssize_t b
    cdef int bad = 0
    if n == 0:
        return True
    if blocks == 1:  # without entering OpenMP (see update_blocks)
        with nogil:
            bad = not all_finite_range(&x[0], 0, n)
        return bad == 0
    for b in prange(blocks, schedule="static", num_threads=threads, nogil=True):
        if not all_finite_range(&x[0], b * n // blocks, (b + 1) * n // blocks):
            bad += 1
    return bad == 0
