# The element loops, compiled once per instruction-set level: each
# _loops_<level>.pyx includes this file and is built with that level's
# -march flag (setup.py). The source is the same for every level and
# -ffp-contract=off forbids fused multiply-adds, so every level computes
# the same operations in the same order and gives bitwise the same results.

from cpython.pycapsule cimport PyCapsule_New
from libc.math cimport fabs, fabsf

from adamax_cy._loops cimport Coefficients, Loops

# Loops whose stores trail their loads (the common flags only). A load whose
# address equals, modulo 4096, that of a store still in flight waits for it
# ("4K aliasing"): in the plain loop a load of x[i] stalls on the store of
# y[i - d] when y - x = d * itemsize (mod 4096) is a few vectors, which
# arrays allocated one after another often are (param, grad, m, u a little
# less than a multiple of 4096 bytes apart: the stores of param meet the
# loads of grad, m and u, those of m the loads of u; a little more: the
# other way round). These loops hold each vector's results for D vectors
# (D per written array) before storing them, so that a load never meets a
# store of fewer than D vectors back, and lead_variant picks, per
# quadruple, the plain loop or the variant with the fewest recent such
# pairs. The vectors are GCC/Clang vector extensions of the level's width,
# element by element the operations of update_loop in the same order: the
# same results as the plain loop, bit for bit.
cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__GNUC__) || defined(__clang__)
    #define ADAMAX_CY_LEAD 1
    #if defined(__AVX512F__)
    #define ADAMAX_CY_VB 64
    #elif defined(__AVX__)
    #define ADAMAX_CY_VB 32
    #else
    #define ADAMAX_CY_VB 16
    #endif
    #if defined(__clang__)
    #define ADAMAX_CY_UNROLL _Pragma("unroll")
    #else
    #define ADAMAX_CY_UNROLL _Pragma("GCC unroll 16")
    #endif
    /* Unaligned vectors (a typedef may lower the alignment). */
    typedef float adamax_cy_vf __attribute__((vector_size(ADAMAX_CY_VB), aligned(4)));
    typedef int32_t adamax_cy_vfi __attribute__((vector_size(ADAMAX_CY_VB), aligned(4)));
    typedef double adamax_cy_vd __attribute__((vector_size(ADAMAX_CY_VB), aligned(8)));
    typedef int64_t adamax_cy_vdi __attribute__((vector_size(ADAMAX_CY_VB), aligned(8)));
    typedef float adamax_cy_hf __attribute__((vector_size(ADAMAX_CY_VB / 2), aligned(4)));
    typedef int32_t adamax_cy_hfi __attribute__((vector_size(ADAMAX_CY_VB / 2), aligned(4)));
    typedef double adamax_cy_hd __attribute__((vector_size(ADAMAX_CY_VB / 2), aligned(8)));
    typedef int64_t adamax_cy_hdi __attribute__((vector_size(ADAMAX_CY_VB / 2), aligned(8)));
    #else
    #define ADAMAX_CY_LEAD 0
    #define ADAMAX_CY_VB 16
    #endif

    /* The stores of p, m and u trail by DELAYS[v][0..2] vectors in variant v
       (0: the plain loop); a period of 12 vectors is a multiple of each. */
    enum { ADAMAX_CY_VARIANTS = 3, ADAMAX_CY_PERIOD = 12, ADAMAX_CY_RECENT = 5 };
    /* (A variant delaying all three stores by 6 vectors was dropped: GCC 12
       compiled its m_t with the addition's operands swapped at some vectors
       at the baseline and x86-64-v3 levels, so of two NaNs (m and g) it gave
       g's payload where the plain loop gives m's; the tests compare
       payloads.) */
    static const int ADAMAX_CY_DELAYS[ADAMAX_CY_VARIANTS][3] = {
        {0, 0, 0}, {12, 4, 0}, {0, 4, 12}};

    /* The variant for arrays at these addresses: the fewest (store, load)
       pairs whose store is at most ADAMAX_CY_RECENT vectors older than the
       load it aliases; the plain loop on a tie. */
    static int adamax_cy_lead_variant(const void* p, const void* g, const void* m,
                                      const void* u) {
        const uintptr_t at[4] = {(uintptr_t)p, (uintptr_t)m, (uintptr_t)u, (uintptr_t)g};
        uintptr_t back[3][3];  /* [written y][other x]: y's store x's load meets, bytes back */
        int best = 0, fewest = 1 << 30;
        if (!ADAMAX_CY_LEAD) return 0;
        for (int y = 0; y < 3; y++)
            for (int x = 0, j = 0; x < 4; x++)
                if (x != y) back[y][j++] = (at[y] - at[x]) & 4095;
        for (int v = 0; v < ADAMAX_CY_VARIANTS; v++) {
            int pairs = 0;
            for (int y = 0; y < 3; y++) {
                uintptr_t after = (uintptr_t)ADAMAX_CY_DELAYS[v][y] * ADAMAX_CY_VB;
                for (int j = 0; j < 3; j++)
                    pairs += (back[y][j] > after)
                             & (back[y][j] - after < (ADAMAX_CY_RECENT + 1) * ADAMAX_CY_VB);
            }
            if (pairs < fewest) { fewest = pairs; best = v; }
        }
        return best;
    }

    #if ADAMAX_CY_LEAD
    /* One vector at element `at`: the operations of update_loop (its common
       flags), with nan_max(a, b) as a select. */
    #define ADAMAX_CY_LEAD_VECTOR(VT, VI, TORCH, at)                                           \\
        VT grad = *(const VT*)(g + (at));                                                      \\
        VT a = vbeta2 * *(const VT*)(u + (at));                                                \\
        VT b = (VT)((VI)grad & magnitude);                                                     \\
        VT m_t = vbeta1 * *(const VT*)(m + (at)) + vomb1 * grad;                               \\
        VI take;                                                                               \\
        VT u_t, denominator, theta;                                                            \\
        if (TORCH) b = b + veps;                                                               \\
        take = (a > b) | (a != a);                                                             \\
        u_t = (VT)((take & (VI)a) | (~take & (VI)b));                                          \\
        denominator = u_t;                                                                     \\
        if (!TORCH) denominator = u_t + veps;                                                  \\
        theta = *(const VT*)(p + (at)) - vstep * (m_t / denominator);

    /* The store of array X (p, m or u) of the vector at `at` when it trails
       by D vectors: first that of the vector D back, held in ring[k % D]. */
    #define ADAMAX_CY_LEAD_STORE(VT, X, ring, D, value, at, k, first)                          \\
        if (D == 0) *(VT*)(X + (at)) = value;                                                  \\
        else {                                                                                 \\
            if (!(first) || (k) >= D) *(VT*)(X + (at) - D * W) = ring[(k) % (D ? D : 1)];       \\
            ring[(k) % (D ? D : 1)] = value;                                                   \\
        }

    /* The vector constants of a step, for vectors of type VT. */
    #define ADAMAX_CY_LEAD_CONSTANTS(VT, VI, ABS)                                              \\
        const VT vbeta1 = (VT){0} + beta1, vomb1 = (VT){0} + omb1, vbeta2 = (VT){0} + beta2;   \\
        const VT veps = (VT){0} + eps, vstep = (VT){0} + step_size;                            \\
        const VI magnitude = (VI){0} + ABS;

    /* Elements [0, done) of a step (0 when n is under two periods), done
       within half a vector of n: the stores of p, m and u trail by DP, DM,
       DU vectors, period by period; each vector's loads come before its
       turn of stores. A last half vector (HVT) is loaded first and stored
       last. */
    #define ADAMAX_CY_LEAD_LOOP(NAME, T, VT, VI, HVT, HVI, ABS, DP, DM, DU, TORCH)            \\
    static Py_ssize_t NAME(T* p, const T* g, T* m, T* u, Py_ssize_t n, T beta1, T omb1,        \\
                           T beta2, T eps, T step_size) {                                      \\
        enum { W = ADAMAX_CY_VB / sizeof(T), L = ADAMAX_CY_PERIOD };                             \\
        ADAMAX_CY_LEAD_CONSTANTS(VT, VI, ABS)                                                  \\
        VT rp[DP ? DP : 1], rm[DM ? DM : 1], ru[DU ? DU : 1];                                  \\
        HVT half_theta = {0}, half_m = {0}, half_u = {0};                                      \\
        Py_ssize_t i, k, whole = n / W * W;                                                    \\
        int half = n - whole >= W / 2;                                                         \\
        if (n < 2 * L * W) return 0;                                                           \\
        if (half) {                                                                            \\
            ADAMAX_CY_LEAD_CONSTANTS(HVT, HVI, ABS)                                            \\
            ADAMAX_CY_LEAD_VECTOR(HVT, HVI, TORCH, whole)                                      \\
            half_theta = theta;                                                                \\
            half_m = m_t;                                                                      \\
            half_u = u_t;                                                                      \\
        }                                                                                      \\
        ADAMAX_CY_UNROLL                                                                       \\
        for (k = 0; k < L; k++) {  /* the first period: nothing held yet */                    \\
            ADAMAX_CY_LEAD_VECTOR(VT, VI, TORCH, k * W)                                        \\
            ADAMAX_CY_LEAD_STORE(VT, p, rp, DP, theta, k * W, k, 1)                            \\
            ADAMAX_CY_LEAD_STORE(VT, m, rm, DM, m_t, k * W, k, 1)                              \\
            ADAMAX_CY_LEAD_STORE(VT, u, ru, DU, u_t, k * W, k, 1)                              \\
        }                                                                                      \\
        for (i = L * W; i + L * W <= n; i += L * W) {                                          \\
            ADAMAX_CY_UNROLL                                                                   \\
            for (k = 0; k < L; k++) {                                                          \\
                ADAMAX_CY_LEAD_VECTOR(VT, VI, TORCH, i + k * W)                                \\
                ADAMAX_CY_LEAD_STORE(VT, p, rp, DP, theta, i + k * W, k, 0)                    \\
                ADAMAX_CY_LEAD_STORE(VT, m, rm, DM, m_t, i + k * W, k, 0)                      \\
                ADAMAX_CY_LEAD_STORE(VT, u, ru, DU, u_t, i + k * W, k, 0)                      \\
            }                                                                                  \\
        }                                                                                      \\
        ADAMAX_CY_UNROLL                                                                       \\
        for (k = 0; k < L; k++) {  /* the stores still held */                                 \\
            if (k >= L - DP) *(VT*)(p + i + (k - L) * W) = rp[k % (DP ? DP : 1)];              \\
            if (k >= L - DM) *(VT*)(m + i + (k - L) * W) = rm[k % (DM ? DM : 1)];              \\
            if (k >= L - DU) *(VT*)(u + i + (k - L) * W) = ru[k % (DU ? DU : 1)];              \\
        }                                                                                      \\
        for (; i < whole; i += W) {  /* the whole vectors left, stored at once */              \\
            ADAMAX_CY_LEAD_VECTOR(VT, VI, TORCH, i)                                            \\
            *(VT*)(p + i) = theta;                                                             \\
            *(VT*)(m + i) = m_t;                                                               \\
            *(VT*)(u + i) = u_t;                                                               \\
        }                                                                                      \\
        if (!half) return whole;                                                               \\
        *(HVT*)(p + whole) = half_theta;                                                       \\
        *(HVT*)(m + whole) = half_m;                                                           \\
        *(HVT*)(u + whole) = half_u;                                                           \\
        return whole + W / 2;                                                                  \\
    }
    #define ADAMAX_CY_LEAD_LOOPS(T, VT, VI, HVT, HVI, ABS, S)                                 \\
    ADAMAX_CY_LEAD_LOOP(adamax_cy_lead##S##_1s, T, VT, VI, HVT, HVI, ABS, 12, 4, 0, 0)        \\
    ADAMAX_CY_LEAD_LOOP(adamax_cy_lead##S##_1t, T, VT, VI, HVT, HVI, ABS, 12, 4, 0, 1)        \\
    ADAMAX_CY_LEAD_LOOP(adamax_cy_lead##S##_2s, T, VT, VI, HVT, HVI, ABS, 0, 4, 12, 0)        \\
    ADAMAX_CY_LEAD_LOOP(adamax_cy_lead##S##_2t, T, VT, VI, HVT, HVI, ABS, 0, 4, 12, 1)        \\
    static Py_ssize_t adamax_cy_lead##S(int variant, int torch, T* p, const T* g, T* m, T* u,   \\
                                        Py_ssize_t n, T beta1, T omb1, T beta2, T eps,         \\
                                        T step_size) {                                         \\
        switch (variant * 2 + (torch != 0)) {                                                  \\
        case 2: return adamax_cy_lead##S##_1s(p, g, m, u, n, beta1, omb1, beta2, eps, step_size); \\
        case 3: return adamax_cy_lead##S##_1t(p, g, m, u, n, beta1, omb1, beta2, eps, step_size); \\
        case 4: return adamax_cy_lead##S##_2s(p, g, m, u, n, beta1, omb1, beta2, eps, step_size); \\
        case 5: return adamax_cy_lead##S##_2t(p, g, m, u, n, beta1, omb1, beta2, eps, step_size); \\
        default: return 0;                                                                     \\
        }                                                                                      \\
    }
    ADAMAX_CY_LEAD_LOOPS(float, adamax_cy_vf, adamax_cy_vfi, adamax_cy_hf, adamax_cy_hfi,
                         0x7fffffff, 32)
    ADAMAX_CY_LEAD_LOOPS(double, adamax_cy_vd, adamax_cy_vdi, adamax_cy_hd, adamax_cy_hdi,
                         0x7fffffffffffffffLL, 64)
    #else
    static Py_ssize_t adamax_cy_lead32(int variant, int torch, float* p, const float* g, float* m,
                                       float* u, Py_ssize_t n, float beta1, float omb1,
                                       float beta2, float eps, float step_size) { return 0; }
    static Py_ssize_t adamax_cy_lead64(int variant, int torch, double* p, const double* g,
                                       double* m, double* u, Py_ssize_t n, double beta1,
                                       double omb1, double beta2, double eps,
                                       double step_size) { return 0; }
    #endif
    """
    int lead_variant "adamax_cy_lead_variant"(const void* p, const void* g, const void* m,
                                              const void* u) noexcept nogil
    Py_ssize_t lead32 "adamax_cy_lead32"(
        int variant, bint torch, float* p, const float* g, float* m, float* u, Py_ssize_t n,
        float beta1, float omb1, float beta2, float eps, float step_size) noexcept nogil
    Py_ssize_t lead64 "adamax_cy_lead64"(
        int variant, bint torch, double* p, const double* g, double* m, double* u,
        Py_ssize_t n, double beta1, double omb1, double beta2, double eps,
        double step_size) noexcept nogil
    int LEAD_PERIOD "ADAMAX_CY_PERIOD"
    int VECTOR_BYTES "ADAMAX_CY_VB"
    const int (*DELAYS "ADAMAX_CY_DELAYS")[3]

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


cdef inline Py_ssize_t lead_range(
    floating* param,
    const floating* grad,
    floating* m,
    floating* u,
    Py_ssize_t start,
    Py_ssize_t stop,
    const Coefficients* k,
    int variant,
) noexcept nogil:
    # Where update_range is to go on from: past the elements a loop with
    # trailing stores did, when the layout of the arrays calls for one
    # (``variant``, or -1 to choose it here; and the flags are the common
    # ones, as in update_range's first case).
    if (stop - start < 2 * LEAD_PERIOD * (VECTOR_BYTES // <int>sizeof(floating))
            or k.maximize or k.l2_weight_decay or k.decoupled_weight_decay
            or not <floating>k.eps > 0):
        return start
    if variant < 0:
        variant = lead_variant(param + start, grad + start, m + start, u + start)
    if variant == 0:
        return start
    if floating is float:
        return start + lead32(variant, k.torch_convention, param + start, grad + start,
                              m + start, u + start, stop - start, <float>k.beta1,
                              <float>k.one_minus_beta1, <float>k.beta2, <float>k.eps,
                              <float>k.step_size)
    else:
        return start + lead64(variant, k.torch_convention, param + start, grad + start,
                              m + start, u + start, stop - start, k.beta1, k.one_minus_beta1,
                              k.beta2, k.eps, k.step_size)


cdef void update32(float* param, const float* grad, float* m, float* u,
                   Py_ssize_t start, Py_ssize_t stop, const Coefficients* k,
                   int variant) noexcept nogil:
    start = lead_range(param, grad, m, u, start, stop, k, variant)
    if start < stop:
        update_range(param, grad, m, u, start, stop, k)


cdef void update64(double* param, const double* grad, double* m, double* u,
                   Py_ssize_t start, Py_ssize_t stop, const Coefficients* k,
                   int variant) noexcept nogil:
    start = lead_range(param, grad, m, u, start, stop, k, variant)
    if start < stop:
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
LOOPS.variant = lead_variant
LOOPS.update32 = update32
LOOPS.update64 = update64
LOOPS.floor32 = floor32
LOOPS.floor64 = floor64
LOOPS.division32 = division32
LOOPS.division64 = division64


def loops():
    """The loops of this level, in a capsule for the kernel."""
    return PyCapsule_New(<void*>&LOOPS, b"adamax_cy._loops.Loops", NULL)


def loop_variant(size_t param, size_t grad, size_t m, size_t u):
    """The variant of the element loop for arrays at these addresses, as
    the loops choose it and the kernel keeps it (tests): an index of
    ``store_delays``' delays, 0 for the plain loop."""
    return lead_variant(<void*>param, <void*>grad, <void*>m, <void*>u)


def store_delays(size_t param, size_t grad, size_t m, size_t u):
    """The vectors by which the stores of param, m and u trail in a step on
    arrays at these addresses ((0, 0, 0): the plain loop), and the vector
    width in bytes (tests)."""
    cdef int variant = lead_variant(<void*>param, <void*>grad, <void*>m, <void*>u)
    return (DELAYS[variant][0], DELAYS[variant][1], DELAYS[variant][2]), VECTOR_BYTES
