"""The Adamax update loop: numbers only.

Every function here trusts its arguments: shapes, dtypes, contiguity,
aliasing and hyperparameter ranges were checked by the caller
(:mod:`adamax_cy.api`). The arrays are flat views of the user's arrays.
"""

from cython.parallel cimport prange
from libc.math cimport fabs
from libc.stdint cimport uintptr_t

cimport numpy as cnp

cnp.import_array()

from adamax_cy._openmp cimport ADAMAX_CY_OPENMP, omp_get_max_threads

cdef extern from *:
    """
    #ifndef ADAMAX_CY_CFLAGS
    #define ADAMAX_CY_CFLAGS "unknown"
    #endif
    #ifdef __VERSION__
    #define ADAMAX_CY_COMPILER __VERSION__
    #else
    #define ADAMAX_CY_COMPILER "unknown"
    #endif
    """
    const char* ADAMAX_CY_CFLAGS
    const char* ADAMAX_CY_COMPILER

ctypedef fused floating:
    float
    double

# Below this many elements one thread does the whole step: starting a team
# costs more than it saves. Measured with ``python -m adamax_cy bench``.
cdef Py_ssize_t SERIAL_THRESHOLD = 32768
serial_threshold = SERIAL_THRESHOLD


cdef struct Coefficients:
    # Computed once per call in double precision by the caller.
    double beta1
    double one_minus_beta1
    double beta2
    double eps
    double step_size            # lr / (1 - beta1**t)
    double weight_decay
    double lr_weight_decay      # lr * weight_decay
    bint torch_convention
    bint maximize
    bint l2_weight_decay
    bint decoupled_weight_decay


cdef inline floating nan_max(floating a, floating b) noexcept nogil:
    # Like numpy.maximum: NaN in either argument gives NaN.
    return a if (a > b or a != a) else b


cdef inline void update_range(
    floating* param,
    const floating* grad,
    floating* m,
    floating* u,
    Py_ssize_t start,
    Py_ssize_t stop,
    const Coefficients* k,
) noexcept nogil:
    # Coefficients rounded once to the array's dtype; every operation below
    # is done in that dtype, in the order of SPEC.md.
    cdef floating beta1 = <floating>k.beta1
    cdef floating one_minus_beta1 = <floating>k.one_minus_beta1
    cdef floating beta2 = <floating>k.beta2
    cdef floating eps = <floating>k.eps
    cdef floating step_size = <floating>k.step_size
    cdef floating weight_decay = <floating>k.weight_decay
    cdef floating lr_weight_decay = <floating>k.lr_weight_decay
    cdef bint torch_convention = k.torch_convention
    cdef bint maximize = k.maximize
    cdef bint l2 = k.l2_weight_decay
    cdef bint decoupled = k.decoupled_weight_decay
    cdef Py_ssize_t i
    cdef floating g, theta, m_t, u_t, denominator, ratio
    for i in range(start, stop):
        g = grad[i]
        theta = param[i]
        if maximize:
            g = -g
        if l2:
            g = g + weight_decay * theta
        if decoupled:
            theta = theta - lr_weight_decay * theta
        m_t = beta1 * m[i] + one_minus_beta1 * g
        if torch_convention:
            u_t = nan_max(beta2 * u[i], <floating>fabs(g) + eps)
            denominator = u_t
        else:
            u_t = nan_max(beta2 * u[i], <floating>fabs(g))
            denominator = u_t + eps
        ratio = m_t / denominator
        if m_t == 0 and denominator == 0:
            ratio = 0  # eps = 0 and no gradient yet: leave the parameter as it is
        param[i] = theta - step_size * ratio
        m[i] = m_t
        u[i] = u_t


cdef inline int resolve_threads(int num_threads) noexcept nogil:
    return omp_get_max_threads() if num_threads <= 0 else num_threads


cdef void update_blocks(
    floating* param,
    const floating* grad,
    floating* m,
    floating* u,
    Py_ssize_t n,
    const Coefficients* k,
    int num_threads,
) noexcept nogil:
    # One contiguous block per thread: the inner loop stays a plain
    # vectorisable loop, and the result does not depend on the split.
    cdef int threads = resolve_threads(num_threads)
    cdef Py_ssize_t blocks = threads if n >= SERIAL_THRESHOLD else 1
    cdef Py_ssize_t b
    for b in prange(blocks, schedule="static", num_threads=threads,
                    use_threads_if=blocks > 1):
        update_range(param, grad, m, u, b * n // blocks, (b + 1) * n // blocks, k)


cdef Coefficients make_coefficients(
    double beta1, double beta2, double eps, double step_size,
    double weight_decay, double lr_weight_decay,
    bint torch_convention, bint maximize, bint decoupled_weight_decay,
) noexcept:
    cdef Coefficients k
    k.beta1 = beta1
    k.one_minus_beta1 = 1.0 - beta1
    k.beta2 = beta2
    k.eps = eps
    k.step_size = step_size
    k.weight_decay = weight_decay
    k.lr_weight_decay = lr_weight_decay
    k.torch_convention = torch_convention
    k.maximize = maximize
    k.l2_weight_decay = weight_decay != 0 and not decoupled_weight_decay
    k.decoupled_weight_decay = weight_decay != 0 and decoupled_weight_decay
    return k


def update(
    floating[::1] param,
    const floating[::1] grad,
    floating[::1] m,
    floating[::1] u,
    double beta1,
    double beta2,
    double eps,
    double step_size,
    double weight_decay,
    double lr_weight_decay,
    bint torch_convention,
    bint maximize,
    bint decoupled_weight_decay,
    int num_threads,
):
    """Update flat ``param``, ``m`` and ``u`` in place (no checks)."""
    cdef Coefficients k = make_coefficients(
        beta1, beta2, eps, step_size, weight_decay, lr_weight_decay,
        torch_convention, maximize, decoupled_weight_decay)
    with nogil:
        update_blocks(&param[0] if param.shape[0] else NULL,
                      &grad[0] if grad.shape[0] else NULL,
                      &m[0] if m.shape[0] else NULL,
                      &u[0] if u.shape[0] else NULL,
                      param.shape[0], &k, num_threads)


cdef void many_blocks(
    floating* dtype_tag,
    const uintptr_t* params,
    const uintptr_t* grads,
    const uintptr_t* ms,
    const uintptr_t* us,
    const Py_ssize_t* offsets,
    Py_ssize_t count,
    const Coefficients* k,
    int num_threads,
) noexcept nogil:
    # The arrays are laid end to end (offsets[j] is where array j starts,
    # offsets[count] the total) and split by elements, so one large array
    # among many small ones still keeps every thread busy.
    cdef Py_ssize_t n = offsets[count]
    cdef int threads = resolve_threads(num_threads)
    cdef Py_ssize_t blocks = threads if n >= SERIAL_THRESHOLD else 1
    cdef Py_ssize_t b, j, lo, hi, stop
    for b in prange(blocks, schedule="static", num_threads=threads,
                    use_threads_if=blocks > 1):
        lo = b * n // blocks
        hi = (b + 1) * n // blocks
        j = 0
        while j < count and offsets[j + 1] <= lo:
            j = j + 1
        while lo < hi:
            stop = offsets[j + 1] if offsets[j + 1] < hi else hi
            update_range(<floating*>params[j], <const floating*>grads[j],
                         <floating*>ms[j], <floating*>us[j],
                         lo - offsets[j], stop - offsets[j], k)
            lo = stop
            j = j + 1


cdef Py_ssize_t table(list params, list grads, list ms, list us, int typenum,
                     uintptr_t[:, ::1] pointers, Py_ssize_t[::1] offsets) except -1:
    # Pointers and running offsets of the quadruples of one dtype; returns their count.
    cdef Py_ssize_t j, count = 0
    cdef cnp.ndarray p
    for j in range(len(params)):
        p = <cnp.ndarray>params[j]
        if cnp.PyArray_TYPE(p) != typenum:
            continue
        pointers[0, count] = <uintptr_t>cnp.PyArray_DATA(p)
        pointers[1, count] = <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>grads[j])
        pointers[2, count] = <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>ms[j])
        pointers[3, count] = <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>us[j])
        offsets[count + 1] = offsets[count] + cnp.PyArray_SIZE(p)
        count += 1
    return count


def update_many(
    list params,
    list grads,
    list ms,
    list us,
    double beta1,
    double beta2,
    double eps,
    double step_size,
    double weight_decay,
    double lr_weight_decay,
    bint torch_convention,
    bint maximize,
    bint decoupled_weight_decay,
    int num_threads,
):
    """Update many flat quadruples (float32 and float64 mixed) in one call (no checks)."""
    cdef Py_ssize_t size = len(params) + 1
    cdef Coefficients k = make_coefficients(
        beta1, beta2, eps, step_size, weight_decay, lr_weight_decay,
        torch_convention, maximize, decoupled_weight_decay)
    cdef uintptr_t[:, ::1] pointers32 = cnp.PyArray_EMPTY(2, [4, size], cnp.NPY_UINTP, 0)
    cdef uintptr_t[:, ::1] pointers64 = cnp.PyArray_EMPTY(2, [4, size], cnp.NPY_UINTP, 0)
    cdef Py_ssize_t[::1] offsets32 = cnp.PyArray_ZEROS(1, [size], cnp.NPY_INTP, 0)
    cdef Py_ssize_t[::1] offsets64 = cnp.PyArray_ZEROS(1, [size], cnp.NPY_INTP, 0)
    cdef Py_ssize_t count32 = table(params, grads, ms, us, cnp.NPY_FLOAT32, pointers32, offsets32)
    cdef Py_ssize_t count64 = table(params, grads, ms, us, cnp.NPY_FLOAT64, pointers64, offsets64)
    with nogil:
        if offsets32[count32] > 0:
            many_blocks(<float*>NULL, &pointers32[0, 0], &pointers32[1, 0], &pointers32[2, 0],
                        &pointers32[3, 0], &offsets32[0], count32, &k, num_threads)
        if offsets64[count64] > 0:
            many_blocks(<double*>NULL, &pointers64[0, 0], &pointers64[1, 0], &pointers64[2, 0],
                        &pointers64[3, 0], &offsets64[0], count64, &k, num_threads)


cdef inline void floor_range(
    floating* param,
    const floating* grad,
    floating* m,
    floating* u,
    Py_ssize_t start,
    Py_ssize_t stop,
    floating scale,
) noexcept nogil:
    # The same memory traffic as update_range (4 reads, 3 writes) with
    # trivial arithmetic; scale = 0 leaves the values unchanged.
    cdef Py_ssize_t i
    cdef floating g
    for i in range(start, stop):
        g = scale * grad[i]
        param[i] = param[i] + g
        m[i] = m[i] + g
        u[i] = u[i] + g


def floor(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] u,
          double scale, int num_threads):
    """The memory floor of a step: adds ``scale * grad`` to param, m and u (no checks)."""
    cdef Py_ssize_t n = param.shape[0]
    cdef int threads = resolve_threads(num_threads)
    cdef Py_ssize_t blocks = threads if n >= SERIAL_THRESHOLD else 1
    cdef Py_ssize_t b
    if n == 0:
        return
    for b in prange(blocks, schedule="static", num_threads=threads,
                    use_threads_if=blocks > 1, nogil=True):
        floor_range(&param[0], &grad[0], &m[0], &u[0], b * n // blocks, (b + 1) * n // blocks,
                    <floating>scale)


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
    cdef Py_ssize_t blocks = threads if n >= SERIAL_THRESHOLD else 1
    cdef Py_ssize_t b
    cdef int bad = 0
    if n == 0:
        return True
    for b in prange(blocks, schedule="static", num_threads=threads,
                    use_threads_if=blocks > 1, nogil=True):
        if not all_finite_range(&x[0], b * n // blocks, (b + 1) * n // blocks):
            bad += 1
    return bad == 0


def openmp_enabled():
    """Whether this build runs its loops with OpenMP threads."""
    return bool(ADAMAX_CY_OPENMP)


def max_threads():
    """The number of threads a call with ``num_threads=None`` uses."""
    return omp_get_max_threads()


def compile_flags():
    """The flags this module was compiled with."""
    return ADAMAX_CY_CFLAGS.decode()


def compiler_version():
    """The C compiler that built this module."""
    return ADAMAX_CY_COMPILER.decode()
