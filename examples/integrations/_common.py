"""What the examples share: a JobForgeClient for the API named by the environment.

    JOBFORGE_API_URL   the running `jobforge-api` (e.g. http://127.0.0.1:8000)
    JOBFORGE_API_KEY   a tenant API key (`jobforge keys create --tenant T --scopes ... --json`; each example's
                       docstring names the scopes it needs)

The examples import nothing but the SDK (`pip install jobforge`; `jobforge[keys]` for the key rotation).
"""

from __future__ import annotations

import os

from jobforge import JobForgeClient
from jobforge.errors import InvalidRequest


def api_client() -> JobForgeClient:
    """The SDK client for JOBFORGE_API_URL with JOBFORGE_API_KEY; a missing one is a clear error."""
    missing = [name for name in ("JOBFORGE_API_URL", "JOBFORGE_API_KEY") if not os.environ.get(name)]
    if missing:
        raise InvalidRequest(f"set {' and '.join(missing)} (the running jobforge-api and a tenant API key)")
    return JobForgeClient(os.environ["JOBFORGE_API_URL"], os.environ["JOBFORGE_API_KEY"])
