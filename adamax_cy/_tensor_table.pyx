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
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t, uintptr_t
from libc.string cimport memcmp, memset

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


cdef bint dense(const DLTensor* t, int bits, uintptr_t* data) noexcept:
    # Whether t is a C-contiguous CPU array of floats of ``bits`` bits; if
    # so, the address of its first element in ``data``.
    cdef int64_t expected = 1
    cdef int d
    if not (t.device.device_type == DL_CPU and t.dtype.code == DL_FLOAT
            and t.dtype.bits == bits and t.dtype.lanes == 1):
        return False
    if t.strides != NULL:
        for d in range(t.ndim - 1, -1, -1):
            if t.shape[d] != 1 and t.strides[d] != expected:
                return False
            expected *= t.shape[d]
    data[0] = <uintptr_t>t.data + <uintptr_t>t.byte_offset
    return True


cdef inline const DLTensor* tensor_of(capsule) except NULL:
    return <const DLTensor*>PyCapsule_GetPointer(capsule, b"dltensor")


@cython.auto_pickle(False)  # holds raw pointers: never pickled
cdef class TensorTable:
    """The per-step bookkeeping of one parameter group of ``adamax_cy.torch.Adamax``.

    Holds, for each parameter, the layout of the parameter (address, dtype,
    shape), the addresses of its ``exp_avg``, ``exp_inf`` and ``step``, and
    the objects they were read from. Each step, :meth:`gather` checks in
    compiled code, through one DLPack export of each parameter and gradient,
    that the parameter's memory is still what was recorded and whether its
    gradient can be read in place, and lists what is not so: the caller
    records it (:meth:`set_entry`, :meth:`set_grad`) and gathers again.
    :meth:`prepare` computes the coefficients, :meth:`run` updates.

    Memory: the caller's ``keep`` holds what the table writes between steps
    (an alias of the parameter; NumPy views of the state tensors, which also
    stop their storage from being resized). From :meth:`gather` to the end of
    :meth:`run` (or :meth:`release`) the table holds the DLPack exports of
    every parameter and gradient it will touch, so the memory stays valid
    whatever other threads do meanwhile; no gradient is held between steps.
    While a step runs, the table refuses every other call.
    """

    cdef readonly Py_ssize_t count
    cdef readonly bint unchecked     # entries set since mark_checked()
    cdef readonly list stale         # parameters whose entry gather() found out of date
    cdef readonly list to_copy       # parameters whose gradient must be given by set_grad()
    cdef list params, states, exp_avgs, exp_infs, steps_of, keep
    cdef list shapes                 # the parameter's shape, int64 dims in a bytes object
    cdef list held                   # per parameter, what this step reads and writes
    cdef object to_dlpack            # torch.utils.dlpack.to_dlpack
    cdef uintptr_t* param_ptr
    cdef uintptr_t* m_ptr
    cdef uintptr_t* u_ptr
    cdef uintptr_t* step_ptr         # the parameter's 0-d step counter
    cdef uintptr_t* step_grad        # the gradient read this step
    cdef Py_ssize_t* size
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
    cdef bint running                # run() is updating without the GIL
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
        self.states = [None] * n
        self.exp_avgs = [None] * n
        self.exp_infs = [None] * n
        self.steps_of = [None] * n
        self.keep = [None] * n
        self.shapes = [None] * n
        self.held = [None] * n
        self.param_ptr = <uintptr_t*>PyMem_Malloc(5 * m * sizeof(uintptr_t))
        self.size = <Py_ssize_t*>PyMem_Malloc(3 * m * sizeof(Py_ssize_t))
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
        self.step_grad = self.step_ptr + m
        self.selected = self.size + m
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

    cdef idle(self):
        if self.running:
            raise RuntimeError("another thread is running a step of this optimizer")

    cdef check(self, Py_ssize_t j):
        self.idle()
        if not 0 <= j < self.count:
            raise IndexError(f"parameter index {j} out of range")

    def set_entry(self, Py_ssize_t j, param, dict state, exp_avg, exp_inf, step,
                  uintptr_t m_ptr, uintptr_t u_ptr, uintptr_t step_ptr, bint step64, keep):
        """Record parameter ``j``, checked by the caller; ``keep`` holds its memory.

        The parameter's layout is read here: a dense, C-contiguous float32 or
        float64 CPU tensor (else ValueError).
        """
        cdef const DLTensor* t
        cdef uintptr_t data
        cdef int64_t numel = 1
        cdef int d
        self.check(j)
        capsule = self.to_dlpack(param)
        t = tensor_of(capsule)
        if not (dense(t, 32, &data) or dense(t, 64, &data)):
            raise ValueError(f"parameter {j} is not a dense, C-contiguous float CPU tensor")
        for d in range(t.ndim):
            numel *= t.shape[d]
        self.present[j] = 0
        self.params[j] = param
        self.states[j] = state
        self.exp_avgs[j] = exp_avg
        self.exp_infs[j] = exp_inf
        self.steps_of[j] = step
        self.keep[j] = keep
        self.shapes[j] = PyBytes_FromStringAndSize(<char*>t.shape, t.ndim * sizeof(int64_t))
        self.param_ptr[j] = data
        self.m_ptr[j] = m_ptr
        self.u_ptr[j] = u_ptr
        self.step_ptr[j] = step_ptr
        self.size[j] = numel
        self.is64[j] = t.dtype.bits == 64
        self.step64[j] = step64
        self.present[j] = 1
        self.unchecked = True

    def mark_checked(self):
        """The caller checked that no two written tensors of the group overlap."""
        self.unchecked = False

    def set_grad(self, Py_ssize_t j, grad, uintptr_t ptr):
        """This step's gradient of parameter ``j`` (a copy made and checked by the caller).

        ``grad`` is held until the step has run; it is not reused.
        """
        self.check(j)
        self.held[j] = (self.held[j], grad)
        self.step_grad[j] = ptr

    cdef inline double step_of(self, Py_ssize_t j) noexcept:
        if self.step64[j]:
            return (<double*>self.step_ptr[j])[0]
        return (<float*>self.step_ptr[j])[0]

    cdef bint same_layout(self, Py_ssize_t j, const DLTensor* t) noexcept:
        # Whether t has the recorded shape of parameter j.
        cdef bytes shape = <bytes>self.shapes[j]
        return (t.ndim * <Py_ssize_t>sizeof(int64_t) == len(shape)
                and memcmp(t.shape, PyBytes_AS_STRING(shape), len(shape)) == 0)

    def gather(self, list params, state_of):
        """Find this step's parameters and gradients; the number found, or -1.

        -1 means ``params`` are no longer the parameters of this table (make
        a new one). Afterwards :attr:`stale` lists the parameters with a
        gradient whose entry is not current (record them with
        :meth:`set_entry` and gather again), and :attr:`to_copy` those whose
        gradient cannot be read in place (give a copy with :meth:`set_grad`).
        Nothing is written. A parameter is current when its state entries
        are the recorded objects and its memory has the recorded address,
        dtype and shape (C-contiguous); a gradient is read in place when it
        has the parameter's dtype and shape, C-contiguous on the CPU, and is
        not a lazily negated view.
        """
        cdef Py_ssize_t j, n = 0
        cdef PyObject* found
        cdef uintptr_t data
        cdef const DLTensor* t
        self.idle()
        if not isinstance(state_of, dict):
            raise TypeError("state_of must be a dict")
        self.n_selected = self.n_distinct = 0
        self.stale = []
        self.to_copy = []
        for j in range(self.count):
            self.held[j] = None
        if len(params) != self.count:
            return -1
        for j in range(self.count):
            p = params[j]
            if p is not self.params[j]:
                return -1
            g = p.grad
            if g is None:
                continue
            self.selected[n] = j
            n += 1
            found = PyDict_GetItem(state_of, p)
            if not (self.present[j] and found != NULL and <object>found is self.states[j]
                    and self.entry_current(j, <dict><object>found)):
                self.stale.append(j)
                continue
            param = self.to_dlpack(p)
            t = tensor_of(param)
            if not (dense(t, 64 if self.is64[j] else 32, &data) and data == self.param_ptr[j]
                    and self.same_layout(j, t)):
                self.stale.append(j)
                continue
            # The exports hold the memory of both until the step has run.
            self.held[j] = param
            try:
                grad = self.to_dlpack(g)
            except (RuntimeError, TypeError, BufferError):  # sparse, for one
                grad = None
            if grad is not None:
                t = tensor_of(grad)
                if (dense(t, 64 if self.is64[j] else 32, &data) and self.same_layout(j, t)
                        and not g.is_neg()):
                    self.held[j] = (param, grad)
                    self.step_grad[j] = data
                    continue
            self.step_grad[j] = 0
            self.to_copy.append(j)
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
        self.idle()
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
        self.idle()
        if self.n_selected and not self.n_distinct:
            raise RuntimeError("run() before a successful prepare()")
        self.running = True
        try:
            for d in range(self.n_distinct):
                empty_tables(self.work)
                for i in range(self.n_selected):
                    j = self.selected[i]
                    if self.which[i] == d and self.size[j] != 0:
                        add_quadruple(&self.work[self.is64[j]], self.param_ptr[j],
                                      self.step_grad[j], self.m_ptr[j], self.u_ptr[j],
                                      self.size[j])
                with nogil:
                    run_tables(self.work, &self.ks[d], self.threads)
            for i in range(self.n_selected):
                j = self.selected[i]
                if self.step64[j]:
                    (<double*>self.step_ptr[j])[0] += 1
                else:
                    (<float*>self.step_ptr[j])[0] += 1
        finally:
            self.running = False
        self.release()

    def release(self):
        """Let go of what the last :meth:`gather` holds (after a step, or instead of one)."""
        cdef Py_ssize_t j
        self.idle()
        for j in range(self.count):
            self.held[j] = None
        self.n_selected = self.n_distinct = 0
