# Many arrays (included by _kernel.pyx): quadruples of float32 and float64
# arrays laid end to end in two tables and split between threads by
# elements; the checked step (step_many), its checks alone
# (check_many_fast) and the trusting step (update_many).
#
# A training loop steps the same arrays at every call. So the tables of
# the last call stay in LAST, with whether its intervals were found
# disjoint: a call whose arrays have the data, dtypes and sizes found there
# writes no table and needs no overlap test, only the checks of each
# quadruple (dtype, shape, flags), which its headers can change; those run
# on the step's threads, split between them, before it.

cdef extern from "Python.h":
    void incref "Py_INCREF"(PyObject*)
    void decref "Py_DECREF"(PyObject*)

cdef extern from *:
    """
    typedef void (*adamax_cy_block)(const void* work, Py_ssize_t b, Py_ssize_t blocks);

    /* body(work, b, blocks) for each b in [0, blocks), on up to `threads`
       OpenMP threads. Unlike Cython's prange, which releases the GIL when
       the calling thread holds it, this leaves the GIL as it is: a call
       that keeps the GIL (run_many) keeps it while its threads run. */
    static void adamax_cy_run_blocks(adamax_cy_block body, const void* work, Py_ssize_t blocks,
                                     int threads) {
        Py_ssize_t b;
    #ifdef _OPENMP
        #pragma omp parallel for schedule(static) num_threads(threads)
    #endif
        for (b = 0; b < blocks; b++) body(work, b, blocks);
    }
    """
    ctypedef void (*Block)(const void* work, Py_ssize_t b, Py_ssize_t blocks) noexcept nogil
    void run_blocks "adamax_cy_run_blocks"(Block body, const void* work, Py_ssize_t blocks,
                                           int threads) noexcept nogil


cdef extern from *:
    """
    typedef int (*adamax_cy_part_check)(const void* work, Py_ssize_t lo, Py_ssize_t hi);

    /* run_blocks after check(check_work, lo, hi) has passed on every part
       of [0, count), the parts split between the same threads: they check
       while the team starts, and no block is run unless every part passed
       (a barrier between). Returns whether they all passed. Leaves the GIL
       as it is, as run_blocks does. */
    static int adamax_cy_run_checked(adamax_cy_part_check check, const void* check_work,
                                     Py_ssize_t count, adamax_cy_block body, const void* work,
                                     Py_ssize_t blocks, int threads) {
        int failed = 0;
        Py_ssize_t b;
    #ifdef _OPENMP
        #pragma omp parallel num_threads(threads) private(b)
        {
            Py_ssize_t t = omp_get_thread_num(), team = omp_get_num_threads();
            int stop;
            if (!check(check_work, t * count / team, (t + 1) * count / team)) {
                #pragma omp atomic write
                failed = 1;
            }
            #pragma omp barrier
            #pragma omp atomic read
            stop = failed;
            if (!stop) {  /* the same for every thread: nothing is written after the barrier */
                #pragma omp for schedule(static)
                for (b = 0; b < blocks; b++) body(work, b, blocks);
            }
        }
    #else
        failed = !check(check_work, 0, count);
        if (!failed)
            for (b = 0; b < blocks; b++) body(work, b, blocks);
    #endif
        return !failed;
    }
    """
    ctypedef int (*PartCheck)(const void* work, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil
    bint run_checked "adamax_cy_run_checked"(PartCheck check, const void* check_work,
                                             Py_ssize_t count, Block body, const void* work,
                                             Py_ssize_t blocks, int threads) noexcept nogil


cdef struct ManyWork:
    # The arguments of many_range, for run_blocks.
    const Table* t
    const Coefficients* k
    bint is64  # float64 arrays, else float32


cdef void many_block(const void* work, Py_ssize_t b, Py_ssize_t blocks) noexcept nogil:
    # Block b of many_blocks.
    cdef const ManyWork* w = <const ManyWork*>work
    cdef Py_ssize_t n = w.t.offsets[w.t.count]
    if w.is64:
        many_range(<double*>NULL, w.t, w.k, b * n // blocks, (b + 1) * n // blocks)
    else:
        many_range(<float*>NULL, w.t, w.k, b * n // blocks, (b + 1) * n // blocks)


cdef struct QuadrupleCheck:
    # The arguments of check_part: a call's sequences, and the dtype its
    # quadruples had in LAST.
    PyObject** arrays[4]
    int typenum
    int d


cdef int check_part(const void* work, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # Whether quadruples [lo, hi) pass the fast checks and are those of LAST
    # at their places (reads only).
    cdef const QuadrupleCheck* c = <const QuadrupleCheck*>work
    cdef Py_ssize_t j, n = 0
    for j in range(lo, hi):
        if fast_quadruple(c.arrays[0][j], c.arrays[1][j], c.arrays[2][j], c.arrays[3][j],
                          &n) != c.typenum:
            return False
        if not entry_as_last(j, c.d, data(c.arrays[0][j]), data(c.arrays[1][j]),
                             data(c.arrays[2][j]), data(c.arrays[3][j]), n):
            return False
    return True


cdef bint several_arrays(const Table* t) noexcept nogil:
    # Whether more than one entry of t has elements (one is the loop of a
    # single array, and is measured with single arrays).
    cdef Py_ssize_t j, found = 0
    for j in range(t.count):
        if t.offsets[j + 1] > t.offsets[j]:
            found += 1
            if found > 1:
                return True
    return False


cdef bint many_blocks(
    floating* dtype_tag,
    const Table* t,
    const Coefficients* k,
    int num_threads,
    const QuadrupleCheck* checks=NULL,
) noexcept nogil:
    # The arrays of table t are laid end to end (t.offsets[j] is where array
    # j starts, t.offsets[t.count] the total) and split by elements, so one
    # large array among many small ones still keeps every thread busy. Runs
    # with the GIL held or not, as the caller does. With ``checks``, they
    # come first, on the same threads, and nothing is written unless they
    # pass (returns whether they did).
    cdef Py_ssize_t n = t.offsets[t.count]
    cdef int threads = resolve_threads(num_threads)
    cdef Timed timed  # the default adapts to a busy machine (_kernel_policy.pxi)
    cdef Py_ssize_t blocks = block_count(n, threads)
    cdef ManyWork work
    # (several_arrays only for a call the policy decides: one on threads by default)
    blocks = adapt(&timed, n, sizeof(floating), blocks, num_threads,
                   blocks > 1 and num_threads <= 0 and several_arrays(t))
    if blocks == 1:  # without entering OpenMP (see update_blocks)
        if checks != NULL and not check_part(checks, 0, t.count):
            not_adapted(&timed)
            return False
        many_range(dtype_tag, t, k, 0, n)
    else:
        work.t, work.k = t, k
        work.is64 = floating is double
        if checks == NULL:
            run_blocks(many_block, &work, blocks, threads)
        elif not run_checked(check_part, checks, t.count, many_block, &work, blocks, threads):
            not_adapted(&timed)
            return False
    adapted(&timed)
    return True


cdef inline void many_range(
    floating* dtype_tag,
    const Table* t,
    const Coefficients* k,
    Py_ssize_t lo,
    Py_ssize_t hi,
) noexcept nogil:
    # Elements [lo, hi) of the arrays of table t laid end to end.
    cdef Py_ssize_t j = 0, stop
    cdef const Py_ssize_t* offsets = t.offsets
    while j < t.count and offsets[j + 1] <= lo:
        j = j + 1
    while lo < hi:
        stop = offsets[j + 1] if offsets[j + 1] < hi else hi
        if stop > lo:  # (an entry without elements: its pointers are not read)
            update_range(<floating*>t.params[j], <const floating*>t.grads[j],
                         <floating*>t.ms[j], <floating*>t.us[j],
                         lo - offsets[j], stop - offsets[j], k, t.variants[j])
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
    tables[0].variants = <signed char*>(tables[1].offsets + count + 1)
    tables[1].variants = tables[0].variants + count
    empty_tables(tables)
    return <char*>tables[0].variants + variants_bytes(count)


cdef bint table_blocks(const Table* t, int d, const Coefficients* k, int threads,
                       const QuadrupleCheck* checks=NULL) noexcept nogil:
    # many_blocks on table t, of float32 (d = 0) or float64 arrays.
    if d == 0:
        return many_blocks(<float*>NULL, t, k, threads, checks)
    return many_blocks(<double*>NULL, t, k, threads, checks)


cdef void run_tables(const Table* tables, const Coefficients* k, int threads) noexcept nogil:
    # One step on every quadruple of the two tables.
    cdef int d
    for d in range(2):
        if tables[d].offsets[tables[d].count]:
            table_blocks(&tables[d], d, k, threads)


cdef struct Layout:
    # The tables of the last call: an entry per quadruple at its index in
    # both tables, with no elements in the one of the other dtype.
    Table tables[2]
    char* memory      # room for the tables of ``room`` quadruples
    Py_ssize_t room
    Py_ssize_t count  # quadruples in the tables
    bint disjoint     # their intervals were found disjoint
    const Loops* loops  # the level whose variants the tables hold


# Read and written with the GIL held only (so concurrent calls take turns);
# a call that releases the GIL runs on a copy of the tables.
cdef Layout LAST
# LAST always has room for this many quadruples (about 80 bytes each).
cdef Py_ssize_t ROOM_KEPT = 1024
# A call of at most this many elements keeps the GIL while it runs (a
# fraction of a millisecond, but up to a scheduler time slice when threads
# asked for explicitly wait for a busy core; the default then runs
# serially): it runs on LAST itself, and holding a reference to every array,
# which costs a noticeable part of a small step (a cache miss on each array
# after the step's own traffic), is not needed.
cdef Py_ssize_t KEEP_GIL = 1 << 18
keep_gil_elements = KEEP_GIL


cdef inline bint entry_as_last(Py_ssize_t j, int d, uintptr_t p, uintptr_t g, uintptr_t m,
                               uintptr_t u, Py_ssize_t n) noexcept nogil:
    # Whether entry j of LAST holds this quadruple (of dtype d).
    cdef const Table* t = &LAST.tables[d]
    cdef const Table* other = &LAST.tables[1 - d]
    if j >= LAST.count or other.offsets[j + 1] != other.offsets[j]:
        return False
    if t.offsets[j + 1] - t.offsets[j] != n:
        return False
    return n == 0 or (t.params[j] == p and t.grads[j] == g and t.ms[j] == m and t.us[j] == u)


cdef inline void set_entry(Py_ssize_t j, int d, uintptr_t p, uintptr_t g, uintptr_t m,
                           uintptr_t u, Py_ssize_t n) noexcept nogil:
    # Entry j of LAST (entries before it set).
    cdef Table* t = &LAST.tables[d]
    cdef Table* other = &LAST.tables[1 - d]
    t.params[j] = p
    t.grads[j] = g
    t.ms[j] = m
    t.us[j] = u
    t.offsets[j + 1] = t.offsets[j] + n
    t.variants[j] = ACTIVE.variant(<void*>p, <void*>g, <void*>m, <void*>u) if n else -1
    other.offsets[j + 1] = other.offsets[j]


cdef int make_room(Py_ssize_t count) except -1:
    # LAST with room for ``count`` quadruples, and not for more than 4 times
    # as many above ROOM_KEPT (its tables forgotten when it changes).
    cdef char* memory
    cdef Py_ssize_t room = count if count > ROOM_KEPT else ROOM_KEPT
    if LAST.loops != ACTIVE:  # (use_level): the variants are another level's
        LAST.count = 0
        LAST.disjoint = False
        LAST.loops = ACTIVE
    if LAST.memory != NULL and count <= LAST.room and LAST.room <= 4 * room:
        return 0
    memory = <char*>PyMem_Malloc(tables_bytes(room))
    if memory == NULL:
        raise MemoryError()
    PyMem_Free(LAST.memory)
    LAST.memory = memory
    LAST.room = room
    LAST.count = 0
    LAST.disjoint = False
    lay_out_tables(LAST.tables, memory, room)
    return 0


cdef int tables_disjoint(Py_ssize_t count) except -1:
    # Whether no written array of LAST's quadruples overlaps another: 1 or 0.
    cdef Py_ssize_t j, n, nspans = 0
    cdef int d, r
    cdef uintptr_t base = UINTPTR_MAX, shortest = UINTPTR_MAX
    cdef uintptr_t* arrays[4]
    cdef const Table* t
    cdef Interval* spans = <Interval*>PyMem_Malloc(8 * count * sizeof(Interval) + 1)
    if spans == NULL:
        raise MemoryError()
    try:
        for j in range(count):
            for d in range(2):
                t = &LAST.tables[d]
                n = (t.offsets[j + 1] - t.offsets[j]) * (sizeof(float) if d == 0 else sizeof(double))
                if n == 0:
                    continue
                arrays[0], arrays[1], arrays[2], arrays[3] = t.params, t.grads, t.ms, t.us
                for r in range(4):
                    spans[nspans] = interval(arrays[r][j], n, r != 1)
                    if spans[nspans].start < base:
                        base = spans[nspans].start
                    nspans += 1
                if <uintptr_t>n < shortest:
                    shortest = n
        return disjoint(spans, spans + 4 * count, nspans, base, shortest)
    finally:
        PyMem_Free(spans)


cdef Py_ssize_t run_many(object params, object grads, object ms, object us,
                         const Coefficients* k, int threads, bint check,
                         bint update=True) except -1:
    # Update every quadruple of the four sequences (lists or tuples of one
    # length) in one call, without the GIL above KEEP_GIL elements. With
    # ``check``, the fast checks come first and 0 is returned (nothing
    # written) when one fails; returns 1 when the step was done (or, without
    # ``update``, when the checks passed).
    cdef Py_ssize_t count, i, j, n, held = 0
    cdef int typenum, d
    cdef bint same
    cdef uintptr_t p, g, m, u
    cdef Table tables[2]
    cdef QuadrupleCheck checks
    cdef PyObject** P
    cdef PyObject** G
    cdef PyObject** M
    cdef PyObject** U
    cdef PyObject** hold = NULL
    cdef char* memory = NULL
    count = len(params)
    if len(grads) != count or len(ms) != count or len(us) != count:
        raise ValueError("the four sequences differ in length")
    make_room(count)
    # Borrowed references from the sequences: nothing below runs Python code
    # until the GIL is released, when another thread may change the caller's
    # lists; by then ``hold`` owns a reference to each array (and so to its memory).
    P = PySequence_Fast_ITEMS(params)
    G = PySequence_Fast_ITEMS(grads)
    M = PySequence_Fast_ITEMS(ms)
    U = PySequence_Fast_ITEMS(us)
    # (A trusted call on the arrays of the last checked one, as the optimizer
    # makes after check_many_fast, keeps them: they are still disjoint.)
    same = LAST.disjoint and count == LAST.count
    if same and check and update:
        # The arrays of the last call, of one dtype, in a call that keeps the
        # GIL: their checks run on the step's threads, just before it (a
        # barrier between). When one is not as it was, nothing was written
        # and the checks below say what changed.
        d = 0 if LAST.tables[0].offsets[count] else 1
        n = LAST.tables[d].offsets[count]
        if 0 < n <= KEEP_GIL and LAST.tables[1 - d].offsets[count] == 0:
            checks.arrays[0], checks.arrays[1], checks.arrays[2], checks.arrays[3] = P, G, M, U
            checks.d = d
            checks.typenum = cnp.NPY_FLOAT32 if d == 0 else cnp.NPY_FLOAT64
            if table_blocks(&LAST.tables[d], d, k, threads, &checks):
                return 1
    for j in range(count):
        if check:
            typenum = fast_quadruple(P[j], G[j], M[j], U[j], &n)
            if typenum == 0:
                if not same:  # tables partly written: not those found disjoint
                    LAST.disjoint = False
                return 0
        else:
            typenum = type_size(P[j], &n)
        d = 0 if typenum == cnp.NPY_FLOAT32 else 1
        p, g, m, u = data(P[j]), data(G[j]), data(M[j]), data(U[j])
        if same and entry_as_last(j, d, p, g, m, u, n):
            continue
        same = False
        LAST.disjoint = False
        set_entry(j, d, p, g, m, u, n)
    LAST.count = LAST.tables[0].count = LAST.tables[1].count = count
    if check and not same:
        if not tables_disjoint(count):
            return 0
        LAST.disjoint = True
    if not update:
        return 1
    if LAST.tables[0].offsets[count] + LAST.tables[1].offsets[count] <= KEEP_GIL:
        run_tables(LAST.tables, k, threads)
        return 1
    # A long step lets other threads run: on its own copy of the tables,
    # holding the arrays.
    memory = <char*>PyMem_Malloc(tables_bytes(count) + 4 * count * sizeof(PyObject*) + 1)
    if memory == NULL:
        raise MemoryError()
    hold = <PyObject**>lay_out_tables(tables, memory, count)
    try:
        for d in range(2):
            memcpy(tables[d].params, LAST.tables[d].params, count * sizeof(uintptr_t))
            memcpy(tables[d].grads, LAST.tables[d].grads, count * sizeof(uintptr_t))
            memcpy(tables[d].ms, LAST.tables[d].ms, count * sizeof(uintptr_t))
            memcpy(tables[d].us, LAST.tables[d].us, count * sizeof(uintptr_t))
            memcpy(tables[d].offsets, LAST.tables[d].offsets, (count + 1) * sizeof(Py_ssize_t))
            memcpy(tables[d].variants, LAST.tables[d].variants, count)
            tables[d].count = count
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


def kept_tables():
    """The tables adamax_step_many kept from its last call (tests): how many
    quadruples, whether their arrays were found disjoint, and the variant of
    the element loop kept for each (-1 for one without elements)."""
    cdef Py_ssize_t j
    variants = []
    for j in range(LAST.count):
        if LAST.tables[0].offsets[j + 1] > LAST.tables[0].offsets[j]:
            variants.append(LAST.tables[0].variants[j])
        elif LAST.tables[1].offsets[j + 1] > LAST.tables[1].offsets[j]:
            variants.append(LAST.tables[1].variants[j])
        else:
            variants.append(-1)
    return {"count": LAST.count, "disjoint": bool(LAST.disjoint), "variants": variants}


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


