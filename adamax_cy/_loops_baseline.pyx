"""The element loops built for the baseline instruction-set level."""

cdef const char* LEVEL = b"baseline"

include "_loops.pxi"
