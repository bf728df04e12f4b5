"""Process entrypoints: ``jobforge-worker``, the ``jobforge`` CLI and the embedded dev stack."""
