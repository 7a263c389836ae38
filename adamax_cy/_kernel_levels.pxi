# Instruction-set levels (included by _kernel.pyx): which build of the
# element loops runs, chosen once at import, and the dispatch to it.

cdef extern from *:
    """
    /* The highest x86-64 level this CPU and OS support: 1, 3 or 4. */
    static int adamax_cy_cpu_level(void) {
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
        __builtin_cpu_init();
        int v3 = __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2")
                 && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi")
                 && __builtin_cpu_supports("bmi2");
        int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                 && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
                 && __builtin_cpu_supports("avx512vl");
        return v4 ? 4 : (v3 ? 3 : 1);
    #else
        return 1;
    #endif
    }
    """
    int adamax_cy_cpu_level() noexcept

#: Instruction-set levels, oldest first, and the module built for each.
LEVELS = ("baseline", "x86-64-v3", "x86-64-v4")
_MODULES = {"baseline": "_loops_baseline", "x86-64-v3": "_loops_x86_64_v3",
            "x86-64-v4": "_loops_x86_64_v4"}
_CPU_RANK = {1: 0, 3: 1, 4: 2}

cdef const Loops* ACTIVE = NULL
cdef dict _capsules = {}  # level -> capsule (keeps its module's loops alive)


def _load_levels():
    # The levels both built and supported by this CPU, oldest first.
    supported = LEVELS[:_CPU_RANK[adamax_cy_cpu_level()] + 1]
    for name in supported:
        try:
            module = importlib.import_module("adamax_cy." + _MODULES[name])
        except ImportError:  # not built for this level
            continue
        _capsules[name] = module.loops()


def available_levels():
    """The instruction-set levels built here that this CPU can run, oldest first."""
    return tuple(_capsules)


def level():
    """The instruction-set level whose loops are in use."""
    return ACTIVE.level.decode()


def use_level(name):
    """Use the loops of level ``name``; returns the previous level (tests, benchmark)."""
    global ACTIVE
    if name not in _capsules:
        raise ValueError(f"level {name!r} is not available here; available: "
                         f"{available_levels()}")
    previous = None if ACTIVE == NULL else level()
    ACTIVE = <const Loops*>PyCapsule_GetPointer(_capsules[name], b"adamax_cy._loops.Loops")
    return previous


def _initial_level():
    # ADAMAX_CY_LEVEL caps the level (for example "baseline"); the default
    # is the highest available.
    available = available_levels()
    wanted = os.environ.get("ADAMAX_CY_LEVEL", "").strip()
    if wanted in LEVELS:
        below = [name for name in available if LEVELS.index(name) <= LEVELS.index(wanted)]
        if below:
            return below[len(below) - 1]
    if not available:
        raise ImportError("adamax_cy: no build of the element loops can be imported")
    return available[len(available) - 1]


_load_levels()
use_level(_initial_level())


cdef inline void update_range(floating* param, const floating* grad, floating* m,
                              floating* u, Py_ssize_t start, Py_ssize_t stop,
                              const Coefficients* k, int variant) noexcept nogil:
    # ``variant``: of the element loop, as ACTIVE.variant gives it for these
    # arrays, or -1 to have it chosen.
    if floating is float:
        ACTIVE.update32(param, grad, m, u, start, stop, k, variant)
    else:
        ACTIVE.update64(param, grad, m, u, start, stop, k, variant)


cdef inline void floor_range(floating* param, const floating* grad, floating* m, floating* u,
                             Py_ssize_t start, Py_ssize_t stop, double scale,
                             bint division) noexcept nogil:
    if division:
        if floating is float:
            ACTIVE.division32(param, grad, m, u, start, stop, scale)
        else:
            ACTIVE.division64(param, grad, m, u, start, stop, scale)
    elif floating is float:
        ACTIVE.floor32(param, grad, m, u, start, stop, scale)
    else:
        ACTIVE.floor64(param, grad, m, u, start, stop, scale)
