"""Side effects only: every activity loads, calls a pure decision in ``shared/``, persists."""
