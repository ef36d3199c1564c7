"""The one compiled piece: common._ringc, the ring's per-record publish (common/_ringc.c) and
the feed's fast lane (services/feed/_feedlane.c), sharing common/_ring_publish.h.

Everything else is in pyproject.toml. ``optional=True``: where no C compiler is available
(a slim container image, say) the build goes on without it and the ring falls back on its
numba entry point (common/ring.py), slower per record but the same protocol.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("common._ringc", ["common/_ringc.c", "services/feed/_feedlane.c"],
                             include_dirs=["common"], depends=["common/_ring_publish.h"],
                             optional=True, extra_compile_args=["-O2", "-std=c11"])])
