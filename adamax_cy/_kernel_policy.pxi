# The adaptive default (included by _kernel.pyx): whether a call with
# num_threads=None above the serial threshold runs on all threads or on one.
#
# A parallel step waits for its slowest thread. On a machine whose cores are
# busy with other work, the thread that lands on a busy core waits for a
# scheduler time slice (milliseconds), and a step that takes 20 us on one
# thread can take 4 ms on two. So the default measures itself: per dtype and
# size class (elements between two powers of two) it keeps a running
# estimate of the serial and of the parallel cost per element. A parallel
# call much slower than the serial estimate (a late thread), or parallel
# calls that are on average no faster than serial ones, send that class to
# serial work for a while: until its serial calls have taken BACKOFF times
# the time the late call lost, times a penalty that doubles with each late
# thread and decays with each good parallel call. Then it probes threads
# again. On a quiet machine every REFRESH-th call runs serially to keep the
# serial estimate current. The bookkeeping is two clock reads per call; calls
# below the serial threshold, calls with an explicit num_threads and calls
# with one thread to use never reach it.
#
# Which way a call runs never changes its result (the split of the elements
# between threads does not), and no OpenMP setting of the process changes.
# Concurrent calls share the estimates without a lock: a lost update makes
# an estimate a little less accurate, nothing more.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    /* A monotonic clock (clock_gettime(CLOCK_MONOTONIC) in libgomp). */
    static double adamax_cy_now(void) { return omp_get_wtime(); }
    #else
    static double adamax_cy_now(void) { return 0.0; }  /* one thread: never asked */
    #endif
    """
    double adamax_cy_now() noexcept nogil


cdef struct SizeClass:
    double serial          # seconds per element on one thread (0: not measured yet)
    double parallel        # seconds per element on all threads (0: not measured yet)
    double backoff         # seconds of serial work left before threads are probed again
    double penalty         # multiplies the back-off; doubles with each late thread
    long long calls        # calls with the default in this class
    long long serial_calls
    long long parallel_calls
    long long parallel_samples  # parallel calls in the current estimate
    long long late         # parallel calls that were late (and sent the class to serial)
    long long slow         # times parallel calls were no faster on average


cdef struct Timed:
    SizeClass* cls         # NULL: this call is not measured
    bint parallel
    Py_ssize_t n
    double start


cdef int NCLASSES = 64
cdef SizeClass CLASSES[2][64]   # [float32, float64][bit length of n]
cdef bint ADAPTIVE = True

# A parallel call is late when it takes more than LATE times the serial estimate.
cdef double LATE = 1.5
# Serial work after a late call, in multiples of the time that call lost.
cdef double BACKOFF = 16.0
cdef double MAX_PENALTY = 64.0
cdef double PENALTY_DECAY = 0.9      # per parallel call that was not late
cdef double MAX_BACKOFF = 2.0        # seconds of serial work, at most
cdef long long REFRESH = 64          # every REFRESH-th call is serial when all is well
cdef long long TREND_SAMPLES = 4     # parallel calls before their average is judged
cdef double WEIGHT = 0.125           # of a new sample in a running estimate


cdef inline double running(double estimate, double sample) noexcept nogil:
    # A running mean that a single outlier cannot move more than 4x.
    if estimate == 0:
        return sample
    if sample > 4 * estimate:
        sample = 4 * estimate
    return estimate + WEIGHT * (sample - estimate)


cdef inline Py_ssize_t adapt(Timed* timed, Py_ssize_t n, Py_ssize_t itemsize,
                             Py_ssize_t blocks, int num_threads) noexcept nogil:
    # The blocks this call runs: ``blocks`` or 1. Starts the clock when the
    # call is one the policy decides (the default, above the threshold).
    cdef SizeClass* c
    cdef int bits = 0
    cdef Py_ssize_t rest = n
    timed.cls = NULL
    if blocks == 1 or num_threads > 0 or not ADAPTIVE:
        return blocks
    while rest:
        bits += 1
        rest >>= 1
    c = &CLASSES[0 if itemsize == 4 else 1][bits]
    c.calls += 1
    timed.cls = c
    timed.n = n
    timed.parallel = not (c.serial == 0 or c.backoff > 0 or c.calls % REFRESH == 0)
    timed.start = adamax_cy_now()
    return blocks if timed.parallel else 1


cdef inline void adapted(Timed* timed) noexcept nogil:
    # Stops the clock of a call ``adapt`` started and learns from it.
    if timed.cls != NULL:
        record(timed.cls, timed.parallel, adamax_cy_now() - timed.start, timed.n)


cdef void record(SizeClass* c, bint parallel, double seconds, Py_ssize_t n) noexcept nogil:
    cdef double per_element = seconds / n
    cdef double expected = c.serial * n
    if not parallel:
        c.serial_calls += 1
        if c.backoff > 0:
            c.backoff = c.backoff - seconds if c.backoff > seconds else 0
        c.serial = running(c.serial, per_element)
        return
    c.parallel_calls += 1
    if seconds > LATE * expected:
        c.late += 1
        back_off(c, seconds - expected)
        return
    c.penalty = c.penalty * PENALTY_DECAY if c.penalty * PENALTY_DECAY > 1 else 1
    c.parallel = running(c.parallel, per_element)
    c.parallel_samples += 1
    if c.parallel_samples >= TREND_SAMPLES and c.parallel >= c.serial:
        c.slow += 1
        back_off(c, expected)


cdef void back_off(SizeClass* c, double lost) noexcept nogil:
    if c.penalty < 1:
        c.penalty = 1
    c.backoff = BACKOFF * c.penalty * lost
    if c.backoff > MAX_BACKOFF:
        c.backoff = MAX_BACKOFF
    c.penalty = 2 * c.penalty if 2 * c.penalty < MAX_PENALTY else MAX_PENALTY
    c.parallel = 0  # a fresh estimate when threads are probed again
    c.parallel_samples = 0


def set_adaptive(bint on):
    """Whether ``num_threads=None`` adapts (True, the default) or always uses
    every thread above the serial threshold; returns the previous setting."""
    global ADAPTIVE
    previous = ADAPTIVE
    ADAPTIVE = on
    return previous


def adaptive():
    """Whether ``num_threads=None`` adapts to a busy machine (see ``set_adaptive``)."""
    return ADAPTIVE


def policy_reset():
    """Forget what the adaptive default has measured (tests, benchmark)."""
    cdef int d, b
    for d in range(2):
        for b in range(NCLASSES):
            CLASSES[d][b] = SizeClass(0, 0, 0, 1, 0, 0, 0, 0, 0, 0)


def policy_state():
    """What the adaptive default has measured: one dict per dtype and size
    class it has seen, smallest first."""
    cdef int d, b
    cdef SizeClass c
    cdef object one = 1
    out = []
    for d in range(2):
        for b in range(NCLASSES):
            c = CLASSES[d][b]
            if c.calls == 0:
                continue
            out.append({
                "dtype": ("float32", "float64")[d],
                "elements": (one << (b - 1), (one << b) - 1),
                "mode": "serial (backing off)" if c.backoff > 0 else (
                    "measuring" if c.serial == 0 else "threads"),
                "calls": c.calls,
                "serial_calls": c.serial_calls,
                "parallel_calls": c.parallel_calls,
                "late_threads": c.late,
                "no_faster": c.slow,
                "serial_ns_per_element": 1e9 * c.serial,
                "parallel_ns_per_element": 1e9 * c.parallel,
                "backoff_s": c.backoff,
                "penalty": c.penalty,
            })
    return out


def _policy_call(Py_ssize_t itemsize, Py_ssize_t n, double seconds):
    """Decide one default call of ``n`` elements as a step would and record
    that it took ``seconds``; returns 2 for threads, 1 for serial (tests)."""
    cdef Timed timed
    cdef Py_ssize_t blocks = adapt(&timed, n, itemsize, 2, 0)
    if timed.cls != NULL:
        record(timed.cls, timed.parallel, seconds, n)
    return blocks


policy_reset()
