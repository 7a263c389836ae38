# Hyperparameters to coefficients (included by _kernel.pyx): the fast
# reading of Python hyperparameters and the one formula of the per-call
# coefficients, shared by every entry point and by the extensions that cimport the kernel.

# A step count is a whole number from 1 to MAX_STEP - 1: beta1**t needs t as
# a double (and as a C long long here).
if not 1 < _defaults.MAX_STEP <= 2**63:
    raise ImportError(f"adamax_cy: MAX_STEP must be in (1, 2**63], got {_defaults.MAX_STEP}")
cdef long long LAST_STEP = _defaults.MAX_STEP - 1
cdef double STEP_LIMIT = float(_defaults.MAX_STEP)


cdef int real(object value, double* out) noexcept:
    # A Python float or int, as float() converts it; 0 for anything else
    # (the caller's checks decide).
    cdef long long i
    cdef int overflow = 0
    if type(value) is float:
        out[0] = <double>value
        return 1
    if type(value) is int:
        i = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            return 0
        out[0] = <double>i  # rounded to nearest, as float() rounds
        return 1
    return 0


cdef int flag(object value, bint* out) noexcept:
    if value is True:
        out[0] = True
        return 1
    if value is False:
        out[0] = False
        return 1
    return 0


cdef int fast_options(object lr, object beta1, object beta2, object eps, object weight_decay,
                      object decoupled_weight_decay, object maximize, object convention,
                      object num_threads, Options* o) noexcept:
    # The hyperparameters when every value is of a common type and in
    # range; 0 (nothing read) otherwise, for the caller's checks to decide.
    cdef long long nt
    cdef int overflow = 0
    if not (real(lr, &o.lr) and real(beta1, &o.beta1) and real(beta2, &o.beta2)
            and real(eps, &o.eps) and real(weight_decay, &o.weight_decay)):
        return 0
    if not (isfinite(o.lr) and o.lr >= 0 and isfinite(o.eps) and o.eps >= 0
            and isfinite(o.weight_decay) and o.weight_decay >= 0
            and 0 <= o.beta1 < 1 and 0 <= o.beta2 < 1):
        return 0
    if not (flag(decoupled_weight_decay, &o.decoupled_weight_decay)
            and flag(maximize, &o.maximize)):
        return 0
    if type(convention) is not str:
        return 0
    if convention == "torch":
        o.torch_convention = True
    elif convention == "spec":
        o.torch_convention = False
    else:
        return 0
    if num_threads is None:
        o.threads = 0
    elif type(num_threads) is int:
        nt = PyLong_AsLongLongAndOverflow(num_threads, &overflow)
        if overflow or nt < 1 or nt > THREAD_LIMIT:
            return 0
        o.threads = <int>nt
    else:
        return 0
    return 1


cdef int fast_step(object t, long long* step) noexcept:
    # The step count when it is an int from 1 to LAST_STEP; 0 otherwise.
    cdef int overflow = 0
    if type(t) is not int:
        return 0
    step[0] = PyLong_AsLongLongAndOverflow(t, &overflow)
    return not overflow and 1 <= step[0] <= LAST_STEP


cdef bint step_in_range(double t) noexcept nogil:
    # Whether t is a whole number from 1 to below MAX_STEP.
    return t >= 1 and t < STEP_LIMIT and t == <double><long long>t


cdef Coefficients coefficients(const Options* o, long long t) noexcept nogil:
    # The per-call coefficients in double precision: the one place where the
    # step size is computed.
    cdef Coefficients k
    k.beta1 = o.beta1
    k.one_minus_beta1 = 1.0 - o.beta1
    k.beta2 = o.beta2
    k.eps = o.eps
    k.step_size = o.lr / (1.0 - pow(o.beta1, <double>t))
    k.weight_decay = o.weight_decay
    k.lr_weight_decay = o.lr * o.weight_decay
    k.torch_convention = o.torch_convention
    k.maximize = o.maximize
    k.l2_weight_decay = o.weight_decay != 0 and not o.decoupled_weight_decay
    k.decoupled_weight_decay = o.weight_decay != 0 and o.decoupled_weight_decay
    return k


cdef Options checked_options(double lr, double beta1, double beta2, double eps,
                             double weight_decay, bint decoupled_weight_decay, bint maximize,
                             str convention, int num_threads) noexcept:
    # Options from hyperparameters the caller checked.
    cdef Options o
    o.lr = lr
    o.beta1 = beta1
    o.beta2 = beta2
    o.eps = eps
    o.weight_decay = weight_decay
    o.decoupled_weight_decay = decoupled_weight_decay
    o.maximize = maximize
    o.torch_convention = convention == "torch"
    o.threads = num_threads
    return o
