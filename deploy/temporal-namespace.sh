#!/bin/sh
# The one-shot `temporal-namespace` job of docker-compose.yml (image temporalio/admin-tools): the
# namespace JobForge uses, registered once the server is healthy (the server image, unlike auto-setup,
# registers none). An existing namespace is left as it is; `jobforge temporal setup` (jobforge-migrate)
# then adds JobForge's search attributes and raises its retention.
set -eu

: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS (host:port of the frontend)}"
NAMESPACE=${TEMPORAL_NAMESPACE:-default}
RETENTION=${TEMPORAL_NAMESPACE_RETENTION:-168h}
ATTEMPTS=${TEMPORAL_NAMESPACE_ATTEMPTS:-20}
PAUSE=${TEMPORAL_NAMESPACE_PAUSE_SECONDS:-3}

attempt=1
while :; do
    if temporal operator namespace describe --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" >/dev/null 2>&1; then
        echo "temporal-namespace: namespace $NAMESPACE exists"
        exit 0
    fi
    if out=$(temporal operator namespace create --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" \
            --retention "$RETENTION" 2>&1); then
        echo "temporal-namespace: namespace $NAMESPACE created (retention $RETENTION)"
        exit 0
    fi
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
        printf '%s\n' "$out" >&2
        echo "temporal-namespace: cannot register namespace $NAMESPACE at $TEMPORAL_ADDRESS after $attempt attempts" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep "$PAUSE"
done
