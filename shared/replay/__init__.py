"""Provenance of runs and deterministic replay bundles (gated by REPLAY_PACK_ENABLED)."""
