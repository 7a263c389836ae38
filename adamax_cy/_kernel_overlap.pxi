# Overlap (included by _kernel.pyx): whether any written array of a call
# overlaps another array, found by sorting byte intervals (or merging runs
# already in address order) and one sweep. The one overlap test of the
# compiled code.

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



cdef inline Interval interval(uintptr_t start, Py_ssize_t nbytes, bint written) noexcept nogil:
    cdef Interval r
    r.start = start
    r.stop = start + <uintptr_t>nbytes
    r.written = written
    return r


# Up to this many intervals are sorted by comparisons, more by radix.
cdef Py_ssize_t RADIX_FROM = 64
# The most runs of intervals in address order that by_runs merges.
cdef enum:
    MAX_RUNS = 64


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
    cdef int shift = 0, found
    cdef Py_ssize_t i, j
    if n <= 4:  # one quadruple (the in-place step): every pair, no sorting
        for i in range(n):
            for j in range(i + 1, n):
                if ((spans[i].written or spans[j].written) and spans[i].start < spans[j].stop
                        and spans[j].start < spans[i].stop):
                    return False
        return True
    found = by_runs(spans, n, 1)
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

