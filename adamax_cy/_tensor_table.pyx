"""The per-step bookkeeping of ``adamax_cy.torch.Adamax``, in compiled code.

A :class:`TensorTable` remembers, for each parameter of a group, the memory
of the parameter, its state and its last gradient, read through DLPack
(this module never imports torch), and answers each step which entries are
still current; the Python side (:mod:`adamax_cy.torch`) checks and records
what changed. The step itself runs on the kernel's many-array tables
(``_kernel.pxd``).
"""

from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.weakref cimport PyWeakref_GetObject, PyWeakref_NewRef
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t, uintptr_t
from libc.string cimport memset

cimport cython

from adamax_cy._kernel cimport (
    Coefficients, Options, Table, add_quadruple, coefficients, empty_tables, fast_options,
    lay_out_tables, run_tables, step_in_range, tables_bytes,
)

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
    parameter) and lists what is not: the caller records it
    (:meth:`set_entry`, :meth:`set_grad`) and gathers again.
    :meth:`prepare` computes the coefficients, :meth:`run` updates.

    Memory: the caller's ``keep`` holds what the table writes (an alias of
    the parameter, whose address is checked at every step; NumPy views of
    the state tensors, which also stop their storage from being resized);
    a gradient is held only by a weak reference, and read only while it is
    ``p.grad`` at the address and size it had when checked.
    """

    cdef readonly Py_ssize_t count
    cdef readonly bint unchecked     # entries set since mark_checked()
    cdef readonly list stale         # parameters whose entry gather() found out of date
    cdef readonly list to_copy       # parameters whose gradient must be given by set_grad()
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
    cdef unsigned char* fresh        # set since the last run (its gradient is not rechecked)
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
        self.stale = []
        self.to_copy = []
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
        self.is64 = <unsigned char*>PyMem_Malloc(4 * m)
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
        self.fresh = self.present + m
        memset(self.present, 0, 2 * m)

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
        self.fresh[j] = 1
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

    def gather(self, list params, state_of):
        """Find this step's parameters and gradients; the number found, or -1.

        -1 means ``params`` are no longer the parameters of this table (make
        a new one). Afterwards :attr:`stale` lists the parameters with a
        gradient whose entry is not current (record them with
        :meth:`set_entry` and gather again), and :attr:`to_copy` those whose
        gradient cannot be read in place (give a copy with :meth:`set_grad`).
        Nothing is written.
        """
        cdef Py_ssize_t j, n = 0
        cdef PyObject* found
        if not isinstance(state_of, dict):
            raise TypeError("state_of must be a dict")
        self.n_selected = self.n_distinct = 0
        self.stale = []
        self.to_copy = []
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
                self.present[j] = 0
                self.stale.append(j)
            elif not self.same_grad(j, g) and not self.grad_data(j, g):
                # The parameter may have changed under the same address
                # (p.data = p.data[:k]): its entry is checked again first.
                if self.fresh[j]:
                    self.step_grad[j] = 0
                    self.to_copy.append(j)
                else:
                    self.present[j] = 0
                    self.stale.append(j)
            self.selected[n] = j
            n += 1
        self.n_selected = n
        return n

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
        in range, or a step counter is not a whole number from 0 to
        MAX_STEP - 2: the caller's Python checks then raise the error (or
        canonicalise the values and call again).
        """
        cdef Py_ssize_t i, d, j, n_distinct = 0
        cdef double t
        cdef Options o
        if self.stale:
            raise RuntimeError("prepare() before the stale entries were set and gathered again")
        for i in range(self.n_selected):
            j = self.selected[i]
            if self.step_grad[j] == 0 and self.size[j] != 0:
                raise RuntimeError(f"prepare() without a gradient for parameter {j}")
        if not fast_options(lr, beta1, beta2, eps, weight_decay, False, maximize, convention,
                            num_threads, &o):
            return False
        for i in range(self.n_selected):
            t = self.step_of(self.selected[i]) + 1
            if not step_in_range(t):
                return False
            d = 0
            while d < n_distinct and self.distinct[d] != t:
                d += 1
            if d == n_distinct:
                self.ks[d] = coefficients(&o, <long long>t)
                self.distinct[d] = t
                n_distinct += 1
            self.which[i] = d
        self.n_distinct = n_distinct
        self.threads = o.threads if n_distinct else 0
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
            self.fresh[j] = 0
        self.n_selected = self.n_distinct = 0
