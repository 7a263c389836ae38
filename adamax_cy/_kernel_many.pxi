# Many arrays (included by _kernel.pyx): quadruples of float32 and float64
# arrays laid end to end in two tables and split between threads by
# elements; the checked step (step_many), its checks alone
# (check_many_fast) and the trusting step (update_many).

cdef extern from "Python.h":
    void incref "Py_INCREF"(PyObject*)
    void decref "Py_DECREF"(PyObject*)

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
    cdef Py_ssize_t b
    cdef Timed timed  # the default adapts to a busy machine (_kernel_policy.pxi)
    cdef Py_ssize_t blocks = adapt(&timed, n, sizeof(floating), block_count(n, threads),
                                   num_threads, True)
    if blocks == 1:  # without entering OpenMP (see update_blocks)
        many_range(dtype_tag, params, grads, ms, us, offsets, count, k, 0, n)
    else:
        for b in prange(blocks, schedule="static", num_threads=threads):
            many_range(dtype_tag, params, grads, ms, us, offsets, count, k,
                       b * n // blocks, (b + 1) * n // blocks)
    adapted(&timed)


cdef inline void many_range(
    floating* dtype_tag,
    const uintptr_t* params,
    const uintptr_t* grads,
    const uintptr_t* ms,
    const uintptr_t* us,
    const Py_ssize_t* offsets,
    Py_ssize_t count,
    const Coefficients* k,
    Py_ssize_t lo,
    Py_ssize_t hi,
) noexcept nogil:
    # Elements [lo, hi) of the arrays laid end to end.
    cdef Py_ssize_t j = 0, stop
    while j < count and offsets[j + 1] <= lo:
        j = j + 1
    while lo < hi:
        stop = offsets[j + 1] if offsets[j + 1] < hi else hi
        update_range(<floating*>params[j], <const floating*>grads[j],
                     <floating*>ms[j], <floating*>us[j],
                     lo - offsets[j], stop - offsets[j], k)
        lo = stop
        j = j + 1

cdef char* lay_out_tables(Table* tables, char* memory, Py_ssize_t count) noexcept nogil:
    # Places two empty tables in ``memory`` (tables_bytes(count) of it);
    # returns where they end.
    cdef int j
    for j in range(2):
        tables[j].params = <uintptr_t*>memory + 4 * count * j
        tables[j].grads = tables[j].params + count
        tables[j].ms = tables[j].grads + count
        tables[j].us = tables[j].ms + count
    tables[0].offsets = <Py_ssize_t*>(<uintptr_t*>memory + 8 * count)
    tables[1].offsets = tables[0].offsets + count + 1
    empty_tables(tables)
    return <char*>(tables[1].offsets + count + 1)


cdef void run_tables(const Table* tables, const Coefficients* k, int threads) noexcept nogil:
    # One step on every quadruple of the two tables.
    if tables[0].count:
        many_blocks(<float*>NULL, tables[0].params, tables[0].grads, tables[0].ms,
                    tables[0].us, tables[0].offsets, tables[0].count, k, threads)
    if tables[1].count:
        many_blocks(<double*>NULL, tables[1].params, tables[1].grads, tables[1].ms,
                    tables[1].us, tables[1].offsets, tables[1].count, k, threads)


cdef Py_ssize_t run_many(object params, object grads, object ms, object us,
                         const Coefficients* k, int threads, bint check,
                         bint update=True) except -1:
    # Update every quadruple of the four sequences (lists or tuples of one
    # length) in one call. With ``check``, the fast checks come first and 0
    # is returned (nothing written) when one fails; returns 1 when the step
    # was done (or, without ``update``, when the checks passed).
    cdef Py_ssize_t count, i, j, n, nbytes, nspans = 0, held = 0
    cdef int typenum
    cdef Table tables[2]
    cdef PyObject* p
    cdef PyObject* g
    cdef PyObject* mm
    cdef PyObject* uu
    cdef uintptr_t base = UINTPTR_MAX, shortest = UINTPTR_MAX
    cdef Interval* spans
    cdef PyObject** P
    cdef PyObject** G
    cdef PyObject** M
    cdef PyObject** U
    cdef PyObject** hold
    cdef char* memory
    count = len(params)
    if len(grads) != count or len(ms) != count or len(us) != count:
        raise ValueError("the four sequences differ in length")
    # Borrowed references from the sequences: nothing below runs Python code
    # until the GIL is released, when another thread may change the caller's
    # lists; by then ``hold`` owns a reference to each array (and so to its memory).
    P = PySequence_Fast_ITEMS(params)
    G = PySequence_Fast_ITEMS(grads)
    M = PySequence_Fast_ITEMS(ms)
    U = PySequence_Fast_ITEMS(us)
    memory = <char*>PyMem_Malloc(
        tables_bytes(count) + (8 * count * sizeof(Interval) if check else 0)
        + (4 * count * sizeof(PyObject*) if update else 0) + 1)
    if memory == NULL:
        raise MemoryError()
    spans = <Interval*>lay_out_tables(tables, memory, count)
    hold = <PyObject**>(spans + (8 * count if check else 0))
    try:
        for j in range(count):
            p = P[j]
            g = G[j]
            mm = M[j]
            uu = U[j]
            if check:
                typenum = fast_quadruple(p, g, mm, uu, &n)
                if typenum == 0:
                    return 0
            else:
                typenum = cnp.PyArray_TYPE(<cnp.ndarray>p)
                n = cnp.PyArray_SIZE(<cnp.ndarray>p)
            if n == 0:
                continue
            if check:
                nbytes = n * (<Py_ssize_t>sizeof(float) if typenum == cnp.NPY_FLOAT32 else
                              <Py_ssize_t>sizeof(double))
                spans[nspans] = interval(p, nbytes, True)
                spans[nspans + 1] = interval(g, nbytes, False)
                spans[nspans + 2] = interval(mm, nbytes, True)
                spans[nspans + 3] = interval(uu, nbytes, True)
                for i in range(nspans, nspans + 4):
                    if spans[i].start < base:
                        base = spans[i].start
                if <uintptr_t>nbytes < shortest:
                    shortest = nbytes
                nspans += 4
                if not update:
                    continue
            add_quadruple(&tables[0] if typenum == cnp.NPY_FLOAT32 else &tables[1],
                          <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>p),
                          <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>g),
                          <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>mm),
                          <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>uu), n)
        if check and not disjoint(spans, spans + 4 * count, nspans, base, shortest):
            return 0
        if not update:
            return 1
        for j in range(count):
            hold[held] = P[j]
            hold[held + 1] = G[j]
            hold[held + 2] = M[j]
            hold[held + 3] = U[j]
            for i in range(held, held + 4):
                incref(hold[i])
            held += 4
        with nogil:
            run_tables(tables, k, threads)
        return 1
    finally:
        for i in range(held):
            decref(hold[i])
        PyMem_Free(memory)


def update_many(list params, list grads, list ms, list us, *,
                long long t, double lr, double beta1, double beta2, double eps,
                double weight_decay, bint decoupled_weight_decay, bint maximize,
                str convention, int num_threads):
    """Update many flat quadruples (float32 and float64 mixed) in one call (no checks).

    The hyperparameters are those of ``adamax_step_many``, checked by the
    caller (``num_threads`` 0 for the default).
    """
    cdef Options o = checked_options(lr, beta1, beta2, eps, weight_decay,
                                     decoupled_weight_decay, maximize, convention, num_threads)
    cdef Coefficients k = coefficients(&o, t)
    run_many(params, grads, ms, us, &k, o.threads, False)


cdef bint four_sequences(object params, object grads, object ms, object us) noexcept:
    # Four lists or tuples of one length (the fast path's shape of arguments).
    for seq in (params, grads, ms, us):
        if type(seq) is not list and type(seq) is not tuple:
            return False
    count = len(params)
    return len(grads) == count and len(ms) == count and len(us) == count


def step_many(params, grads, ms, us, t, lr, beta1, beta2, eps, weight_decay,
              decoupled_weight_decay, maximize, convention, num_threads):
    """A step on many quadruples when every check passes; False (nothing written) otherwise."""
    cdef Options o
    cdef Coefficients k
    cdef long long step
    if not (fast_step(t, &step)
            and fast_options(lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay,
                             maximize, convention, num_threads, &o)):
        return False
    if not four_sequences(params, grads, ms, us):
        return False
    k = coefficients(&o, step)
    return run_many(params, grads, ms, us, &k, o.threads, True) == 1


def check_many_fast(params, grads, ms, us):
    """Whether the quadruples pass the fast checks of ``step_many`` (writes nothing).

    True means they can go to ``update_many`` as they are; False means the
    caller's Python checks must decide.
    """
    cdef Coefficients k
    if not four_sequences(params, grads, ms, us):
        return False
    return run_many(params, grads, ms, us, &k, 1, True, False) == 1


