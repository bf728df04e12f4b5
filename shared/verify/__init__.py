"""The verify pack's pure core: inputs and report models, toolchain detection, path checks, fingerprints,
the step environment and sandbox command lines, and the verdict. No I/O beyond reading a repository's
files in :mod:`shared.verify.detect`; no SQLAlchemy, no temporalio."""
