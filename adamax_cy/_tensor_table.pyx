"""The per-step bookkeeping of ``adamax_cy.torch.Adamax``, in compiled code.

A :class:`TensorTable` remembers, for each parameter of a group, the memory
of the parameter and its state, read through DLPack (this module never
imports torch), and answers each step which entries are still current; the
Python side (:mod:`adamax_cy.torch`) checks and records what changed. The
step itself runs on the kernel's many-array tables (``_kernel.pxd``).

Tensors are read through DLPack's C exchange API where the tensor type
offers one (``__dlpack_c_exchange_api__``, DLPack 1.3: an export costs a C
call), else through ``to_dlpack`` capsules (a Python call each).
"""

from cpython.dict cimport PyDict_GetItem
from cpython.exc cimport PyErr_Clear, PyErr_ExceptionMatches
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject, PyObject_Hash, PyObject_TypeCheck, PyTypeObject
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcmp, memset

cimport cython

from adamax_cy._kernel cimport (
    Coefficients, Options, Table, add_quadruple, coefficients, empty_tables, fast_options,
    lay_out_tables, run_tables, step_in_range, tables_bytes,
)

import os

# Children created by fork() in this process's line: a table marked busy
# under another count was marked by a thread the child does not have.
cdef unsigned long long FORKS = 0


def _forked():
    global FORKS
    FORKS += 1


os.register_at_fork(after_in_child=_forked)


cdef extern from *:
    """
    /* DLPack's structs (dlpack.h): DLTensor (stable since v0.2), the start of
       the DLManagedTensor a "dltensor" capsule points to; and, from v1.3, the
       versioned managed tensor and the C exchange API table. */
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
    typedef struct { uint32_t major; uint32_t minor; } adamax_cy_dl_version;
    typedef struct adamax_cy_dl_managed {
        adamax_cy_dl_version version;
        void* manager_ctx;
        void (*deleter)(struct adamax_cy_dl_managed*);
        uint64_t flags;
        adamax_cy_dl_tensor dl_tensor;
    } adamax_cy_dl_managed;
    typedef struct {
        adamax_cy_dl_version version;   /* the header, stable across versions */
        void* prev_api;
        void* managed_tensor_allocator;
        int (*managed_tensor_from_py_object_no_sync)(void*, adamax_cy_dl_managed**);
        void* managed_tensor_to_py_object_no_sync;
        void* dltensor_from_py_object_no_sync;
        void* current_work_stream;
    } adamax_cy_dl_exchange;
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
    ctypedef struct DLVersion "adamax_cy_dl_version":
        uint32_t major
    ctypedef struct DLManaged "adamax_cy_dl_managed":
        DLVersion version
        void (*deleter)(DLManaged*) noexcept
        DLTensor dl_tensor
    ctypedef struct DLExchange "adamax_cy_dl_exchange":
        DLVersion version
        int (*managed_tensor_from_py_object_no_sync)(void*, DLManaged**) noexcept

cdef extern from *:
    """
    /* A dict lookup with the key's hash computed once: a tensor's __hash__
       is Python code, most of the cost of a lookup. The function is part of
       CPython's (unstable) C API from 3.10 to 3.13; elsewhere, a plain lookup. */
    #if PY_VERSION_HEX < 0x030E0000 && !defined(PYPY_VERSION)
    static PyObject* adamax_cy_dict_get(PyObject* d, PyObject* key, Py_hash_t hash) {
        PyObject* found = _PyDict_GetItem_KnownHash(d, key, hash);
        if (found == NULL) PyErr_Clear();  /* as PyDict_GetItem: a failed comparison is "absent" */
        return found;
    }
    #else
    static PyObject* adamax_cy_dict_get(PyObject* d, PyObject* key, Py_hash_t hash) {
        (void)hash;
        return PyDict_GetItem(d, key);
    }
    #endif
    """
    PyObject* dict_get "adamax_cy_dict_get"(object d, object key, Py_hash_t hash)

cdef enum:
    DL_CPU = 1
    DL_FLOAT = 2
    DL_MAJOR = 1     # the DLPack major version of the structs above


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


cdef const DLExchange* exchange_api(tensor_type) except? NULL:
    # The tensor type's DLPack C exchange API, if it has one this module reads.
    cdef const DLExchange* api
    capsule = getattr(tensor_type, "__dlpack_c_exchange_api__", None)
    if capsule is None or not PyCapsule_IsValid(capsule, b"dlpack_exchange_api"):
        return NULL
    api = <const DLExchange*>PyCapsule_GetPointer(capsule, b"dlpack_exchange_api")
    if api.version.major != DL_MAJOR or api.managed_tensor_from_py_object_no_sync == NULL:
        return NULL
    return api


cdef int undescribed() except -1:
    # An export failed with a Python exception set: clear it if it says DLPack
    # cannot describe the tensor (sparse, for one); else let it propagate.
    if (PyErr_ExceptionMatches(RuntimeError) or PyErr_ExceptionMatches(TypeError)
            or PyErr_ExceptionMatches(BufferError)):
        PyErr_Clear()
        return 0
    return -1


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
    While one thread gathers, records an entry or runs a step, the table
    refuses every other call; a step whose gathered tensors another call
    let go of since is refused.
    """

    cdef readonly Py_ssize_t count
    cdef readonly bint unchecked     # entries set since mark_checked()
    cdef readonly bint exchange      # exports go through the C exchange API
    cdef readonly list stale         # parameters whose entry gather() found out of date
    cdef readonly list to_copy       # parameters whose gradient must be given by set_grad()
    cdef list params, states, exp_avgs, exp_infs, steps_of, keep
    cdef list shapes                 # the parameter's shape, int64 dims in a bytes object
    cdef list copies                 # per parameter, the gradient given by set_grad()
    cdef list capsules               # without the exchange API: slot k's export
    cdef bint any_copies, any_capsules
    cdef PyTypeObject* tensor_type   # what the exchange API exports (torch.Tensor)
    cdef object tensor_type_object
    cdef object to_dlpack            # torch.utils.dlpack.to_dlpack
    cdef const DLExchange* api
    cdef DLManaged** owned           # slot 2j: parameter j's export, 2j + 1: its gradient's
    cdef uintptr_t* param_ptr
    cdef uintptr_t* m_ptr
    cdef uintptr_t* u_ptr
    cdef uintptr_t* step_ptr         # the parameter's 0-d step counter
    cdef uintptr_t* step_grad        # the gradient read this step (0: none yet)
    cdef Py_ssize_t* size
    cdef Py_hash_t* hashes           # the parameter's hash, a key of the optimizer's state
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
    cdef int busy                    # 1: gather() or set_entry() runs, 2: run() updates
    cdef unsigned long long busy_forks  # FORKS when busy was set
    # Each call that lets go of or changes what a gather found starts a new
    # epoch; prepare() and run() take only the gather of the current one.
    cdef unsigned long long epoch, gathered_in, prepared_in
    cdef Table work[2]               # float32, float64 quadruples of one call
    cdef char* work_memory

    def __cinit__(self, list params, tensor_type, to_dlpack, bint exchange=True):
        cdef Py_ssize_t n = len(params)
        cdef Py_ssize_t m = n if n > 0 else 1  # room for one: malloc(0) may return NULL
        if not isinstance(tensor_type, type):
            raise TypeError("tensor_type must be a type")
        self.count = n
        self.stale = []
        self.to_copy = []
        self.tensor_type_object = tensor_type
        self.tensor_type = <PyTypeObject*>tensor_type
        self.to_dlpack = to_dlpack
        self.api = exchange_api(tensor_type) if exchange else NULL
        self.exchange = self.api != NULL
        self.params = list(params)
        self.states = [None] * n
        self.exp_avgs = [None] * n
        self.exp_infs = [None] * n
        self.steps_of = [None] * n
        self.keep = [None] * n
        self.shapes = [None] * n
        self.copies = [None] * n
        self.capsules = [None] * (2 * n)
        self.epoch = 1
        self.owned = <DLManaged**>PyMem_Malloc(2 * m * sizeof(DLManaged*))
        if self.owned != NULL:  # before anything can fail: __dealloc__ reads it
            memset(self.owned, 0, 2 * m * sizeof(DLManaged*))
        self.param_ptr = <uintptr_t*>PyMem_Malloc(5 * m * sizeof(uintptr_t))
        self.size = <Py_ssize_t*>PyMem_Malloc(4 * m * sizeof(Py_ssize_t))
        self.distinct = <double*>PyMem_Malloc(m * sizeof(double))
        self.ks = <Coefficients*>PyMem_Malloc(m * sizeof(Coefficients))
        self.is64 = <unsigned char*>PyMem_Malloc(3 * m)
        self.work_memory = <char*>PyMem_Malloc(tables_bytes(m))
        if (self.owned == NULL or self.param_ptr == NULL or self.size == NULL
                or self.distinct == NULL or self.ks == NULL or self.is64 == NULL
                or self.work_memory == NULL):
            raise MemoryError()
        lay_out_tables(self.work, self.work_memory, m)
        self.m_ptr = self.param_ptr + m
        self.u_ptr = self.m_ptr + m
        self.step_ptr = self.u_ptr + m
        self.step_grad = self.step_ptr + m
        self.selected = self.size + m
        self.which = self.selected + m
        self.hashes = <Py_hash_t*>(self.which + m)
        self.step64 = self.is64 + m
        self.present = self.step64 + m
        memset(self.present, 0, m)
        memset(self.step_grad, 0, m * sizeof(uintptr_t))

    def __init__(self, list params, tensor_type, to_dlpack, bint exchange=True):
        """A table for the parameters ``params``; see the class.

        Tensors are exported through the DLPack C exchange API of
        ``tensor_type`` when it has one (and ``exchange`` is true), else
        through ``to_dlpack``.
        """

    def __dealloc__(self):
        cdef Py_ssize_t k
        cdef DLManaged* m
        if self.owned != NULL:
            for k in range(2 * self.count):
                m = self.owned[k]
                self.owned[k] = NULL
                if m != NULL:
                    m.deleter(m)
        PyMem_Free(self.owned)
        PyMem_Free(self.param_ptr)
        PyMem_Free(self.size)
        PyMem_Free(self.distinct)
        PyMem_Free(self.ks)
        PyMem_Free(self.is64)
        PyMem_Free(self.work_memory)

    cdef idle(self):
        if self.busy and self.busy_forks != FORKS:
            # Set by a thread that fork() did not copy into this process: the
            # work it had under way is not to be run.
            self.busy = 0
            self.invalidate()
        if self.busy:
            raise RuntimeError("another thread is running a step of this optimizer")

    cdef enter(self, int how):
        self.busy = how
        self.busy_forks = FORKS

    cdef check(self, Py_ssize_t j):
        self.idle()
        if not 0 <= j < self.count:
            raise IndexError(f"parameter index {j} out of range")

    cdef void invalidate(self) noexcept:
        # What the last gather found is not to be run.
        self.epoch += 1
        self.n_selected = self.n_distinct = 0

    cdef drop_held(self):
        # Let go of every export and copy (detached from its slot before it
        # is freed: freeing a tensor can run Python code).
        cdef Py_ssize_t k
        cdef DLManaged* m
        self.invalidate()
        memset(self.step_grad, 0, self.count * sizeof(uintptr_t))
        for k in range(2 * self.count):
            m = self.owned[k]
            if m != NULL:
                self.owned[k] = NULL
                m.deleter(m)
        if self.any_capsules:
            self.any_capsules = False
            for k in range(2 * self.count):
                self.capsules[k] = None
        if self.any_copies:
            self.any_copies = False
            for k in range(self.count):
                self.copies[k] = None

    cdef const DLTensor* hold(self, Py_ssize_t k, obj) except? NULL:
        # Export tensor obj through DLPack into slot k, held until drop_held();
        # NULL (no exception) when DLPack cannot describe it.
        cdef DLManaged* m = NULL
        cdef DLManaged* old
        if not PyObject_TypeCheck(obj, self.tensor_type):
            return NULL
        if self.api != NULL:
            if self.api.managed_tensor_from_py_object_no_sync(<void*>obj, &m) != 0:
                undescribed()
                return NULL
            old = self.owned[k]
            self.owned[k] = m
            if old != NULL:
                old.deleter(old)
            if m.version.major != DL_MAJOR:  # only its deleter may be read
                return NULL
            return &m.dl_tensor
        try:
            capsule = self.to_dlpack(obj)
        except (RuntimeError, TypeError, BufferError):
            return NULL
        self.capsules[k] = capsule
        self.any_capsules = True
        return tensor_of(capsule)

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
        cdef Py_hash_t key_hash = PyObject_Hash(param)
        self.check(j)
        self.enter(1)
        try:
            self.invalidate()
            self.present[j] = 0
            t = self.hold(2 * j, param)
            if t == NULL or not (dense(t, 32, &data) or dense(t, 64, &data)):
                raise ValueError(f"parameter {j} is not a dense, C-contiguous float CPU tensor")
            for d in range(t.ndim):
                numel *= t.shape[d]
            shape = PyBytes_FromStringAndSize(<char*>t.shape, t.ndim * sizeof(int64_t))
            self.param_ptr[j] = data
            self.size[j] = numel
            self.is64[j] = t.dtype.bits == 64
            self.hashes[j] = key_hash
            # What these replace is freed (which may run Python code) while
            # the entry is still marked absent.
            self.params[j] = param
            self.states[j] = state
            self.exp_avgs[j] = exp_avg
            self.exp_infs[j] = exp_inf
            self.steps_of[j] = step
            self.keep[j] = keep
            self.shapes[j] = shape
            self.m_ptr[j] = m_ptr
            self.u_ptr[j] = u_ptr
            self.step_ptr[j] = step_ptr
            self.step64[j] = step64
            self.present[j] = 1
            self.unchecked = True
        finally:
            self.busy = 0

    def mark_checked(self):
        """The caller checked that no two written tensors of the group overlap."""
        self.unchecked = False

    def set_grad(self, Py_ssize_t j, grad, uintptr_t ptr):
        """This step's gradient of parameter ``j`` (a copy made and checked by the caller).

        ``grad`` is held until the step has run; it is not reused.
        """
        self.check(j)
        if self.gathered_in != self.epoch:
            raise RuntimeError("another thread is running a step of this optimizer")
        old = self.copies[j]  # freed on return, after the pointer changed
        self.copies[j] = grad
        self.any_copies = True
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
        cdef int bits
        self.idle()
        if not isinstance(state_of, dict):
            raise TypeError("state_of must be a dict")
        self.enter(1)
        try:
            self.drop_held()
            self.stale = []
            self.to_copy = []
            # A snapshot: the list may change while Python code runs below
            # (p.grad, g.is_neg() and the exports may run some or let another
            # thread in).
            snapshot = tuple(params)
            if len(snapshot) != self.count:
                return -1
            for j in range(self.count):
                p = snapshot[j]
                if p is not self.params[j]:
                    return -1
                g = p.grad
                if g is None:
                    continue
                self.selected[n] = j
                n += 1
                if not self.present[j]:
                    self.stale.append(j)
                    continue
                found = dict_get(state_of, p, self.hashes[j])
                if not (found != NULL and <object>found is self.states[j]
                        and self.entry_current(j, <dict><object>found)):
                    self.stale.append(j)
                    continue
                bits = 64 if self.is64[j] else 32
                t = self.hold(2 * j, p)
                if not (t != NULL and dense(t, bits, &data) and data == self.param_ptr[j]
                        and self.same_layout(j, t)):
                    self.stale.append(j)
                    continue
                if not g.is_neg():
                    t = self.hold(2 * j + 1, g)
                    if t != NULL and dense(t, bits, &data) and self.same_layout(j, t):
                        self.step_grad[j] = data
                        continue
                self.to_copy.append(j)
            self.n_selected = n
            if not self.stale:
                self.gathered_in = self.epoch
            return n
        finally:
            self.busy = 0

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

    def counters(self):
        """The ``step`` tensor of every parameter with an entry: what a step advances."""
        return [self.steps_of[j] for j in range(self.count) if self.present[j]]

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
        cdef int ok
        cdef unsigned long long epoch = self.epoch
        self.idle()
        if self.stale:
            raise RuntimeError("prepare() before the stale entries were set and gathered again")
        if self.gathered_in != epoch:
            raise RuntimeError("another thread is running a step of this optimizer")
        for i in range(self.n_selected):
            j = self.selected[i]
            if self.step_grad[j] == 0 and self.size[j] != 0:
                raise RuntimeError(f"prepare() without a gradient for parameter {j}")
        # The values' conversions may run Python code, and so another thread.
        ok = fast_options(lr, beta1, beta2, eps, weight_decay, False, maximize, convention,
                          num_threads, &o)
        if self.epoch != epoch or self.busy:
            raise RuntimeError("another thread is running a step of this optimizer")
        if not ok:
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
        self.prepared_in = epoch
        return True

    def run(self):
        """Update the parameters found by :meth:`gather` and advance their counters."""
        cdef Py_ssize_t i, d, j
        self.idle()
        if self.n_selected and not self.n_distinct:
            raise RuntimeError("run() before a successful prepare()")
        if not (self.prepared_in == self.gathered_in == self.epoch):
            # Another call let go of what this step gathered: refused, not skipped.
            raise RuntimeError("another thread is running a step of this optimizer")
        self.enter(2)
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
            self.busy = 0
        self.release()

    def release(self):
        """Let go of what the last :meth:`gather` holds (after a step, or instead of one)."""
        self.idle()
        self.drop_held()
