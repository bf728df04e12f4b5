"""ReadyLayer: ask JobForge to verify a repository (lint, typecheck, build, test) and read the verdict.

    .venv/bin/python -m examples.integrations.readylayer_verify [PATH]    (default: examples/python-sample)
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

from examples.integrations._common import run_example
from shared.flags import Flag
from workers.runtime import Runtime

TENANT = "readylayer"
FLAGS = (Flag.AUTOPILOT_JOBS, Flag.VERIFY_PACK)
SAMPLE = Path(__file__).resolve().parents[1] / "python-sample"


async def main(rt: Runtime, tenant: str = TENANT, repo: Path = SAMPLE, pack: str = "full") -> BaseModel:
    await rt.gate.tenants.ensure_tenant(tenant)  # a first run of the example makes its tenant
    client = rt.client()
    handle = await client.request_job(tenant, "autopilot.readylayer.verify_pack",
                                      {"repo_path": str(repo), "pack": pack}, actor="readylayer")
    print(f"verifying {repo} ({pack}): run {handle.workflow_id}")
    report = await client.result(handle)
    data = report.model_dump(mode="json")
    print(f"verdict: {data.get('verdict')}")
    for step in data.get("steps", []):
        print(f"  {step.get('name'):10s} {step.get('status'):10s} {step.get('duration_seconds', 0):6.2f}s")
    return report


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else SAMPLE
    run_example(lambda rt: main(rt, repo=target), FLAGS)
