"""What the operator-side examples share: find the running stack, turn on the flags it needs (server internals:
these examples run with the server installed; the SDK-only ones use _common.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable

from shared.flags import Flag
from workers.runtime import Runtime, open_runtime
from workers.stack import effective_settings


def run_example(main: Callable[[Runtime], Awaitable[object]], flags: Iterable[Flag]) -> None:
    """Run ``main`` against the running dev stack (`jobforge dev`) or JOBFORGE_* addresses.

    The flags are turned on for this process only; the workers must have them too (set them fleet-wide
    with `jobforge flags set NAME on`, or start the stack with `jobforge dev --enable NAME ...`).
    """
    for flag in flags:
        os.environ.setdefault(flag.value, "1")

    async def go() -> None:
        async with open_runtime(effective_settings()) as rt:
            await main(rt)

    asyncio.run(go())
