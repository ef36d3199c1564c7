"""The one compiled piece: common._ringc, the ring's per-record publish (common/_ringc.c).

Everything else is in pyproject.toml. ``optional=True``: where no C compiler is available
(a slim container image, say) the build goes on without it and the ring falls back on its
numba entry point (common/ring.py), slower per record but the same protocol.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("common._ringc", ["common/_ringc.c"], optional=True,
                             extra_compile_args=["-O2", "-std=c11"])])
