"""What every ``jobforge`` command module shares: consoles, error mapping, JSON output, settings."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson
import typer
from pydantic import BaseModel
from rich.console import Console

from shared.errors import InvalidRequest, JobForgeError
from shared.logs import configure
from shared.settings import Settings
from workers.stack import effective_settings

P = ParamSpec("P")
R = TypeVar("R")

out = Console()
err = Console(stderr=True)


class NegativeVerdict(Exception):
    """The command worked and its answer is no (exit 1)."""


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """Map JobForge errors to exit 2 with a one-line reason, negative verdicts to exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except NegativeVerdict as exc:
            if str(exc):
                err.print(str(exc), highlight=False)
            raise typer.Exit(1) from None
        except JobForgeError as exc:
            raise fail(f"{exc.code}: {exc.message}") from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def run_async(coro: Coroutine[Any, Any, R]) -> R:
    return asyncio.run(coro)


def settings() -> Settings:
    s = effective_settings()
    configure(s.log_level if s.log_level.upper() != "INFO" else "WARNING", s.log_format)
    return s


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=_default).decode() + "\n")


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError


def parse_inputs(text: str | None) -> dict[str, Any]:
    """``--inputs``: inline JSON or ``@path`` to a JSON file; must be an object."""
    if not text:
        return {}
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InvalidRequest(f"cannot read inputs file {path}: {exc.strerror}") from None
    else:
        raw = text.encode()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"--inputs is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("--inputs must be a JSON object")
    return value
