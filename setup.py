"""Build the compiled kernel.

Environment variables:

ADAMAX_CY_OPENMP   "0" builds serially, "1" requires OpenMP; unset probes for it.
ADAMAX_CY_DEBUG    "1" turns bounds checking and initialisation checks back on,
                   and keeps debug information in the modules.
ADAMAX_CY_NATIVE   "1" compiles for this machine's CPU (-march=native): faster,
                   but the build is no longer portable to older CPUs.
ADAMAX_CY_LEVELS   "0" builds the element loops for the baseline only; by
                   default, on x86-64 with gcc or clang, they are also built for
                   x86-64-v3 (AVX2) and x86-64-v4 (AVX-512), and the kernel
                   picks the best one the CPU supports at import.
"""

import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import CompileError, LinkError
from setuptools._distutils.sysconfig import customize_compiler

DEBUG = os.environ.get("ADAMAX_CY_DEBUG", "0") == "1"
NATIVE = os.environ.get("ADAMAX_CY_NATIVE", "0") == "1"
LEVELS = os.environ.get("ADAMAX_CY_LEVELS", "1") != "0"

compiler_directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "binding": True,
    "embedsignature": True,
    "autotestdict": False,
}

OPENMP_TEST = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\\n", n > 0);
        return 0;
    }
    """
)


def openmp_flags(compiler):
    """(compile, link) flags for OpenMP, or None when the compiler has none."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


def probe_openmp():
    """Compile, link and run a tiny OpenMP program; return its flags or None."""
    compiler = new_compiler()
    customize_compiler(compiler)
    flags = openmp_flags(compiler)
    if compiler.compiler_type == "msvc":
        return flags  # /openmp is a compile flag only; the runtime ships with MSVC
    tmp = tempfile.mkdtemp()
    try:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_TEST)
        objects = compiler.compile([source], output_dir=tmp, extra_postargs=flags[0])
        exe = os.path.join(tmp, "probe")
        compiler.link_executable(objects, exe, extra_postargs=flags[1])
        subprocess.run([exe], check=True, capture_output=True)
        return flags
    except (CompileError, LinkError, OSError, subprocess.CalledProcessError):
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def choose_openmp():
    forced = os.environ.get("ADAMAX_CY_OPENMP")
    if forced == "0":
        return None
    flags = probe_openmp()
    if forced == "1" and flags is None:
        sys.exit("ADAMAX_CY_OPENMP=1 but the compiler cannot build OpenMP code")
    if flags is None:
        print("adamax_cy: OpenMP not found, building serially", file=sys.stderr)
    return flags


def compile_flags():
    if sysconfig.get_platform().startswith("win"):
        return ["/O2", "/fp:precise"], []
    # No fused multiply-add behind our back: results must not depend on
    # the compiler's choices or the CPU.
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
    if NATIVE:
        flags.append("-march=native")
    if DEBUG:
        return flags, []
    # Lean modules: no debug information, and on Linux no symbol table
    # beyond the dynamic symbols Python needs (together about a sixth of the size).
    return flags + ["-g0"], (["-s"] if sys.platform.startswith("linux") else [])


def accepts(flags):
    """Whether the C compiler compiles a trivial file with ``flags``."""
    compiler = new_compiler()
    customize_compiler(compiler)
    tmp = tempfile.mkdtemp()
    try:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write("int main(void) { return 0; }\n")
        compiler.compile([source], output_dir=tmp, extra_postargs=flags)
        return True
    except CompileError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# The element loops, one module per instruction-set level (the kernel
# chooses at import): the same source, so the same results, at every level.
LOOP_LEVELS = [("baseline", [])]
if (LEVELS and not NATIVE and platform.machine().lower() in ("x86_64", "amd64")
        and not sysconfig.get_platform().startswith("win")):
    for name, flags in (
        ("x86_64_v3", ["-march=x86-64-v3"]),
        ("x86_64_v4", ["-march=x86-64-v4", "-mprefer-vector-width=512"]),
    ):
        if accepts(flags):
            LOOP_LEVELS.append((name, flags))
        else:
            print(f"adamax_cy: the compiler does not accept {flags}; "
                  f"not building the {name} loops", file=sys.stderr)


openmp = choose_openmp()
cflags, ldflags = compile_flags()
if openmp is not None:
    cflags += openmp[0]
    ldflags += openmp[1]

define_macros = [("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")]
extensions = [
    Extension(
        "adamax_cy._kernel",
        ["adamax_cy/_kernel.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=define_macros
        + [("ADAMAX_CY_CFLAGS", '"' + " ".join(cflags) + '"')],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    ),
    # The PyTorch optimizer's table (cimports the kernel; no OpenMP of its own).
    Extension(
        "adamax_cy._tensor_table",
        ["adamax_cy/_tensor_table.pyx"],
        define_macros=define_macros,
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    ),
] + [
    Extension(
        f"adamax_cy._loops_{name}",
        [f"adamax_cy/_loops_{name}.pyx"],
        define_macros=define_macros,
        extra_compile_args=cflags + flags,
        extra_link_args=ldflags,
    )
    for name, flags in LOOP_LEVELS
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=compiler_directives,
        compile_time_env={},
    )
)
