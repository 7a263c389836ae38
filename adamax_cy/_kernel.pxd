# What other extensions of the package take from the kernel (they cimport
# it; it imports none of them): the hyperparameters, the coefficients
# computed from them, and the two-table layout that a many-array step runs on.

from libc.stdint cimport uintptr_t

from adamax_cy._loops cimport Coefficients


cdef struct Options:
    # Checked hyperparameters of a call, all but the step count.
    double lr
    double beta1
    double beta2
    double eps
    double weight_decay
    bint decoupled_weight_decay
    bint maximize
    bint torch_convention
    int threads                 # 0: the library's default


cdef int fast_options(object lr, object beta1, object beta2, object eps, object weight_decay,
                      object decoupled_weight_decay, object maximize, object convention,
                      object num_threads, Options* o) noexcept
cdef bint step_in_range(double t) noexcept nogil
cdef Coefficients coefficients(const Options* o, long long t) noexcept nogil


cdef struct Table:
    # The quadruples of one dtype: their data pointers, running offsets and
    # the variant of the element loop for their addresses (-1: the loop
    # chooses). A call's quadruples go in two tables, float32 then float64.
    uintptr_t* params
    uintptr_t* grads
    uintptr_t* ms
    uintptr_t* us
    Py_ssize_t* offsets
    signed char* variants
    Py_ssize_t count


cdef inline size_t variants_bytes(Py_ssize_t count) noexcept nogil:
    # Those of two tables, rounded up to keep what follows them aligned.
    return (2 * count + 7) // 8 * 8


cdef inline size_t tables_bytes(Py_ssize_t count) noexcept nogil:
    # The memory two tables of up to ``count`` quadruples each take.
    return (2 * (4 * count * sizeof(uintptr_t) + (count + 1) * sizeof(Py_ssize_t))
            + variants_bytes(count))


cdef inline void empty_tables(Table* tables) noexcept nogil:
    tables[0].count = tables[1].count = 0
    tables[0].offsets[0] = tables[1].offsets[0] = 0


cdef inline void add_quadruple(Table* table, uintptr_t param, uintptr_t grad, uintptr_t m,
                               uintptr_t u, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t c = table.count
    table.params[c] = param
    table.grads[c] = grad
    table.ms[c] = m
    table.us[c] = u
    table.offsets[c + 1] = table.offsets[c] + n
    table.variants[c] = -1
    table.count = c + 1


cdef char* lay_out_tables(Table* tables, char* memory, Py_ssize_t count) noexcept nogil
cdef void run_tables(const Table* tables, const Coefficients* k, int threads) noexcept nogil
