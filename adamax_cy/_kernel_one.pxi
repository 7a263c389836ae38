# One quadruple (included by _kernel.pyx): the fast checks of the common
# case, the checked step (step_inplace) and the trusting one (update).

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
    spans[0] = interval(<PyObject*>param, nbytes, True)
    spans[1] = interval(<PyObject*>grad, nbytes, False)
    spans[2] = interval(<PyObject*>m, nbytes, True)
    spans[3] = interval(<PyObject*>u, nbytes, True)
    p_, g_, m_, u_ = spans[0].start, spans[1].start, spans[2].start, spans[3].start
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
