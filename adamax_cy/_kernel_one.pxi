# One quadruple (included by _kernel.pyx): the fast checks of the common
# case (plain reads of the array structs, in C), the checked step
# (step_inplace) and the trusting one (update).

cdef extern from *:
    """
    /* The element count of an array: the product of its shape. */
    static inline Py_ssize_t adamax_cy_elements(PyArrayObject* x) {
        Py_ssize_t n = 1;
        for (int d = 0; d < PyArray_NDIM(x); d++) n *= PyArray_DIMS(x)[d];
        return n;
    }

    /* An exact ndarray of param's dtype and shape with these flags. */
    static inline int adamax_cy_like(PyObject* a, PyArrayObject* param, int flags) {
        PyArrayObject* x = (PyArrayObject*)a;
        int d;
        if (Py_TYPE(a) != &PyArray_Type || (PyArray_FLAGS(x) & flags) != flags) return 0;
        /* The same dtype object (the common case) or an equal native one. */
        if (PyArray_DESCR(x) != PyArray_DESCR(param)
                && (PyArray_TYPE(x) != PyArray_TYPE(param) || !PyArray_ISNOTSWAPPED(x)))
            return 0;
        if (PyArray_NDIM(x) != PyArray_NDIM(param)) return 0;
        for (d = 0; d < PyArray_NDIM(x); d++)
            if (PyArray_DIMS(x)[d] != PyArray_DIMS(param)[d]) return 0;
        return 1;
    }

    /* The typenum of the quadruple when the four are C-contiguous arrays of
       one native float dtype and one shape, param, m and u writable, with its
       element count in *size; else 0. Overlaps are checked by the callers.
       The caller holds the GIL and borrowed references: nothing here runs
       Python code. */
    static inline int adamax_cy_quadruple(PyObject* param, PyObject* grad, PyObject* m,
                                          PyObject* u, Py_ssize_t* size) {
        const int written = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_WRITEABLE;
        PyArrayObject* p = (PyArrayObject*)param;
        int typenum;
        if (Py_TYPE(param) != &PyArray_Type) return 0;
        typenum = PyArray_TYPE(p);
        if ((typenum != NPY_FLOAT32 && typenum != NPY_FLOAT64) || !PyArray_ISNOTSWAPPED(p)
                || (PyArray_FLAGS(p) & written) != written)
            return 0;
        if (!(adamax_cy_like(grad, p, NPY_ARRAY_C_CONTIGUOUS) && adamax_cy_like(m, p, written)
              && adamax_cy_like(u, p, written)))
            return 0;
        *size = adamax_cy_elements(p);
        return typenum;
    }

    /* The typenum and element count of an array the caller has checked. */
    static inline int adamax_cy_type_size(PyObject* a, Py_ssize_t* size) {
        *size = adamax_cy_elements((PyArrayObject*)a);
        return PyArray_TYPE((PyArrayObject*)a);
    }

    static inline uintptr_t adamax_cy_data(PyObject* a) {
        return (uintptr_t)PyArray_DATA((PyArrayObject*)a);
    }
    """
    int fast_quadruple "adamax_cy_quadruple"(PyObject* param, PyObject* grad, PyObject* m,
                                             PyObject* u, Py_ssize_t* size) noexcept nogil
    int type_size "adamax_cy_type_size"(PyObject* a, Py_ssize_t* size) noexcept nogil
    uintptr_t data "adamax_cy_data"(PyObject* a) noexcept nogil


def update(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] u, *,
           long long t, double lr, double beta1, double beta2, double eps, double weight_decay,
           bint decoupled_weight_decay, bint maximize, str convention, int num_threads):
    """Update flat ``param``, ``m`` and ``u`` in place (no checks).

    The hyperparameters are those of ``adamax_step_inplace``, checked by the
    caller (``num_threads`` 0 for the default).
    """
    cdef Options o = checked_options(lr, beta1, beta2, eps, weight_decay,
                                     decoupled_weight_decay, maximize, convention, num_threads)
    cdef Coefficients k = coefficients(&o, t)
    with nogil:
        update_blocks(&param[0] if param.shape[0] else NULL,
                      &grad[0] if grad.shape[0] else NULL,
                      &m[0] if m.shape[0] else NULL,
                      &u[0] if u.shape[0] else NULL,
                      param.shape[0], &k, o.threads)


def step_inplace(param, grad, m, u, t, lr, beta1, beta2, eps, weight_decay,
                 decoupled_weight_decay, maximize, convention, num_threads):
    """One in-place step when every check passes; False (nothing written) otherwise."""
    cdef Options o
    cdef Coefficients k
    cdef long long step
    cdef int typenum
    cdef Py_ssize_t n, nbytes
    cdef Interval spans[4]
    cdef uintptr_t p_, g_, m_, u_
    if not (fast_step(t, &step)
            and fast_options(lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay,
                             maximize, convention, num_threads, &o)):
        return False
    typenum = fast_quadruple(<PyObject*>param, <PyObject*>grad, <PyObject*>m, <PyObject*>u, &n)
    if typenum == 0:
        return False
    if n == 0:
        return True
    nbytes = n * (<Py_ssize_t>sizeof(float) if typenum == cnp.NPY_FLOAT32 else
                  <Py_ssize_t>sizeof(double))
    p_, g_, m_, u_ = (data(<PyObject*>param), data(<PyObject*>grad), data(<PyObject*>m),
                      data(<PyObject*>u))
    spans[0] = interval(p_, nbytes, True)
    spans[1] = interval(g_, nbytes, False)
    spans[2] = interval(m_, nbytes, True)
    spans[3] = interval(u_, nbytes, True)
    if not disjoint(spans, NULL, 4, 0, 1):
        return False
    # The arguments hold the four arrays (and so their memory) until the return.
    k = coefficients(&o, step)
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            update_blocks(<float*>p_, <const float*>g_, <float*>m_, <float*>u_, n, &k, o.threads)
    else:
        with nogil:
            update_blocks(<double*>p_, <const double*>g_, <double*>m_, <double*>u_, n, &k,
                          o.threads)
    return True
