# The JobForge image: jobforge (CLI), jobforge-worker and jobforge-api, with every toolchain the verify
# pack runs or provisions. What it contains and its size: docs/operations.md, "The image".
#
#   docker build -t jobforge:0.1.0 .            # or: docker compose build
#
# Base images are pinned by version and digest (their records: github.com/docker-library/repo-info);
# Python packages by deploy/requirements.lock; pip, setuptools and the extra interpreters below.

ARG PYTHON_IMAGE=python:3.11.15-slim-trixie@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
ARG NODE_IMAGE=node:24.20.0-trixie-slim@sha256:50c3b2f6988dfc307b86e5301d69611af31f4789bdf232863b07d3b02fe55ae0

# Node.js, npm and corepack come from the official Node image (same Debian release as the Python one).
FROM ${NODE_IMAGE} AS node

# Build stage: JobForge's virtualenv from the lock, and its wheel with the C accelerator shared._native
# compiled (the runtime image has no compiler; without it JobForge falls back to slower pure Python).
FROM ${PYTHON_IMAGE} AS build
ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
# Interpreters besides the image's own 3.11, for repositories that declare another Python (empty: none).
ARG EXTRA_PYTHONS="3.12 3.13"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/jobforge/venv \
 && /opt/jobforge/venv/bin/pip install "pip==${PIP_VERSION}" \
 && pip install "setuptools==${SETUPTOOLS_VERSION}"
WORKDIR /src
# the dependencies first: this layer is rebuilt only when the lock changes
COPY deploy/requirements.lock ./deploy/
RUN /opt/jobforge/venv/bin/pip install --no-deps -r deploy/requirements.lock
# the SDK (distribution `jobforge`, sdk/) holds the wire contract the server imports: its wheel is built too
COPY sdk ./sdk
COPY pyproject.toml setup.py README.md ./
COPY shared ./shared
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
# the extension is optional for pip; here it must be in the wheel
RUN pip wheel --no-build-isolation --no-deps --wheel-dir /wheels ./sdk . \
 && python -c "import glob, sys, zipfile; names = zipfile.ZipFile(glob.glob('/wheels/jobforge_server-*.whl')[0]).namelist(); \
sys.exit(not any(n.startswith('shared/_native') and n.endswith('.so') for n in names))" \
 && /opt/jobforge/venv/bin/pip install --no-deps /wheels/*.whl \
 && /opt/jobforge/venv/bin/pip check
# uv (JobForge's own, from its PyPI package) installs the extra interpreters where the verify pack looks
# for them (activities/toolchains.py: /opt/jobforge/python/<version>/bin/python3)
RUN mkdir -p /opt/jobforge/python \
 && if [ -n "${EXTRA_PYTHONS}" ]; then \
      UV_PYTHON_INSTALL_DIR=/opt/jobforge/python /opt/jobforge/venv/bin/uv python install --no-bin ${EXTRA_PYTHONS} \
      && rm -rf /opt/jobforge/python/.cache; \
    fi

FROM ${PYTHON_IMAGE}
ARG PIP_VERSION=26.3
# git: provenance and repository checkouts; make: Makefile targets a repository's CI runs; bubblewrap:
# the verify steps' sandbox; tini: PID 1, reaping the steps' orphaned processes; libstdc++6 and
# libatomic1: what node (the image's and any provisioned one) links against
RUN apt-get update \
 && apt-get install -y --no-install-recommends git make bubblewrap tini ca-certificates libstdc++6 libatomic1 \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir --disable-pip-version-check "pip==${PIP_VERSION}"

COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
COPY --from=node /usr/local/lib/node_modules/corepack /usr/local/lib/node_modules/corepack
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && ln -s ../lib/node_modules/corepack/dist/corepack.js /usr/local/bin/corepack \
 && node --version && npm --version && corepack --version

COPY --from=build /opt/jobforge /opt/jobforge

RUN groupadd --gid 10001 jobforge \
 && useradd --create-home --uid 10001 --gid 10001 jobforge \
 && mkdir -p /data /cache \
 && chown 10001:10001 /data /cache
USER 10001:10001
WORKDIR /home/jobforge
# JOBFORGE_HOME: run workspaces, stamps and (unless JOBFORGE_ARTIFACT_DIR) the artifact store.
# JOBFORGE_VERIFY_CACHE_DIR: what the verify pack provisions (toolchains/: package managers, node, Python
# tools; uv/: uv's cache; tenants/<t>/: npm, pnpm, yarn, pip and pre-commit downloads); a named volume
# in docker-compose.yml, shared by the worker replicas of a host (installs are locked per version).
# UV_PYTHON_INSTALL_DIR: the extra interpreters, for uv and the verify pack's interpreter search.
# COREPACK_HOME and npm_config_cache: where corepack and npm run by hand in the container write.
ENV PATH=/opt/jobforge/venv/bin:$PATH \
    UV_PYTHON_INSTALL_DIR=/opt/jobforge/python \
    JOBFORGE_HOME=/data \
    JOBFORGE_VERIFY_CACHE_DIR=/cache \
    COREPACK_HOME=/cache/corepack \
    npm_config_cache=/cache/npm \
    JOBFORGE_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
RUN jobforge --help > /dev/null && uv --version && pip --version && git --version && bwrap --version

ENTRYPOINT ["tini", "--"]
CMD ["jobforge-worker"]
