"""Build of the optional native fan-out core; everything else is in pyproject.toml.

`optional=True`: where no C compiler or Python headers are found, the install succeeds without
it and the workers run the pure-Python fan-out (workers/native.py says which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tureen.workers._native",
            sources=["workers/_native.c"],
            depends=["workers/_native_rx.c", "workers/_native_pipe.c", "workers/_native_loop.c"],  # included by _native.c
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
