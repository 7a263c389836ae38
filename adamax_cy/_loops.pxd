# What the kernel (_kernel.pyx) and the loop modules built for each
# instruction-set level (_loops_*.pyx, all from _loops.pxi) share.

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


cdef struct Loops:
    # The serial loops over elements [start, stop) of one level; the
    # kernel splits the work between threads and calls these. The updates
    # take the variant of the loop for the arrays' addresses (``variant``
    # below, which depends on them modulo 4096 only), or -1 to choose it.
    const char* level
    int (*variant)(const void*, const void*, const void*, const void*) noexcept nogil
    void (*update32)(float*, const float*, float*, float*, Py_ssize_t, Py_ssize_t,
                     const Coefficients*, int) noexcept nogil
    void (*update64)(double*, const double*, double*, double*, Py_ssize_t, Py_ssize_t,
                     const Coefficients*, int) noexcept nogil
    void (*floor32)(float*, const float*, float*, float*, Py_ssize_t, Py_ssize_t,
                    double) noexcept nogil
    void (*floor64)(double*, const double*, double*, double*, Py_ssize_t, Py_ssize_t,
                    double) noexcept nogil
    void (*division32)(float*, const float*, float*, float*, Py_ssize_t, Py_ssize_t,
                       double) noexcept nogil
    void (*division64)(double*, const double*, double*, double*, Py_ssize_t, Py_ssize_t,
                       double) noexcept nogil
