"""ReadyLayer: ask JobForge to verify a repository (lint, typecheck, build, test) and read the verdict.

Only the SDK is needed (`pip install jobforge`): the request goes to `jobforge-api` with the tenant's key.

    export JOBFORGE_API_URL=http://127.0.0.1:8000 JOBFORGE_API_KEY=jfk_...   # a key of tenant readylayer
    python -m examples.integrations.readylayer_verify [PATH] [--pack fast|full]   (default: examples/python-sample)

PATH is read by the worker, so it names a repository on the worker's machine.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from examples.integrations._common import api_client
from jobforge import JobForgeClient, RunRecord

TENANT = "readylayer"
TEMPLATE = "autopilot.readylayer.verify_pack"
SAMPLE = Path(__file__).resolve().parents[1] / "python-sample"


async def main(client: JobForgeClient, tenant: str = TENANT, repo: Path = SAMPLE, pack: str = "full",
               within: float = 600.0) -> RunRecord:
    handle = await client.request_job(tenant, TEMPLATE, {"repo_path": str(repo), "pack": pack}, actor="readylayer")
    print(f"verifying {repo} ({pack}): run {handle.run_id}")
    record = await client.wait_run(handle.run_id, within=within)
    print(f"run {record.status.value}; verdict: {record.summary.get('verdict')}")
    for name, status in dict(record.summary.get("steps", {})).items():
        print(f"  {name:10s} {status}")
    return record


async def _cli(repo: Path, pack: str, tenant: str) -> None:
    async with api_client() as client:
        await main(client, tenant, repo, pack)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=SAMPLE)
    parser.add_argument("--pack", choices=("fast", "full"), default="full")
    parser.add_argument("--tenant", default=TENANT)
    args = parser.parse_args()
    asyncio.run(_cli(args.path.resolve(), args.pack, args.tenant))
