# The element loops, compiled once per instruction-set level: each
# _loops_<level>.pyx includes this file and is built with that level's
# -march flag (setup.py). The source is the same for every level and
# -ffp-contract=off forbids fused multiply-adds, so every level computes
# the same operations in the same order and gives bitwise the same results.

from cpython.pycapsule cimport PyCapsule_New
from libc.math cimport fabs, fabsf

from adamax_cy._loops cimport Coefficients, Loops

ctypedef fused floating:
    float
    double


cdef inline floating absolute(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating nan_max(floating a, floating b) noexcept nogil:
    # Like numpy.maximum: NaN in either argument gives NaN.
    cdef floating r = a if a > b else b  # b if either is NaN
    return a if a != a else r


cdef inline void update_loop(
    floating* param,
    const floating* grad,
    floating* m,
    floating* u,
    Py_ssize_t start,
    Py_ssize_t stop,
    const Coefficients* k,
    bint torch_convention,
    bint maximize,
    bint l2,
    bint decoupled,
    bint zero_guard,
) noexcept nogil:
    # Coefficients rounded once to the array's dtype; every operation below
    # is done in that dtype, in the order of the algorithm's formulas.
    cdef floating beta1 = <floating>k.beta1
    cdef floating one_minus_beta1 = <floating>k.one_minus_beta1
    cdef floating beta2 = <floating>k.beta2
    cdef floating eps = <floating>k.eps
    cdef floating step_size = <floating>k.step_size
    cdef floating weight_decay = <floating>k.weight_decay
    cdef floating lr_weight_decay = <floating>k.lr_weight_decay
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
            u_t = nan_max(beta2 * u[i], absolute(g) + eps)
            denominator = u_t
        else:
            u_t = nan_max(beta2 * u[i], absolute(g))
            denominator = u_t + eps
        ratio = m_t / denominator
        if zero_guard and m_t == 0 and denominator == 0:
            param[i] = theta  # eps = 0 and no gradient yet: leave the parameter as it is
        else:
            param[i] = theta - step_size * ratio
        m[i] = m_t
        u[i] = u_t


cdef inline void update_torch(
    floating* param, const floating* grad, floating* m, floating* u,
    Py_ssize_t start, Py_ssize_t stop, const Coefficients* k,
    bint maximize, bint l2, bint decoupled,
) noexcept nogil:
    if k.torch_convention:
        update_loop(param, grad, m, u, start, stop, k, True, maximize, l2, decoupled, True)
    else:
        update_loop(param, grad, m, u, start, stop, k, False, maximize, l2, decoupled, True)


cdef inline void update_maximize(
    floating* param, const floating* grad, floating* m, floating* u,
    Py_ssize_t start, Py_ssize_t stop, const Coefficients* k, bint l2, bint decoupled,
) noexcept nogil:
    if k.maximize:
        update_torch(param, grad, m, u, start, stop, k, True, l2, decoupled)
    else:
        update_torch(param, grad, m, u, start, stop, k, False, l2, decoupled)


cdef inline void update_range(
    floating* param,
    const floating* grad,
    floating* m,
    floating* u,
    Py_ssize_t start,
    Py_ssize_t stop,
    const Coefficients* k,
) noexcept nogil:
    # Each combination of the flags becomes a loop of its own, with the
    # flags constant, so that every one is a plain vectorisable loop.
    # With eps > 0 (in the array's dtype) the denominator is never 0, so the
    # common cases drop the guard against 0 / 0: the same results, less work.
    if not (k.maximize or k.l2_weight_decay or k.decoupled_weight_decay) and <floating>k.eps > 0:
        if k.torch_convention:
            update_loop(param, grad, m, u, start, stop, k, True, False, False, False, False)
        else:
            update_loop(param, grad, m, u, start, stop, k, False, False, False, False, False)
    elif k.l2_weight_decay:
        update_maximize(param, grad, m, u, start, stop, k, True, False)
    elif k.decoupled_weight_decay:
        update_maximize(param, grad, m, u, start, stop, k, False, True)
    else:
        update_maximize(param, grad, m, u, start, stop, k, False, False)


cdef inline void floor_range(
    floating* param,
    const floating* grad,
    floating* m,
    floating* u,
    Py_ssize_t start,
    Py_ssize_t stop,
    double scale,
) noexcept nogil:
    # The memory traffic of update_range (4 reads, 3 writes per element)
    # with trivial arithmetic; scale = 0 leaves the values as they are.
    cdef floating s = <floating>scale
    cdef Py_ssize_t i
    cdef floating g
    for i in range(start, stop):
        g = s * grad[i]
        param[i] = param[i] + g
        m[i] = m[i] + g
        u[i] = u[i] + g


cdef inline void division_range(
    floating* param,
    const floating* grad,
    floating* m,
    floating* u,
    Py_ssize_t start,
    Py_ssize_t stop,
    double scale,
) noexcept nogil:
    # floor_range plus exactly one IEEE division per element (a step's
    # m_t / denominator): the floor of a step whose arithmetic is reduced
    # to what the bitwise contract cannot drop. With u >= 0 the divisor is
    # >= 1; scale = 0 leaves the values as they are.
    cdef floating s = <floating>scale
    cdef floating one = 1
    cdef Py_ssize_t i
    cdef floating g, r
    for i in range(start, stop):
        g = grad[i]
        r = m[i] / (u[i] + one)
        param[i] = param[i] + s * r
        m[i] = m[i] + s * g
        u[i] = u[i] + s * g


cdef void update32(float* param, const float* grad, float* m, float* u,
                   Py_ssize_t start, Py_ssize_t stop, const Coefficients* k) noexcept nogil:
    update_range(param, grad, m, u, start, stop, k)


cdef void update64(double* param, const double* grad, double* m, double* u,
                   Py_ssize_t start, Py_ssize_t stop, const Coefficients* k) noexcept nogil:
    update_range(param, grad, m, u, start, stop, k)


cdef void floor32(float* param, const float* grad, float* m, float* u,
                  Py_ssize_t start, Py_ssize_t stop, double scale) noexcept nogil:
    floor_range(param, grad, m, u, start, stop, scale)


cdef void floor64(double* param, const double* grad, double* m, double* u,
                  Py_ssize_t start, Py_ssize_t stop, double scale) noexcept nogil:
    floor_range(param, grad, m, u, start, stop, scale)


cdef void division32(float* param, const float* grad, float* m, float* u,
                     Py_ssize_t start, Py_ssize_t stop, double scale) noexcept nogil:
    division_range(param, grad, m, u, start, stop, scale)


cdef void division64(double* param, const double* grad, double* m, double* u,
                     Py_ssize_t start, Py_ssize_t stop, double scale) noexcept nogil:
    division_range(param, grad, m, u, start, stop, scale)


cdef Loops LOOPS
LOOPS.level = LEVEL
LOOPS.update32 = update32
LOOPS.update64 = update64
LOOPS.floor32 = floor32
LOOPS.floor64 = floor64
LOOPS.division32 = division32
LOOPS.division64 = division64


def loops():
    """The loops of this level, in a capsule for the kernel."""
    return PyCapsule_New(<void*>&LOOPS, b"adamax_cy._loops.Loops", NULL)
