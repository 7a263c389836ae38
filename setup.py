"""Build the compiled kernel.

Environment variables:

ADAMAX_CY_OPENMP   "0" builds serially, "1" requires OpenMP; unset probes for it.
ADAMAX_CY_DEBUG    "1" turns bounds checking and initialisation checks back on.
ADAMAX_CY_NATIVE   "1" compiles for this machine's CPU (-march=native): faster,
                   but the build is no longer portable to older CPUs.
"""

import os
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
    return flags, []


openmp = choose_openmp()
cflags, ldflags = compile_flags()
if openmp is not None:
    cflags += openmp[0]
    ldflags += openmp[1]

extensions = [
    Extension(
        "adamax_cy._kernel",
        ["adamax_cy/_kernel.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[
            ("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION"),
            ("ADAMAX_CY_CFLAGS", '"' + " ".join(cflags) + '"'),
        ],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=compiler_directives,
        compile_time_env={},
    )
)
