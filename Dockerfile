# The JobForge image: jobforge (CLI), jobforge-worker and jobforge-api.

# Build stage: the wheel, with the optional C accelerator shared._native compiled (the runtime image
# has no compiler; without the accelerator JobForge would fall back to its slower pure-Python code).
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY shared ./shared
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
# the extension is optional for pip; here it must be in the wheel
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -c "import glob, sys, zipfile; names = zipfile.ZipFile(glob.glob('/wheels/*.whl')[0]).namelist(); \
sys.exit(not any(n.startswith('shared/_native') and n.endswith('.so') for n in names))"

FROM python:3.11-slim

# git for provenance and repository checkouts, bubblewrap to sandbox verify-pack steps
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels

RUN useradd --create-home --uid 10001 jobforge && mkdir -p /data && chown jobforge /data
USER jobforge
ENV JOBFORGE_HOME=/data JOBFORGE_LOG_FORMAT=json PYTHONUNBUFFERED=1

CMD ["jobforge-worker"]
