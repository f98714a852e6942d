"""Build zkfast: the Cython modules under ext/ compile into the zkfast package.

Set ZKFAST_DEBUG=1 for a build with bounds checks, assertions and line tracing.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ZKFAST_DEBUG") == "1"

MODULES = {
    "zkfast._jute": "ext/jute.pyx",
    "zkfast._datatree": "ext/datatree.pyx",
    "zkfast._fastpath": "ext/fastpath.pyx",
    "zkfast._pipeline": "ext/pipeline.pyx",
    "zkfast._quorum": "ext/quorum.pyx",
}

compile_args = ["-O0", "-g"] if DEBUG else ["-O2"]
extensions = [
    Extension(name, [src], extra_compile_args=compile_args, libraries=["z"],
              define_macros=[("CYTHON_TRACE_NOGIL", "1")] if DEBUG else [])
    for name, src in MODULES.items()
]

directives = {"language_level": 3, "embedsignature": True}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True, linetrace=True)

setup(ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["."],
                            annotate=False))
