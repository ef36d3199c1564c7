# AEGIS: one image for every service; the command picks the service.
#
#   docker build -t aegis:local .                                   # base python:3.11-slim
#   docker build --network host --build-arg PYTHON_IMAGE=local/python:3.11 -t aegis:local .
#   docker run --rm --network host --shm-size 256m aegis:local run  # the whole stack, one container
#
# docker-compose.yml runs one container per service from this image (docs/docker.md).
#
# The base image is a build argument so that a machine with no image registry can stand in
# a locally built Debian root (for example a debootstrap image tagged local/python:3.11).
# Both bases are Debian bookworm with Python 3.11 and `python3 -m venv`; nothing below
# assumes more than that (the interpreter is /usr/local/bin/python3 in one and
# /usr/bin/python3 in the other, and the venv records whichever the base has).
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
WORKDIR /src

# Runtime dependencies first, from pyproject.toml alone, so that editing the source does not
# re-download numba, numpy and ccxt: this layer changes only when the dependencies do.
# Every dependency ships manylinux wheels for CPython 3.11 on x86-64 and aarch64, so no
# compiler is needed for them. The test extras are not installed.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && /opt/venv/bin/pip install -q -r /tmp/requirements.txt

# A C compiler for the project's one C extension (common/_ringc.c: the ring's per-record
# publish; services/feed/_feedlane.c: the feed's fast lane, 320 ns a frame instead of 2.5 us). Build stage only: the
# runtime stage copies the built venv, not the compiler. Python's headers come with the
# official image; a plain Debian python3 needs python3-dev for them.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
 && (python3 -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
     || apt-get install -y -qq --no-install-recommends python3-dev >/dev/null) \
 && rm -rf /var/lib/apt/lists/*

# The project itself: a regular (not editable) install, so the image holds no source tree.
# The extension is optional in setup.py; here its absence would be a silent 8x slower feed,
# so the build says which it got (from /: in /src the source tree would shadow the install).
COPY README.md LICENSE ./
COPY setup.py ./
COPY common ./common
COPY services ./services
COPY venue ./venue
COPY cli ./cli
# the strategy API and the shipped strategies: the brain imports research.strategy_api
COPY research ./research
RUN /opt/venv/bin/pip install -q --no-deps . \
 && /opt/venv/bin/aegis --help >/dev/null \
 && cd / && /opt/venv/bin/python -c "from common.ring import _ringc; print('C extension (ring publish, feed fast lane):', 'built' if _ringc else 'NOT built: numba ring, Python decoder')"

# ---------------------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE}

# One fixed uid for every container: the orchestrator creates the ring file with mode 0600
# and the run directory with mode 0700, so feed and brain (other containers) can open them
# only as the same user. The compose file's tmpfs volume is owned by this uid too.
ARG AEGIS_UID=10001
RUN groupadd --system --gid ${AEGIS_UID} aegis \
 && useradd --system --uid ${AEGIS_UID} --gid aegis --home-dir /var/lib/aegis \
        --no-create-home --shell /usr/sbin/nologin aegis \
 && mkdir -p /run/aegis /var/lib/aegis /var/cache/aegis/numba \
 && chown aegis:aegis /run/aegis /var/lib/aegis /var/cache/aegis /var/cache/aegis/numba \
 && chmod 0700 /run/aegis /var/lib/aegis

COPY --from=build /opt/venv /opt/venv

# Caches go under /var/cache/aegis (the service user's, inside the image), not into the data
# volume at /var/lib/aegis (the user's home):
#   NUMBA_CACHE_DIR: the kernels are compiled with cache=True, and numba writes its cache
#     next to the source when it can; site-packages belongs to root here.
#   XDG_CACHE_HOME: the exchange sim keeps the parsed demo capture in $XDG_CACHE_HOME/aegis.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/var/cache/aegis/numba \
    XDG_CACHE_HOME=/var/cache \
    AEGIS_RUN_DIR=/run/aegis \
    AEGIS_DATA_DIR=/var/lib/aegis

USER aegis:aegis
WORKDIR /var/lib/aegis

# Warm the caches once at build time, as the service user: the numba kernels (a cold brain
# spends about 14 s compiling before it reports ready, a warm one about 1 s) and the sim's
# parsed capture (about 2.6 s of JSON parsing at every cold start).
# The warm-up is a short run of the real stack through the public CLI (so it stays right
# when the kernels change) with a small ring in /tmp (a build container's /dev/shm is only
# 64 MiB). It is best effort: if it fails the image still works and compiles on first start.
# numba keys its cache on the CPU model, so a host with another CPU recompiles once.
RUN mkdir /tmp/warm \
 && (AEGIS_RUN_DIR=/tmp/warm/run AEGIS_DATA_DIR=/tmp/warm/data AEGIS_RING__SHM_DIR=/tmp/warm \
     AEGIS_RING__CAPACITY=4096 AEGIS_SIM__SYMBOLS=2 AEGIS_FEED__MAX_SYMBOLS=2 \
     aegis run --duration 3 --no-status --summary-json /tmp/warm/summary.json >/tmp/warm/log 2>&1 \
     && python3 -c "import json; s = json.load(open('/tmp/warm/summary.json')); print('numba warm-up: ticks read', s.get('ticks_read'))" \
     || { tail -n 20 /tmp/warm/log; echo "numba warm-up failed: the kernels will compile at first start"; }) \
 && rm -rf /tmp/warm

ENTRYPOINT ["aegis"]
CMD ["run"]
