"""Pure security decisions: payload limits, scopes, redaction, signed tokens, audit hashing, GCRA.

Nothing in this package does I/O or imports SQLAlchemy or temporalio; the stateful services that
use these decisions live in ``shared/store/`` and ``shared/gate.py``.
"""
