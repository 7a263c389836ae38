"""The Adamax update: threads, dispatch and the fast checks; numbers only.

The element loops live in one extension module per instruction-set level
(``_loops_<level>``, all built from ``_loops.pxi``); the best level this CPU
supports is chosen once, at import. ``update``, ``update_many``, ``floor``
and ``all_finite`` trust their arguments: the caller
(:mod:`adamax_cy.api`) checked them. ``step_inplace`` and ``step_many``
check their arguments themselves, and update only when every check passes
in the common case; they return False, having written nothing, for the
caller's Python checks to run (and raise the error, or handle the rarer
layouts). ``TensorTable`` is the per-step bookkeeping of the PyTorch
optimizer (``adamax_cy.torch``): it reads tensors through their Python
attributes and DLPack, never importing torch.
"""

import importlib
import os

from cpython.dict cimport PyDict_GetItem
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.weakref cimport PyWeakref_GetObject, PyWeakref_NewRef
from cpython.sequence cimport PySequence_Fast_ITEMS
from cython.parallel cimport prange
from libc.math cimport isfinite, pow
from libc.stdint cimport UINTPTR_MAX, int32_t, int64_t, uint8_t, uint16_t, uint64_t, uintptr_t
from libc.string cimport memset

cimport cython
cimport numpy as cnp

cnp.import_array()

from adamax_cy._loops cimport Coefficients, Loops
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

    /* The highest x86-64 level this CPU and OS support: 1, 3 or 4. */
    static int adamax_cy_cpu_level(void) {
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
        __builtin_cpu_init();
        int v3 = __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2")
                 && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi")
                 && __builtin_cpu_supports("bmi2");
        int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                 && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
                 && __builtin_cpu_supports("avx512vl");
        return v4 ? 4 : (v3 ? 3 : 1);
    #else
        return 1;
    #endif
    }
    """
    const char* ADAMAX_CY_CFLAGS
    const char* ADAMAX_CY_COMPILER
    int adamax_cy_cpu_level() noexcept

ctypedef fused floating:
    float
    double

# More threads than this are refused: thread creation would fail (and
# abort the process inside the OpenMP runtime) long before they could help.
cdef int THREAD_LIMIT = 1024
thread_limit = THREAD_LIMIT

# Below this many elements one thread does the whole step: starting a team
# costs more than it saves. Measured on 2 cores (AMD EPYC, AVX-512) with
# ``python -m adamax_cy.bench --threshold`` at a quiet moment: all threads
# beat one from about 32,768 float32 and 16,384-24,576 float64 elements.
cdef Py_ssize_t SERIAL_THRESHOLD = 32768
serial_threshold = SERIAL_THRESHOLD


def set_serial_threshold(Py_ssize_t n):
    """Set the serial threshold in elements (to measure it); returns the previous one."""
    global SERIAL_THRESHOLD, serial_threshold
    previous = SERIAL_THRESHOLD
    SERIAL_THRESHOLD = n
    serial_threshold = n
    return previous


# ---------------------------------------------------------------- levels

#: Instruction-set levels, oldest first, and the module built for each.
LEVELS = ("baseline", "x86-64-v3", "x86-64-v4")
_MODULES = {"baseline": "_loops_baseline", "x86-64-v3": "_loops_x86_64_v3",
            "x86-64-v4": "_loops_x86_64_v4"}
_CPU_RANK = {1: 0, 3: 1, 4: 2}

cdef const Loops* ACTIVE = NULL
cdef dict _capsules = {}  # level -> capsule (keeps its module's loops alive)


def _load_levels():
    # The levels both built and supported by this CPU, oldest first.
    supported = LEVELS[:_CPU_RANK[adamax_cy_cpu_level()] + 1]
    for name in supported:
        try:
            module = importlib.import_module("adamax_cy." + _MODULES[name])
        except ImportError:  # not built for this level
            continue
        _capsules[name] = module.loops()


def available_levels():
    """The instruction-set levels built here that this CPU can run, oldest first."""
    return tuple(_capsules)


def level():
    """The instruction-set level whose loops are in use."""
    return ACTIVE.level.decode()


def use_level(name):
    """Use the loops of level ``name``; returns the previous level (tests, benchmark)."""
    global ACTIVE
    if name not in _capsules:
        raise ValueError(f"level {name!r} is not available here; available: "
                         f"{available_levels()}")
    previous = None if ACTIVE == NULL else level()
    ACTIVE = <const Loops*>PyCapsule_GetPointer(_capsules[name], b"adamax_cy._loops.Loops")
    return previous


def _initial_level():
    # ADAMAX_CY_LEVEL caps the level (for example "baseline"); the default
    # is the highest available.
    available = available_levels()
    wanted = os.environ.get("ADAMAX_CY_LEVEL", "").strip()
    if wanted in LEVELS:
        below = [name for name in available if LEVELS.index(name) <= LEVELS.index(wanted)]
        if below:
            return below[len(below) - 1]
    if not available:
        raise ImportError("adamax_cy: no build of the element loops can be imported")
    return available[len(available) - 1]


_load_levels()
use_level(_initial_level())


# ---------------------------------------------------------------- threads

cdef inline int resolve_threads(int num_threads) noexcept nogil:
    return omp_get_max_threads() if num_threads <= 0 else num_threads


cdef inline Py_ssize_t block_count(Py_ssize_t n, int threads) noexcept nogil:
    return threads if n >= SERIAL_THRESHOLD else 1


cdef inline void update_range(floating* param, const floating* grad, floating* m,
                              floating* u, Py_ssize_t start, Py_ssize_t stop,
                              const Coefficients* k) noexcept nogil:
    if floating is float:
        ACTIVE.update32(param, grad, m, u, start, stop, k)
    else:
        ACTIVE.update64(param, grad, m, u, start, stop, k)


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
    cdef Py_ssize_t blocks = block_count(n, threads)
    cdef Py_ssize_t b
    # Serial below the threshold without entering OpenMP at all: Cython lowers
    # use_threads_if to "omp parallel if(...)", which still calls into the
    # runtime (about half a microsecond) when the condition is false.
    if blocks == 1:
        update_range(param, grad, m, u, 0, n, k)
        return
    for b in prange(blocks, schedule="static", num_threads=threads):
        update_range(param, grad, m, u, b * n // blocks, (b + 1) * n // blocks, k)


cdef Coefficients make_coefficients(
    double beta1, double beta2, double eps, double step_size,
    double weight_decay, double lr_weight_decay,
    bint torch_convention, bint maximize, bint decoupled_weight_decay,
) noexcept nogil:
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


# ---------------------------------------------------------------- the fast checks

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


cdef int fast_coefficients(
    object t, object lr, object beta1, object beta2, object eps, object weight_decay,
    object decoupled_weight_decay, object maximize, object convention, object num_threads,
    Coefficients* k, int* threads,
) noexcept:
    # The coefficients of api.coefficients() when every value is of a common
    # type and in range; 0 (nothing computed) otherwise.
    cdef double lr_, beta1_, beta2_, eps_, wd
    cdef bint decoupled, maximize_, torch_convention
    cdef long long step, nt
    cdef int overflow = 0
    if type(t) is not int:
        return 0
    step = PyLong_AsLongLongAndOverflow(t, &overflow)
    if overflow or step < 1:
        return 0
    if not (real(lr, &lr_) and real(beta1, &beta1_) and real(beta2, &beta2_)
            and real(eps, &eps_) and real(weight_decay, &wd)):
        return 0
    if not (isfinite(lr_) and lr_ >= 0 and isfinite(eps_) and eps_ >= 0
            and isfinite(wd) and wd >= 0 and 0 <= beta1_ < 1 and 0 <= beta2_ < 1):
        return 0
    if not (flag(decoupled_weight_decay, &decoupled) and flag(maximize, &maximize_)):
        return 0
    if type(convention) is not str:
        return 0
    if convention == "torch":
        torch_convention = True
    elif convention == "spec":
        torch_convention = False
    else:
        return 0
    if num_threads is None:
        threads[0] = 0
    elif type(num_threads) is int:
        nt = PyLong_AsLongLongAndOverflow(num_threads, &overflow)
        if overflow or nt < 1 or nt > THREAD_LIMIT:
            return 0
        threads[0] = <int>nt
    else:
        return 0
    k[0] = make_coefficients(beta1_, beta2_, eps_, lr_ / (1.0 - pow(beta1_, <double>step)),
                             wd, lr_ * wd, torch_convention, maximize_, decoupled)
    return 1


cdef extern from *:
    """
    /* written: the array is written by the step (param, m, u), not only read (grad). */
    typedef struct { uintptr_t start; uintptr_t stop; int written; } adamax_cy_interval;

    /* Sort intervals by start: quicksort (middle pivot) with insertion sort
       for short runs, comparisons inline (qsort's calls through a pointer
       cost more than the sorting itself here). */
    static void adamax_cy_sort(adamax_cy_interval* a, Py_ssize_t n) {
        while (n > 16) {
            uintptr_t pivot = a[n / 2].start;
            Py_ssize_t i = 0, j = n - 1;
            for (;;) {
                while (a[i].start < pivot) i++;
                while (a[j].start > pivot) j--;
                if (i >= j) break;
                adamax_cy_interval t = a[i]; a[i] = a[j]; a[j] = t;
                i++; j--;
            }
            /* [0, j] <= pivot <= [j + 1, n): recurse on the smaller side */
            if (j + 1 < n - j - 1) { adamax_cy_sort(a, j + 1); a += j + 1; n -= j + 1; }
            else { adamax_cy_sort(a + j + 1, n - j - 1); n = j + 1; }
        }
        for (Py_ssize_t i = 1; i < n; i++) {
            adamax_cy_interval t = a[i];
            Py_ssize_t j = i;
            while (j > 0 && a[j - 1].start > t.start) { a[j] = a[j - 1]; j--; }
            a[j] = t;
        }
    }

    /* Sort a[0, n) by the key (start - base) >> shift (base at most every
       start), a least-significant-digit radix sort through scratch (room for
       n intervals) with digits of about log2(n) bits; returns the sorted
       array, a or scratch. Equal keys come in no particular order. */
    static adamax_cy_interval* adamax_cy_radix_sort(
            adamax_cy_interval* a, adamax_cy_interval* scratch, Py_ssize_t n,
            uintptr_t base, int shift) {
        Py_ssize_t count[1 << 11];
        uintptr_t keys = 0;
        int bits = 0, width = 0, passes, pass;
        for (Py_ssize_t i = 0; i < n; i++) keys |= (a[i].start - base) >> shift;
        while (bits < 64 && (keys >> bits)) bits++;
        while (width < 11 && ((Py_ssize_t)1 << width) < n) width++;
        if (bits == 0) return a;
        passes = (bits + width - 1) / width;
        width = (bits + passes - 1) / passes;
        for (pass = 0; pass < passes; pass++) {
            int at = shift + pass * width;
            uintptr_t mask = ((uintptr_t)1 << width) - 1;
            Py_ssize_t total = 0, buckets = (Py_ssize_t)1 << width;
            adamax_cy_interval* t;
            for (Py_ssize_t b = 0; b < buckets; b++) count[b] = 0;
            for (Py_ssize_t i = 0; i < n; i++) count[((a[i].start - base) >> at) & mask]++;
            for (Py_ssize_t b = 0; b < buckets; b++) {
                Py_ssize_t c = count[b]; count[b] = total; total += c;
            }
            for (Py_ssize_t i = 0; i < n; i++)
                scratch[count[((a[i].start - base) >> at) & mask]++] = a[i];
            t = a; a = scratch; scratch = t;
        }
        return a;
    }
    """
    ctypedef struct Interval "adamax_cy_interval":
        uintptr_t start
        uintptr_t stop
        int written
    void sort_intervals "adamax_cy_sort"(Interval* a, Py_ssize_t n) noexcept nogil
    Interval* radix_sort_intervals "adamax_cy_radix_sort"(
        Interval* a, Interval* scratch, Py_ssize_t n, uintptr_t base, int shift) noexcept nogil


cdef inline bint overlap(Interval a, Interval b) noexcept nogil:
    return a.start < b.stop and b.start < a.stop


cdef inline Interval interval(PyObject* a, Py_ssize_t nbytes, bint written) noexcept:
    cdef Interval r
    r.start = <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>a)
    r.stop = r.start + <uintptr_t>nbytes
    r.written = written
    return r


cdef inline bint like(PyObject* a, PyObject* param, int flags) noexcept:
    # An exact ndarray of param's dtype and shape with these flags.
    cdef int d
    cdef cnp.npy_intp* shape
    cdef cnp.npy_intp* param_shape
    if type(<object>a) is not cnp.ndarray:
        return False
    if (cnp.PyArray_FLAGS(<cnp.ndarray>a) & flags) != flags:
        return False
    # The same dtype object (the common case) or an equal native one.
    if (cnp.PyArray_DESCR(<cnp.ndarray>a) != cnp.PyArray_DESCR(<cnp.ndarray>param)
            and (cnp.PyArray_TYPE(<cnp.ndarray>a) != cnp.PyArray_TYPE(<cnp.ndarray>param)
                 or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a))):
        return False
    if cnp.PyArray_NDIM(<cnp.ndarray>a) != cnp.PyArray_NDIM(<cnp.ndarray>param):
        return False
    shape = cnp.PyArray_DIMS(<cnp.ndarray>a)
    param_shape = cnp.PyArray_DIMS(<cnp.ndarray>param)
    for d in range(cnp.PyArray_NDIM(<cnp.ndarray>a)):
        if shape[d] != param_shape[d]:
            return False
    return True


cdef inline int fast_quadruple(PyObject* param, PyObject* grad, PyObject* m, PyObject* u,
                               Py_ssize_t* size) noexcept:
    # The typenum of the quadruple when the four are C-contiguous arrays of
    # one native float dtype and one shape, param, m and u writable, with its
    # element count in size; else 0. Overlaps are checked by the callers.
    # (Borrowed references: nothing here can run Python code.)
    cdef int typenum, d
    cdef int written = cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_WRITEABLE
    cdef Py_ssize_t n = 1
    cdef cnp.npy_intp* shape
    if type(<object>param) is not cnp.ndarray:
        return 0
    typenum = cnp.PyArray_TYPE(<cnp.ndarray>param)
    if ((typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64)
            or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>param)
            or (cnp.PyArray_FLAGS(<cnp.ndarray>param) & written) != written):
        return 0
    if not (like(grad, param, cnp.NPY_ARRAY_C_CONTIGUOUS) and like(m, param, written)
            and like(u, param, written)):
        return 0
    shape = cnp.PyArray_DIMS(<cnp.ndarray>param)
    for d in range(cnp.PyArray_NDIM(<cnp.ndarray>param)):
        n *= shape[d]
    size[0] = n
    return typenum


def step_inplace(param, grad, m, u, t, lr, beta1, beta2, eps, weight_decay,
                 decoupled_weight_decay, maximize, convention, num_threads):
    """One in-place step when every check passes; False (nothing written) otherwise."""
    cdef Coefficients k
    cdef int threads, typenum, i, j
    cdef Py_ssize_t n, nbytes
    cdef Interval spans[4]
    if not fast_coefficients(t, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay,
                             maximize, convention, num_threads, &k, &threads):
        return False
    typenum = fast_quadruple(<PyObject*>param, <PyObject*>grad, <PyObject*>m, <PyObject*>u, &n)
    if typenum == 0:
        return False
    nbytes = n * (<Py_ssize_t>sizeof(float) if typenum == cnp.NPY_FLOAT32 else
                  <Py_ssize_t>sizeof(double))
    spans[0] = interval(<PyObject*>param, nbytes, True)
    spans[1] = interval(<PyObject*>grad, nbytes, False)
    spans[2] = interval(<PyObject*>m, nbytes, True)
    spans[3] = interval(<PyObject*>u, nbytes, True)
    for i in range(4):
        for j in range(i + 1, 4):
            if overlap(spans[i], spans[j]):
                return False
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            update_blocks(<float*>spans[0].start, <const float*>spans[1].start,
                          <float*>spans[2].start, <float*>spans[3].start, n, &k, threads)
    else:
        with nogil:
            update_blocks(<double*>spans[0].start, <const double*>spans[1].start,
                          <double*>spans[2].start, <double*>spans[3].start, n, &k, threads)
    return True


# ---------------------------------------------------------------- many arrays

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
    cdef Py_ssize_t blocks = block_count(n, threads)
    cdef Py_ssize_t b
    if blocks == 1:  # without entering OpenMP (see update_blocks)
        many_range(dtype_tag, params, grads, ms, us, offsets, count, k, 0, n)
        return
    for b in prange(blocks, schedule="static", num_threads=threads):
        many_range(dtype_tag, params, grads, ms, us, offsets, count, k,
                   b * n // blocks, (b + 1) * n // blocks)


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


cdef struct Table:
    # The quadruples of one dtype: their data pointers and running offsets.
    uintptr_t* params
    uintptr_t* grads
    uintptr_t* ms
    uintptr_t* us
    Py_ssize_t* offsets
    Py_ssize_t count


# A call's quadruples go in two tables, float32 then float64.

cdef inline size_t tables_bytes(Py_ssize_t count) noexcept nogil:
    # The memory two tables of up to ``count`` quadruples each take.
    return 2 * (4 * count * sizeof(uintptr_t) + (count + 1) * sizeof(Py_ssize_t))


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
    table.count = c + 1


cdef void run_tables(const Table* tables, const Coefficients* k, int threads) noexcept nogil:
    # One step on every quadruple of the two tables.
    if tables[0].count:
        many_blocks(<float*>NULL, tables[0].params, tables[0].grads, tables[0].ms,
                    tables[0].us, tables[0].offsets, tables[0].count, k, threads)
    if tables[1].count:
        many_blocks(<double*>NULL, tables[1].params, tables[1].grads, tables[1].ms,
                    tables[1].us, tables[1].offsets, tables[1].count, k, threads)


# Up to this many intervals are sorted by comparisons, more by radix.
cdef Py_ssize_t RADIX_FROM = 64
# The most runs of intervals in address order that by_runs merges.
cdef enum:
    MAX_RUNS = 16


cdef inline bint sweep_one(const Interval* s, uintptr_t* stop_any,
                           uintptr_t* stop_written) noexcept nogil:
    # One step of the sweep: whether s overlaps none of the intervals before
    # it in order of start that it must not (a written interval none, a read
    # one no written one), whose stops stop_any and stop_written bound.
    if s.start < (stop_any[0] if s.written else stop_written[0]):
        return False
    if s.stop > stop_any[0]:
        stop_any[0] = s.stop
    if s.written and s.stop > stop_written[0]:
        stop_written[0] = s.stop
    return True


cdef bint sweep(const Interval* spans, Py_ssize_t n) noexcept nogil:
    # Whether no written interval overlaps another (read ones may overlap
    # each other), the intervals being in order of start.
    cdef Py_ssize_t i
    cdef uintptr_t stop_any = 0, stop_written = 0
    for i in range(n):
        if not sweep_one(&spans[i], &stop_any, &stop_written):
            return False
    return True


cdef int by_runs(const Interval* spans, Py_ssize_t n, Py_ssize_t stride) noexcept nogil:
    # The sweep without a sort, for arrays allocated in order. The intervals,
    # taken as spans[0], spans[stride], ..., spans[1], spans[1 + stride], ...,
    # are cut into runs of ascending start, and the runs merged, a block at a
    # time, into the sweep. 0: an overlap; 1: none; -1: undecided (more than
    # MAX_RUNS runs, or runs so interleaved that choosing the next block, at
    # the cost of the runs left, would add up to more than n).
    cdef Py_ssize_t at[MAX_RUNS]  # the next interval of each run
    cdef Py_ssize_t end[MAX_RUNS]  # past its last
    cdef Py_ssize_t r, i, k, best, count = 0, budget = n
    cdef uintptr_t bound, stop_any = 0, stop_written = 0
    for r in range(stride):
        i = r
        while i < n:
            if i == r or spans[i].start < spans[i - stride].start:
                if count == MAX_RUNS:
                    return -1
                at[count] = i
                count += 1
            i += stride
            end[count - 1] = i
    if count * (count + 1) // 2 > budget:  # the least the choices below cost
        return -1
    while count:
        # Take the run of the lowest start up to the next start of another.
        budget -= count
        if budget < 0:
            return -1
        best = 0
        for k in range(1, count):
            if spans[at[k]].start < spans[at[best]].start:
                best = k
        bound = UINTPTR_MAX
        for k in range(count):
            if k != best and spans[at[k]].start < bound:
                bound = spans[at[k]].start
        i = at[best]
        while True:
            if not sweep_one(&spans[i], &stop_any, &stop_written):
                return 0
            i += stride
            if i == end[best] or spans[i].start > bound:
                break
        if i == end[best]:
            count -= 1
            at[best] = at[count]
            end[best] = end[count]
        else:
            at[best] = i
    return 1


cdef bint disjoint(Interval* spans, Interval* scratch, Py_ssize_t n, uintptr_t base,
                   uintptr_t shortest) noexcept nogil:
    # Whether no written interval overlaps another. The quadruples are
    # spans[4 j: 4 j + 4] (param, grad, m, u), base is at most every start,
    # shortest at most every length (and > 0); scratch has room for n.
    #
    # Runs in address order are the common case: in quadruple order (arrays
    # allocated one quadruple at a time), or in the order params, grads, ms,
    # us (one sequence at a time). Otherwise the intervals are sorted by
    # key = (start - base) >> shift, where 2**shift <= shortest, and swept.
    # Intervals of different keys are then in order of start. Two of one key
    # start less than 2**shift apart, so they overlap, and the later one
    # starts before the earlier one stops: the sweep sees it when one of them
    # is written.
    cdef int shift = 0, found = by_runs(spans, n, 1)
    if found < 0:
        found = by_runs(spans, n, 4)
    if found >= 0:
        return found
    if n <= RADIX_FROM:
        sort_intervals(spans, n)
    else:
        while shortest >> (shift + 1):
            shift += 1
        spans = radix_sort_intervals(spans, scratch, n, base, shift)
    return sweep(spans, n)


cdef Py_ssize_t run_many(object params, object grads, object ms, object us,
                         Coefficients* k, int threads, bint check, bint update=True) except -1:
    # Update every quadruple of the four sequences (lists or tuples of one
    # length) in one call. With ``check``, the fast checks come first and 0
    # is returned (nothing written) when one fails; returns 1 when the step
    # was done (or, without ``update``, when the checks passed).
    cdef Py_ssize_t count = len(params), i, j, n, nbytes, nspans = 0
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
    cdef char* memory
    if len(grads) != count or len(ms) != count or len(us) != count:
        raise ValueError("the four sequences differ in length")
    # Borrowed references: nothing in the loop below can run Python code.
    P = PySequence_Fast_ITEMS(params)
    G = PySequence_Fast_ITEMS(grads)
    M = PySequence_Fast_ITEMS(ms)
    U = PySequence_Fast_ITEMS(us)
    memory = <char*>PyMem_Malloc(
        tables_bytes(count) + (8 * count * sizeof(Interval) if check else 0) + 1)
    if memory == NULL:
        raise MemoryError()
    try:
        spans = <Interval*>lay_out_tables(tables, memory, count)
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
        with nogil:
            run_tables(tables, k, threads)
        return 1
    finally:
        PyMem_Free(memory)


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
    cdef Coefficients k = make_coefficients(
        beta1, beta2, eps, step_size, weight_decay, lr_weight_decay,
        torch_convention, maximize, decoupled_weight_decay)
    run_many(params, grads, ms, us, &k, num_threads, False)


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
    cdef Coefficients k
    cdef int threads
    if not fast_coefficients(t, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay,
                             maximize, convention, num_threads, &k, &threads):
        return False
    if not four_sequences(params, grads, ms, us):
        return False
    return run_many(params, grads, ms, us, &k, threads, True) == 1


def check_many_fast(params, grads, ms, us):
    """Whether the quadruples pass the fast checks of ``step_many`` (writes nothing).

    True means they can go to ``update_many`` as they are; False means the
    caller's Python checks must decide.
    """
    cdef Coefficients k
    if not four_sequences(params, grads, ms, us):
        return False
    return run_many(params, grads, ms, us, &k, 1, True, False) == 1


# ---------------------------------------------------------------- the floor

cdef void floor_blocks(floating* param, const floating* grad, floating* m, floating* u,
                       Py_ssize_t n, double scale, int num_threads) noexcept nogil:
    # update_blocks with the floor's loops.
    cdef int threads = resolve_threads(num_threads)
    cdef Py_ssize_t blocks = block_count(n, threads)
    cdef Py_ssize_t b
    if blocks == 1:  # without entering OpenMP (see update_blocks)
        floor_range(param, grad, m, u, 0, n, scale)
        return
    for b in prange(blocks, schedule="static", num_threads=threads):
        floor_range(param, grad, m, u, b * n // blocks, (b + 1) * n // blocks, scale)


cdef inline void floor_range(floating* param, const floating* grad, floating* m, floating* u,
                             Py_ssize_t start, Py_ssize_t stop, double scale) noexcept nogil:
    if floating is float:
        ACTIVE.floor32(param, grad, m, u, start, stop, scale)
    else:
        ACTIVE.floor64(param, grad, m, u, start, stop, scale)


def floor(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] u,
          double scale, int num_threads):
    """The memory floor of a step: adds ``scale * grad`` to param, m and u (no checks).

    The same bytes as a step (4 reads, 3 writes per element), the same
    split between threads and the same instruction-set level, with trivial
    arithmetic: the practical memory limit of the machine.
    """
    if param.shape[0] == 0:
        return
    with nogil:
        floor_blocks(&param[0], &grad[0], &m[0], &u[0], param.shape[0], scale, num_threads)


# ---------------------------------------------------------------- the rest

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


# ---------------------------------------------------------------- tensors

cdef extern from *:
    """
    /* The start of DLPack's DLManagedTensor (dlpack.h, stable since v0.2):
       what a "dltensor" capsule points to. */
    typedef struct { int32_t device_type; int32_t device_id; } adamax_cy_dl_device;
    typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } adamax_cy_dl_dtype;
    typedef struct {
        void* data;
        adamax_cy_dl_device device;
        int32_t ndim;
        adamax_cy_dl_dtype dtype;
        int64_t* shape;
        int64_t* strides;   /* NULL: C-contiguous */
        uint64_t byte_offset;
    } adamax_cy_dl_tensor;
    """
    ctypedef struct DLDevice "adamax_cy_dl_device":
        int32_t device_type
    ctypedef struct DLDataType "adamax_cy_dl_dtype":
        uint8_t code
        uint8_t bits
        uint16_t lanes
    ctypedef struct DLTensor "adamax_cy_dl_tensor":
        void* data
        DLDevice device
        int32_t ndim
        DLDataType dtype
        int64_t* shape
        int64_t* strides
        uint64_t byte_offset

cdef enum:
    DL_CPU = 1
    DL_FLOAT = 2


cdef bint dense_data(const DLTensor* t, Py_ssize_t size, int bits, uintptr_t* data) noexcept:
    # Whether t is a C-contiguous CPU array of ``size`` floats of ``bits``
    # bits; if so, the address of its elements in ``data``.
    cdef int64_t numel = 1, expected = 1
    cdef int d
    if not (t.device.device_type == DL_CPU and t.dtype.code == DL_FLOAT
            and t.dtype.bits == bits and t.dtype.lanes == 1):
        return False
    for d in range(t.ndim):
        numel *= t.shape[d]
    if numel != size:
        return False
    if t.strides != NULL:
        for d in range(t.ndim - 1, -1, -1):
            if t.shape[d] != 1 and t.strides[d] != expected:
                return False
            expected *= t.shape[d]
    data[0] = <uintptr_t>t.data + <uintptr_t>t.byte_offset
    return True


@cython.auto_pickle(False)  # holds raw pointers: never pickled
cdef class TensorTable:
    """The per-step bookkeeping of one parameter group of ``adamax_cy.torch.Adamax``.

    Holds, for each parameter, the data pointers of the parameter, its
    ``exp_avg``, ``exp_inf`` and ``step`` and of its last gradient, with the
    objects they were read from. Each step, :meth:`gather` checks in
    compiled code that these are still current (a few attribute reads per
    parameter) and calls back into Python only for what changed;
    :meth:`prepare` computes the coefficients, :meth:`run` updates. Only
    ``gather`` and the callbacks look at tensors; nothing here imports torch.

    Memory: the caller's ``keep`` holds what the table writes (an alias of
    the parameter, whose address is checked at every step; NumPy views of
    the state tensors, which also stop their storage from being resized);
    a gradient is held only by a weak reference, and read only while it is
    ``p.grad`` at the address and size it had when checked.
    """

    cdef readonly Py_ssize_t count
    cdef readonly bint unchecked     # entries set since mark_checked()
    cdef list params, dtypes, states, exp_avgs, exp_infs, steps_of, grads, keep, copies
    cdef object to_dlpack            # torch.utils.dlpack.to_dlpack
    cdef uintptr_t* param_ptr
    cdef uintptr_t* m_ptr
    cdef uintptr_t* u_ptr
    cdef uintptr_t* step_ptr         # the parameter's 0-d step counter
    cdef uintptr_t* grad_ptr         # of the gradient seen last (weakly held)
    cdef uintptr_t* step_grad        # read this step
    cdef Py_ssize_t* size
    cdef Py_ssize_t* grad_nbytes
    cdef unsigned char* is64
    cdef unsigned char* step64
    cdef unsigned char* present      # an entry is set
    cdef Py_ssize_t* selected        # the parameters with a gradient this step
    cdef Py_ssize_t n_selected
    cdef double* distinct            # step counts after this step, one per distinct value
    cdef Coefficients* ks            # one per distinct value
    cdef Py_ssize_t* which           # selected[i] uses ks[which[i]]
    cdef Py_ssize_t n_distinct
    cdef int threads
    cdef Table work[2]               # float32, float64 quadruples of one call
    cdef char* work_memory

    def __cinit__(self, list params, to_dlpack):
        cdef Py_ssize_t n = len(params)
        cdef Py_ssize_t m = n if n > 0 else 1  # room for one: malloc(0) may return NULL
        self.count = n
        self.to_dlpack = to_dlpack
        self.params = list(params)
        self.dtypes = [None] * n
        self.states = [None] * n
        self.exp_avgs = [None] * n
        self.exp_infs = [None] * n
        self.steps_of = [None] * n
        self.grads = [None] * n
        self.keep = [None] * n
        self.copies = [None] * n
        self.param_ptr = <uintptr_t*>PyMem_Malloc(6 * m * sizeof(uintptr_t))
        self.size = <Py_ssize_t*>PyMem_Malloc(4 * m * sizeof(Py_ssize_t))
        self.distinct = <double*>PyMem_Malloc(m * sizeof(double))
        self.ks = <Coefficients*>PyMem_Malloc(m * sizeof(Coefficients))
        self.is64 = <unsigned char*>PyMem_Malloc(3 * m)
        self.work_memory = <char*>PyMem_Malloc(tables_bytes(m))
        if (self.param_ptr == NULL or self.size == NULL or self.distinct == NULL
                or self.ks == NULL or self.is64 == NULL or self.work_memory == NULL):
            raise MemoryError()
        lay_out_tables(self.work, self.work_memory, m)
        self.m_ptr = self.param_ptr + m
        self.u_ptr = self.m_ptr + m
        self.step_ptr = self.u_ptr + m
        self.grad_ptr = self.step_ptr + m
        self.step_grad = self.grad_ptr + m
        self.grad_nbytes = self.size + m
        self.selected = self.grad_nbytes + m
        self.which = self.selected + m
        self.step64 = self.is64 + m
        self.present = self.step64 + m
        memset(self.present, 0, m)

    def __init__(self, list params, to_dlpack):
        """A table for the parameters ``params``; see the class."""

    def __dealloc__(self):
        PyMem_Free(self.param_ptr)
        PyMem_Free(self.size)
        PyMem_Free(self.distinct)
        PyMem_Free(self.ks)
        PyMem_Free(self.is64)
        PyMem_Free(self.work_memory)

    def set_entry(self, Py_ssize_t j, param, dtype, dict state, exp_avg, exp_inf, step,
                  uintptr_t param_ptr, uintptr_t m_ptr, uintptr_t u_ptr, uintptr_t step_ptr,
                  Py_ssize_t size, bint is64, bint step64, keep):
        """Record parameter ``j``, checked by the caller; ``keep`` holds its memory."""
        self._index(j)
        self.params[j] = param
        self.dtypes[j] = dtype
        self.states[j] = state
        self.exp_avgs[j] = exp_avg
        self.exp_infs[j] = exp_inf
        self.steps_of[j] = step
        self.keep[j] = keep
        self.grads[j] = None
        self.param_ptr[j] = param_ptr
        self.m_ptr[j] = m_ptr
        self.u_ptr[j] = u_ptr
        self.step_ptr[j] = step_ptr
        self.size[j] = size
        self.is64[j] = is64
        self.step64[j] = step64
        self.present[j] = 1
        self.unchecked = True

    def mark_checked(self):
        """The caller checked that no two written tensors of the group overlap."""
        self.unchecked = False

    def set_grad(self, Py_ssize_t j, grad, uintptr_t ptr):
        """This step's gradient of parameter ``j`` (a copy made and checked by the caller).

        ``grad`` is kept alive until the step has run; it is not reused.
        """
        self._index(j)
        self.grads[j] = None
        self.copies[j] = grad
        self.grad_ptr[j] = 0
        self.step_grad[j] = ptr

    cdef _index(self, Py_ssize_t j):
        if not 0 <= j < self.count:
            raise IndexError(f"parameter index {j} out of range")

    cdef inline double step_of(self, Py_ssize_t j) noexcept:
        if self.step64[j]:
            return (<double*>self.step_ptr[j])[0]
        return (<float*>self.step_ptr[j])[0]

    def gather(self, list params, state_of, refresh_entry, refresh_grad):
        """Find this step's parameters and gradients; the number found, or -1.

        -1 means ``params`` are no longer the parameters of this table (make
        a new one). ``refresh_entry(j, p, state_of)`` is called when parameter ``j``
        has no current entry (it calls :meth:`set_entry` or raises), and
        ``refresh_grad(j, p, g)`` when its gradient cannot be read as it is
        (it calls :meth:`set_grad` or raises). Nothing is written.
        """
        cdef Py_ssize_t j, n = 0
        cdef PyObject* found
        cdef uintptr_t ptr
        if not isinstance(state_of, dict):
            raise TypeError("state_of must be a dict")
        self.n_selected = self.n_distinct = 0
        if len(params) != self.count:
            return -1
        for j in range(self.count):
            p = params[j]
            if p is not self.params[j]:
                return -1
            self.copies[j] = None  # a copy lives for one step at most
            g = p.grad
            if g is None:
                continue
            found = PyDict_GetItem(state_of, p)
            if not (self.present[j] and found != NULL and <object>found is self.states[j]
                    and self.entry_current(j, <dict><object>found)
                    and <uintptr_t>p.data_ptr() == self.param_ptr[j]):
                self.refresh(j, p, state_of, refresh_entry)
            if not self.same_grad(j, g) and not self.grad_data(j, g):
                # The parameter may have changed under the same address
                # (p.data = p.data[:k]): its entry is checked again first.
                self.refresh(j, p, state_of, refresh_entry)
                if not self.grad_data(j, g):
                    refresh_grad(j, p, g)
                    if self.copies[j] is None:
                        raise RuntimeError(f"refresh_grad did not set the gradient of parameter {j}")
            self.selected[n] = j
            n += 1
        self.n_selected = n
        return n

    cdef refresh(self, Py_ssize_t j, p, state_of, refresh_entry):
        self.present[j] = 0
        refresh_entry(j, p, state_of)
        if not self.present[j]:
            raise RuntimeError(f"refresh_entry did not set parameter {j}")

    cdef bint entry_current(self, Py_ssize_t j, dict state):
        cdef PyObject* x = PyDict_GetItem(state, "exp_avg")
        if x == NULL or <object>x is not self.exp_avgs[j]:
            return False
        x = PyDict_GetItem(state, "exp_inf")
        if x == NULL or <object>x is not self.exp_infs[j]:
            return False
        x = PyDict_GetItem(state, "step")
        return x != NULL and <object>x is self.steps_of[j]

    cdef bint same_grad(self, Py_ssize_t j, g) except -1:
        # g is the gradient seen last, at the same address and size.
        ref = self.grads[j]
        if ref is None or <object>PyWeakref_GetObject(ref) is not g:
            return False
        if <uintptr_t>g.data_ptr() != self.grad_ptr[j] or g.nbytes != self.grad_nbytes[j]:
            return False
        self.step_grad[j] = self.grad_ptr[j]
        return True

    cdef bint grad_data(self, Py_ssize_t j, g) except -1:
        # Whether the kernel can read gradient g in place: dense,
        # C-contiguous, on the CPU, of the parameter's dtype and size, stored
        # as it reads (no lazy negation); if so, it is recorded. One DLPack
        # export answers all but the last, faster than asking torch each.
        cdef uintptr_t ptr
        try:
            capsule = self.to_dlpack(g)
        except (RuntimeError, TypeError, BufferError):  # sparse, for one
            return False
        if not (dense_data(<const DLTensor*>PyCapsule_GetPointer(capsule, b"dltensor"),
                           self.size[j], 64 if self.is64[j] else 32, &ptr)
                and not g.is_neg()):
            return False
        self.grads[j] = PyWeakref_NewRef(g, None)
        self.grad_ptr[j] = ptr
        self.grad_nbytes[j] = self.size[j] * (8 if self.is64[j] else 4)
        self.step_grad[j] = ptr
        return True

    def written(self):
        """``(param, exp_avg, exp_inf)`` of every parameter with an entry: what a step writes."""
        return [(self.params[j], self.exp_avgs[j], self.exp_infs[j])
                for j in range(self.count) if self.present[j]]

    def selected_params(self):
        """The parameters found by the last :meth:`gather`."""
        return [self.params[self.selected[i]] for i in range(self.n_selected)]

    def prepare(self, lr, beta1, beta2, eps, weight_decay, maximize, convention, num_threads):
        """Compute the coefficients of the gathered parameters; False if a value is off.

        False (nothing computed) when a hyperparameter is not a float or int
        in range, or a step counter is not a whole number from 0 to 2**63 - 2:
        the caller's Python checks then raise the error (or canonicalise the
        values and call again).
        """
        cdef Py_ssize_t i, d, n_distinct = 0
        cdef double t
        cdef int threads
        for i in range(self.n_selected):
            t = self.step_of(self.selected[i]) + 1
            if not (t >= 1 and t < 9223372036854775808.0 and t == <double><long long>t):  # t < 2**63
                return False
            d = 0
            while d < n_distinct and self.distinct[d] != t:
                d += 1
            if d == n_distinct:
                if not fast_coefficients(<long long>t, lr, beta1, beta2, eps, weight_decay,
                                         False, maximize, convention, num_threads,
                                         &self.ks[d], &threads):
                    return False
                self.distinct[d] = t
                n_distinct += 1
            self.which[i] = d
        self.n_distinct = n_distinct
        self.threads = threads if n_distinct else 0
        return True

    def run(self):
        """Update the parameters found by :meth:`gather` and advance their counters."""
        cdef Py_ssize_t i, d, j
        if self.n_selected and not self.n_distinct:
            raise RuntimeError("run() before a successful prepare()")
        for d in range(self.n_distinct):
            empty_tables(self.work)
            for i in range(self.n_selected):
                j = self.selected[i]
                if self.which[i] == d and self.size[j] != 0:
                    add_quadruple(&self.work[self.is64[j]], self.param_ptr[j], self.step_grad[j],
                                  self.m_ptr[j], self.u_ptr[j], self.size[j])
            with nogil:
                run_tables(self.work, &self.ks[d], self.threads)
        for i in range(self.n_selected):
            j = self.selected[i]
            if self.step64[j]:
                (<double*>self.step_ptr[j])[0] += 1
            else:
                (<float*>self.step_ptr[j])[0] += 1
            self.copies[j] = None
        self.n_selected = self.n_distinct = 0
