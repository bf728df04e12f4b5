-- JobForge's own database, created when the PostgreSQL volume is first initialised. Temporal's
-- `temporal` and `temporal_visibility` are created by the temporal-schema job (deploy/temporal-schema.sh).
CREATE DATABASE jobforge;
