#!/bin/sh
# The one-shot `temporal-schema` job of docker-compose.yml (image temporalio/admin-tools): Temporal's two
# PostgreSQL databases, the default store and the visibility store, created if missing and their
# schemas brought to the version this admin-tools release ships, before the server starts.
#
# Safe to run again (each `docker compose up`, each upgrade): an existing database is kept;
# setup-schema records version 0.0 only on a database without a version; update-schema applies the
# versioned migrations that are not applied yet. temporal-sql-tool reads its connection from
# SQL_PLUGIN, SQL_HOST, SQL_PORT, SQL_USER and SQL_PASSWORD.
set -eu

: "${SQL_PLUGIN:?set SQL_PLUGIN (postgres12)}" "${SQL_HOST:?set SQL_HOST}" "${SQL_USER:?set SQL_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD}"
: "${SQL_PORT:?set SQL_PORT (without it temporal-sql-tool uses 3306, the MySQL default)}"
SCHEMA_DIR=${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}
DEFAULT_DB=${TEMPORAL_DB:-temporal}
VISIBILITY_DB=${TEMPORAL_VISIBILITY_DB:-temporal_visibility}

create_database() {
    if out=$(temporal-sql-tool --db "$1" create 2>&1); then
        echo "temporal-schema: created database $1"
        return 0
    fi
    case "$out" in
        *"already exists"*) echo "temporal-schema: database $1 exists" ;;
        *) printf '%s\n' "$out" >&2; echo "temporal-schema: cannot create database $1" >&2; exit 1 ;;
    esac
}

for store in "$DEFAULT_DB:temporal" "$VISIBILITY_DB:visibility"; do
    db=${store%%:*}
    versions="$SCHEMA_DIR/${store#*:}/versioned"
    [ -d "$versions" ] || { echo "temporal-schema: no schema directory $versions in this image" >&2; exit 1; }
    create_database "$db"
    temporal-sql-tool --db "$db" setup-schema -v 0.0
    temporal-sql-tool --db "$db" update-schema -d "$versions"
    echo "temporal-schema: $db is at the schema of $versions"
done
