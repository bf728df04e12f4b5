-- JobForge's own database; Temporal's auto-setup creates `temporal` and `temporal_visibility` itself.
CREATE DATABASE jobforge;
