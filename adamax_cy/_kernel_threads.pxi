# Threads (included by _kernel.pyx): how many, and how the elements of a
# step are split between them.

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


# A child created by fork() runs every step serially: the OpenMP runtime's
# threads do not survive fork, and a parallel region would wait for them
# forever. (os.register_at_fork covers os.fork and multiprocessing's "fork".)
cdef bint FORKED_CHILD = False


def _after_fork_in_child():
    global FORKED_CHILD
    FORKED_CHILD = True


os.register_at_fork(after_in_child=_after_fork_in_child)


cdef inline int resolve_threads(int num_threads) noexcept nogil:
    # The default (OMP_NUM_THREADS, threadpoolctl) has the cap of an explicit
    # count; in a forked child, one thread.
    cdef int n = omp_get_max_threads() if num_threads <= 0 else num_threads
    if FORKED_CHILD:
        return 1
    return n if n <= THREAD_LIMIT else THREAD_LIMIT


cdef inline Py_ssize_t block_count(Py_ssize_t n, int threads) noexcept nogil:
    return threads if n >= SERIAL_THRESHOLD else 1


def max_threads():
    """The number of threads a call with ``num_threads=None`` uses.

    At most ``thread_limit``; 1 in a child created by ``fork()``, where every
    step runs serially (the OpenMP threads do not survive fork).
    """
    return resolve_threads(0)


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
    cdef Py_ssize_t b
    cdef Timed timed  # the default adapts to a busy machine (_kernel_policy.pxi)
    cdef Py_ssize_t blocks = adapt(&timed, n, sizeof(floating), block_count(n, threads),
                                   num_threads, False)
    # Serial below the threshold without entering OpenMP at all: Cython lowers
    # use_threads_if to "omp parallel if(...)", which still calls into the
    # runtime (about half a microsecond) when the condition is false.
    if blocks == 1:
        update_range(param, grad, m, u, 0, n, k, -1)
    else:
        for b in prange(blocks, schedule="static", num_threads=threads):
            update_range(param, grad, m, u, b * n // blocks, (b + 1) * n // blocks, k, -1)
    adapted(&timed)


cdef void floor_blocks(floating* param, const floating* grad, floating* m, floating* u,
                       Py_ssize_t n, double scale, int num_threads,
                       bint division) noexcept nogil:
    # update_blocks with the floor's loops (all threads by default: no policy).
    cdef int threads = resolve_threads(num_threads)
    cdef Py_ssize_t blocks = block_count(n, threads)
    cdef Py_ssize_t b
    if blocks == 1:  # without entering OpenMP (see update_blocks)
        floor_range(param, grad, m, u, 0, n, scale, division)
        return
    for b in prange(blocks, schedule="static", num_threads=threads):
        floor_range(param, grad, m, u, b * n // blocks, (b + 1) * n // blocks, scale,
                    division)
