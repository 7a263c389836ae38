"""The element loops built for the x86-64-v3 instruction-set level."""

cdef const char* LEVEL = b"x86-64-v3"

include "_loops.pxi"
