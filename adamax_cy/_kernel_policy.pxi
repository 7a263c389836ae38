# The adaptive default (included by _kernel.pyx): whether a call with
# num_threads=None above the serial threshold runs on all threads or on one.
#
# A parallel step waits for its slowest thread. On a machine whose cores are
# busy with other work, the thread that lands on a busy core waits for a
# scheduler time slice (milliseconds), and a step that takes 20 us on one
# thread can take 4 ms on two. So the default measures itself and keeps
# whichever way has cost less on average, per kind of call (one array or
# many), dtype and size class (elements between two powers of two); a
# many-array call with one quadruple counts as one array (the same loop on
# the same memory):
#
# - Measuring: the first two calls of a class run serially; the second (the
#   first touches cold memory) gives the serial cost per element.
# - Probing: then PROBE calls run on threads. They are judged together, so
#   that the first parallel call after serial work may wake the threads (or
#   create them) without condemning threads; a probe stops early once it has
#   lost more than ABORT serial calls' worth of time (a late thread).
# - Threads: the parallel cost is a decayed sum over the recent parallel
#   calls (about 32), every late call included (isolated stalls aside,
#   below), so the decision follows the mean a training loop pays. Every
#   REFRESH-th call runs serially to keep the serial estimate current. When
#   threads have cost more than the serial estimate over that window and
#   over about the last MEDIUM parallel calls, the class backs off: a core
#   busy for a slice of every few milliseconds (a data loader waking up)
#   makes one call in a hundred or so wait, which the short window alone
#   would take for threads that lose, every time.
# - Stalls: a parallel call slower than STALL x the serial estimate after
#   ISOLATED parallel calls without one (none yet in a new class) counts as
#   that slow only, in a probe too. On a virtual machine serial calls stall
#   for milliseconds too (its CPU descheduled), and waking threads whose
#   core another runtime's spinning threads hold can take as long, so a
#   single stall is no evidence against threads, and backing off for it
#   (doubling the penalty when it hits a probe) would cost more than the
#   stall did; stalls that recur (a busy core) count in full. So do all of
#   them over a longer window (about LONG parallel calls): stalls spaced
#   just past ISOLATED calls that together cost more than threads gained
#   between them still send the class serial.
# - Backing off: serial calls until they have taken the time threads lost,
#   times BACKOFF, times a penalty that doubles with each failed probe (so
#   on a machine that stays busy, probes cost ever less) and decays while
#   threads do well; then it probes again.
#
# The bookkeeping is two clock reads per call; calls below the serial
# threshold, calls with an explicit num_threads and calls with one thread
# to use never reach it. Which way a call runs never changes its result (the
# split of the elements between threads does not), and no OpenMP setting of
# the process changes. Concurrent calls share the estimates without a lock:
# a lost update makes an estimate a little less accurate, nothing more.

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
    double parallel_time   # decayed sums over the recent parallel calls:
    double parallel_elements  # seconds and elements
    double backoff         # seconds of serial work left before threads are probed again
    double penalty         # multiplies the back-off; doubles with each failed probe
    double serial_run      # seconds of serial work since the last parallel call
    double unchecked       # seconds of parallel work since the last settled serial sample
    double probe_time      # seconds of parallel work in the current probe
    long long probe_calls  # parallel calls in the current probe
    bint probing
    long long calls        # calls with the default in this class
    long long serial_calls
    long long parallel_calls
    long long late         # parallel calls slower than LATE x the serial estimate
    long long slow         # times threads cost more than serial (and the class backed off)
    long long checks       # times the serial cost was measured again while threads did well
    long long since_stall  # parallel calls since the last one slower than STALL x serial
    double long_time       # decayed sums over about the last LONG parallel calls, stalls
    double long_elements   # in full: seconds and elements
    double medium_time     # the same over about the last MEDIUM parallel calls
    double medium_elements


cdef struct Timed:
    SizeClass* cls         # NULL: this call is not measured
    bint parallel
    Py_ssize_t n
    double start


cdef enum:
    NCLASSES = 64
cdef SizeClass CLASSES[2][2][NCLASSES]   # [one array, many][float32, float64][bit length of n]
cdef bint ADAPTIVE = True

cdef long long WARMUP = 2            # serial calls that start a class (the cheapest counts)
cdef long long PROBE = 8             # a probe runs at least this many parallel calls
cdef double PROBE_SECONDS = 2e-3     # and this much parallel work, judged together
cdef double ABORT = 4.0              # a probe stops once it has lost this many serial calls
cdef double ABORT_SECONDS = 1e-3     # (and at least this long: waking threads is not late)
cdef double DECAY = 31.0 / 32.0      # of the parallel sums per parallel call
cdef long long REFRESH = 64          # every REFRESH-th call is serial in threads mode
# libgomp's idle threads spin for several milliseconds after a parallel
# region (about 7.5 ms of CPU here), slowing a serial call that shares a
# core with them: serial samples count fully only after SETTLE seconds of
# serial work, earlier ones (such as the refresh calls) only to lower it,
# and only when under FAR_BELOW x the estimate: they correct a first
# measurement made on cold memory or a busy machine, not the spread from
# call to call (taking every lower one, the estimate sank to the fastest
# serial calls seen, and threads then looked dearer than they were).
cdef double SETTLE = 10e-3
cdef double FAR_BELOW = 0.75
cdef double RECHECK = 0.5            # seconds of parallel work between settled serial samples
cdef double BACKOFF = 4.0            # serial work after a failure, in multiples of the time lost
cdef double MIN_BACKOFF = 8.0        # at least this many serial calls
cdef double MAX_BACKOFF = 2.0        # seconds of serial work, at most
cdef double MAX_PENALTY = 64.0
cdef double PENALTY_DECAY = 0.9      # per parallel call, in threads mode, that was not late
cdef double LATE = 1.5               # a parallel call slower than this x serial is late (counted)
cdef double WEIGHT = 0.25            # of a new sample in the serial estimate
cdef double STALL = 4.0              # a parallel call slower than this x serial stalled
cdef long long ISOLATED = 256        # parallel calls without a stall before one that is isolated
cdef double LONG_DECAY = 1023.0 / 1024.0  # of the long sums per parallel call (LONG = 1024)
cdef double MEDIUM_DECAY = 255.0 / 256.0  # of the medium sums (MEDIUM = 256)


cdef inline double running(double estimate, double sample) noexcept nogil:
    # A running mean that a single outlier cannot move more than 4x.
    if not estimate > 0:
        return sample
    if sample > 4 * estimate:
        sample = 4 * estimate
    return estimate + WEIGHT * (sample - estimate)


cdef inline Py_ssize_t adapt(Timed* timed, Py_ssize_t n, Py_ssize_t itemsize,
                             Py_ssize_t blocks, int num_threads, bint many) noexcept nogil:
    # The blocks this call runs: ``blocks`` or 1. Starts the clock when the
    # call is one the policy decides (the default, above the threshold).
    cdef SizeClass* c
    timed.cls = NULL
    if blocks == 1 or num_threads > 0 or not ADAPTIVE or n <= 0:
        return blocks
    c = size_class(n, itemsize, many)
    c.calls += 1
    timed.cls = c
    timed.n = n
    timed.parallel = threads_next(c)
    timed.start = adamax_cy_now()
    return blocks if timed.parallel else 1


cdef inline SizeClass* size_class(Py_ssize_t n, Py_ssize_t itemsize, bint many) noexcept nogil:
    # (n > 0)
    cdef int bits = 0
    while n:
        bits += 1
        n >>= 1
    return &CLASSES[1 if many else 0][0 if itemsize == 4 else 1][bits]


cdef inline bint threads_next(const SizeClass* c) noexcept nogil:
    # Whether the call that was just counted in c.calls runs on threads.
    if c.serial_calls < WARMUP or c.backoff > 0:
        return False
    return c.probing or c.calls % REFRESH != 0


cdef inline void not_adapted(Timed* timed) noexcept nogil:
    # A call ``adapt`` counted that did not run (its checks failed): the
    # policy learns nothing from it.
    if timed.cls != NULL:
        timed.cls.calls -= 1


cdef inline void adapted(Timed* timed) noexcept nogil:
    # Stops the clock of a call ``adapt`` started and learns from it.
    if timed.cls != NULL:
        record(timed.cls, timed.parallel, adamax_cy_now() - timed.start, timed.n)


cdef void record(SizeClass* c, bint parallel, double seconds, Py_ssize_t n) noexcept nogil:
    cdef double per_element = seconds / n
    cdef double lost, least_lost
    if not (isfinite(seconds) and seconds >= 0):
        return  # a clock that went wrong: nothing to learn
    if not parallel:
        serial_call(c, seconds, per_element)
        return
    c.parallel_calls += 1
    c.serial_run = 0
    c.unchecked += seconds
    if seconds > LATE * c.serial * n:
        c.late += 1
    c.long_time = LONG_DECAY * c.long_time + seconds
    c.long_elements = LONG_DECAY * c.long_elements + n
    c.medium_time = MEDIUM_DECAY * c.medium_time + seconds
    c.medium_elements = MEDIUM_DECAY * c.medium_elements + n
    if seconds > STALL * c.serial * n:
        if c.since_stall >= ISOLATED:
            seconds = STALL * c.serial * n
        c.since_stall = 0
    else:
        c.since_stall += 1
    c.parallel_time = DECAY * c.parallel_time + seconds
    c.parallel_elements = DECAY * c.parallel_elements + n
    lost = c.parallel_time - c.serial * c.parallel_elements  # negative: time gained
    if not c.probing and c.medium_time - c.serial * c.medium_elements < lost:
        lost = c.medium_time - c.serial * c.medium_elements
    long_lost = c.long_time - c.serial * c.long_elements
    if long_lost > lost:
        # Isolated stalls that together cost more than threads gained
        # between them: they count in full.
        lost = long_lost
    if c.probing:
        c.probe_calls += 1
        c.probe_time += seconds
        least_lost = ABORT * c.serial * n
        if lost > (least_lost if least_lost > ABORT_SECONDS else ABORT_SECONDS):
            c.probing = False
            back_off(c, lost, n)
        elif c.probe_calls >= PROBE and c.probe_time >= PROBE_SECONDS:
            c.probing = False
            if lost > 0:
                back_off(c, lost, n)
        return
    if lost > 0:
        back_off(c, lost, n)
        return
    if seconds <= LATE * c.serial * n:
        c.penalty = PENALTY_DECAY * c.penalty if PENALTY_DECAY * c.penalty > 1 else 1
    if c.unchecked >= RECHECK:
        # Threads have done well for a while: measure the serial cost again,
        # once the spinning threads have settled (not a failure).
        c.checks += 1
        c.backoff = SETTLE + MIN_BACKOFF * c.serial * n


cdef void serial_call(SizeClass* c, double seconds, double per_element) noexcept nogil:
    cdef bint settled = c.parallel_calls == 0 or c.serial_run >= SETTLE
    c.serial_calls += 1
    c.serial_run += seconds
    if c.serial_calls <= WARMUP:
        # The first call of a class may touch cold memory: the cheapest counts.
        if c.serial == 0 or per_element < c.serial:
            c.serial = per_element
        if c.serial_calls == WARMUP:
            start_probe(c)
        return
    if settled:
        c.serial = running(c.serial, per_element)
        c.unchecked = 0
    elif per_element < FAR_BELOW * c.serial:
        c.serial = running(c.serial, per_element)
    if c.backoff > 0:
        c.backoff -= seconds
        if c.backoff <= 0:
            c.backoff = 0
            start_probe(c)


cdef void start_probe(SizeClass* c) noexcept nogil:
    c.probing = True
    c.probe_calls = 0
    c.probe_time = 0
    c.parallel_time = 0
    c.parallel_elements = 0


cdef void back_off(SizeClass* c, double lost, Py_ssize_t n) noexcept nogil:
    cdef double least = MIN_BACKOFF * c.serial * n
    c.slow += 1
    c.long_time = c.long_elements = c.medium_time = c.medium_elements = 0
    c.backoff = c.penalty * (BACKOFF * lost if BACKOFF * lost > least else least)
    if c.backoff > MAX_BACKOFF:
        c.backoff = MAX_BACKOFF
    c.penalty = 2 * c.penalty if 2 * c.penalty < MAX_PENALTY else MAX_PENALTY


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
    cdef int kind, d, b
    for kind in range(2):
        for d in range(2):
            for b in range(NCLASSES):
                CLASSES[kind][d][b] = SizeClass(0, 0, 0, 0, 1, 0, 0, 0, 0, False, 0, 0, 0, 0, 0, 0,
                                                0, 0, 0, 0, 0)


def policy_state():
    """What the adaptive default has measured: one dict per kind of call
    (one array or many), dtype and size class it has seen, smallest first."""
    cdef int kind, d, b
    cdef SizeClass c
    cdef object one = 1
    out = []
    for kind in range(2):
        for d in range(2):
            for b in range(NCLASSES):
                c = CLASSES[kind][d][b]
                if c.calls == 0:
                    continue
                out.append({
                    "kind": ("one array", "many arrays")[kind],
                    "dtype": ("float32", "float64")[d],
                    "elements": (one << (b - 1), (one << b) - 1),
                    "mode": ("measuring" if c.serial_calls < WARMUP else
                             "serial (backing off)" if c.backoff > 0 else
                             "probing" if c.probing else "threads"),
                    "calls": c.calls,
                    "serial_calls": c.serial_calls,
                    "parallel_calls": c.parallel_calls,
                    "late_threads": c.late,
                    "no_faster": c.slow,
                    "serial_checks": c.checks,
                    "serial_ns_per_element": 1e9 * c.serial,
                    "parallel_ns_per_element": (1e9 * c.parallel_time / c.parallel_elements
                                                if c.parallel_elements else 0.0),
                    "backoff_s": c.backoff,
                    "penalty": c.penalty,
                })
    return out


def _policy_call(Py_ssize_t itemsize, Py_ssize_t n, double seconds, bint many=False):
    """Decide one default call of ``n`` elements as a step would and record
    that it took ``seconds``; returns 2 for threads, 1 for serial (tests)."""
    cdef Timed timed
    cdef Py_ssize_t blocks
    if n <= 0 or not (isfinite(seconds) and seconds >= 0):
        raise ValueError(f"n must be > 0 and seconds finite and >= 0, got {n} and {seconds}")
    blocks = adapt(&timed, n, itemsize, 2, 0, many)
    if timed.cls != NULL:
        record(timed.cls, timed.parallel, seconds, n)
    return blocks


def _policy_next(Py_ssize_t itemsize, Py_ssize_t n, bint many=False):
    """Whether the next default call of ``n`` elements would run on threads (tests)."""
    cdef SizeClass c
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    c = size_class(n, itemsize, many)[0]
    c.calls += 1
    return threads_next(&c)


policy_reset()
