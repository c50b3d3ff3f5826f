# syntax=docker/dockerfile:1
# One image for every component; the container's command picks which one runs:
#   guideline-api | guideline-operator | guideline-runner   (default: guideline-api)
# These are the console scripts of pyproject.toml, the same ones the local stack runs.
#
# Base: Python 3.11 on Debian 12 (bookworm), slim variant, pinned by tag AND by the digest
# of its multi-architecture index (amd64 + arm64), so a rebuild gets the same base bytes.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---- build stage: resolve nothing, install exactly the lock files -------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# Dependencies first (their own layer, reused while only the sources change). Wheels only:
# no compiler is needed, and none is in either stage.
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps --only-binary=:all: -r requirements.lock \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --no-deps --only-binary=:all: -r requirements-build.lock

# Then the project itself, built into a wheel by the pinned backend and installed without
# dependencies (they are all above); pip check proves the lock is complete.
COPY pyproject.toml README.md ./
COPY core ./core
COPY api ./api
COPY operator ./operator
COPY runner ./runner
COPY client ./client
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-deps /tmp/wheels/guideline_ingest-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/python -m pip uninstall --yes pip setuptools wheel

# ---- runtime stage: the base, the venv, a non-root user; no pip, no compiler -------------
FROM ${PYTHON_IMAGE} AS runtime
# The project's version (pyproject.toml), passed by `make image` (the Makefile's VERSION).
ARG VERSION
LABEL org.opencontainers.image.title="guideline-ingest" \
      org.opencontainers.image.description="Guidelines to summary and checklist with an LLM: API, operator and runner" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Proprietary"
# The base's own pip/setuptools/wheel are not needed at run time: remove them.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 10001 guideline \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin guideline
# Owned by root, so the application cannot modify its own code (and the pod's root
# filesystem is mounted read-only anyway).
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GUIDELINE_HOST=0.0.0.0
WORKDIR /tmp
# Numeric, so the kubelet can verify runAsNonRoot without resolving a user name.
USER 10001:10001
# API, operator liveness, operator metrics.
EXPOSE 8000 8081 9101
CMD ["guideline-api"]
