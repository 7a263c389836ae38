# The one place that knows whether OpenMP exists. Without it, the prange
# loops compile to serial loops and this shim reports a single thread.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define ADAMAX_CY_OPENMP 1
    #else
    #define ADAMAX_CY_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    const bint ADAMAX_CY_OPENMP
    int omp_get_max_threads() noexcept nogil
