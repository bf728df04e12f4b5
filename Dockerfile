# The JobForge image: jobforge (CLI), jobforge-worker and jobforge-api.
FROM python:3.11-slim

# git for provenance and repository checkouts, bubblewrap to sandbox verify-pack steps
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
RUN pip install --no-cache-dir .

RUN useradd --create-home --uid 10001 jobforge && mkdir -p /data && chown jobforge /data
USER jobforge
ENV JOBFORGE_HOME=/data JOBFORGE_LOG_FORMAT=json PYTHONUNBUFFERED=1

CMD ["jobforge-worker"]
