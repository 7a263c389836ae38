"""The Adamax update: levels, threads, the fast checks and many arrays; numbers only.

The element loops live in one extension module per instruction-set level
(``_loops_<level>``, all built from ``_loops.pxi``); the best level this CPU
supports is chosen once, at import. ``update``, ``update_many``, ``floor``
and ``all_finite`` trust their arguments: the caller
(:mod:`adamax_cy.api`) checked them. ``step_inplace`` and ``step_many``
check their arguments themselves, and update only when every check passes
in the common case; they return False, having written nothing, for the
caller's Python checks to run (and raise the error, or handle the rarer
layouts). Every entry point takes the hyperparameters and computes the
coefficients of the step itself (``coefficients``, once).

Each topic is an include: ``_kernel_levels.pxi`` (instruction-set levels
and dispatch), ``_kernel_threads.pxi`` (thread count and splitting),
``_kernel_policy.pxi`` (the adaptive default on a busy machine),
``_kernel_coefficients.pxi`` (hyperparameters to coefficients),
``_kernel_overlap.pxi`` (the overlap sweep and its sorts),
``_kernel_one.pxi`` (one quadruple: its fast checks and steps),
``_kernel_many.pxi`` (many arrays in one call) and ``_kernel_floor.pxi``
(the benchmark's memory floor). ``_kernel.pxd`` exposes the coefficients
and the many-array tables to other extensions.
"""

import importlib
import os

from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.sequence cimport PySequence_Fast_ITEMS
from cython.parallel cimport prange
from libc.math cimport isfinite, pow
from libc.string cimport memcpy
from libc.stdint cimport UINTPTR_MAX, uintptr_t

cimport numpy as cnp

cnp.import_array()

from adamax_cy._loops cimport Coefficients, Loops
from adamax_cy._openmp cimport ADAMAX_CY_OPENMP, omp_get_max_threads

from adamax_cy import _defaults

cdef extern from *:
    """
    #ifndef ADAMAX_CY_CFLAGS
    #define ADAMAX_CY_CFLAGS "unknown"
    #endif
    #ifdef __VERSION__
    #define ADAMAX_CY_COMPILER __VERSION__
    #else
    #define ADAMAX_CY_COMPILER "unknown"
    #endif
    """
    const char* ADAMAX_CY_CFLAGS
    const char* ADAMAX_CY_COMPILER

ctypedef fused floating:
    float
    double


include "_kernel_levels.pxi"
include "_kernel_policy.pxi"
include "_kernel_threads.pxi"
include "_kernel_coefficients.pxi"
include "_kernel_overlap.pxi"
include "_kernel_one.pxi"
include "_kernel_many.pxi"
include "_kernel_floor.pxi"


def openmp_enabled():
    """Whether this build runs its loops with OpenMP threads."""
    return bool(ADAMAX_CY_OPENMP)


def compile_flags():
    """The flags this module was compiled with."""
    return ADAMAX_CY_CFLAGS.decode()


def compiler_version():
    """The C compiler that built this module."""
    return ADAMAX_CY_COMPILER.decode()
