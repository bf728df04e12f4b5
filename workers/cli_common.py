"""What every ``jobforge`` command module shares: consoles, error mapping, JSON output, settings."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson
import typer
from pydantic import BaseModel
from rich.console import Console

from shared.errors import InvalidRequest, JobForgeError
from shared.flags import Flag, resolve
from shared.logs import configure
from shared.security.limits import HARD_CAP_FACTOR
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


def one_line_error(exc: BaseException) -> str:
    """The CLI's line for an error no command mapped: an outage or a value the store refused as
    typed errors, anything else as its class and redacted first line."""
    from shared.outages import as_data_error, as_outage
    from shared.security.redaction import redact_text

    typed = exc if isinstance(exc, JobForgeError) else as_outage(exc)
    if typed is not None:
        return f"error: {typed.code}: {typed.message}"
    if as_data_error(exc):
        return ("error: invalid_request: PostgreSQL refused a value of this command (NUL or an unpaired "
                "surrogate in text)")
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"error: internal_error: {type(exc).__name__}: {redact_text(first)[:300]}".rstrip(": ")


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


def input_limit(s: Settings | None = None) -> int:
    """The most bytes ``--inputs``/``--payload`` may hold: the payload limit when validation is on in
    this environment, else the API's hard cap (the gate judges the exact limit again)."""
    s = s or Settings()
    validated = resolve(Flag.SECURITY_VALIDATION, os.environ, {}).enabled
    return s.max_payload_bytes if validated else s.max_payload_bytes * HARD_CAP_FACTOR


def parse_inputs(text: str | None, max_bytes: int | None = None) -> dict[str, Any]:
    """``--inputs``: inline JSON or ``@path`` to a JSON file; must be an object of at most ``max_bytes``
    (:func:`input_limit` by default). A file over the limit is refused without being read whole."""
    if not text:
        return {}
    limit = max_bytes if max_bytes is not None else input_limit()
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > limit:
                    raise InvalidRequest(f"{path} holds {size} bytes, over the limit of {limit} bytes",
                                         limit="max_bytes", allowed=limit, actual=size)
                raw = f.read(limit + 1)  # a pipe or device has no size: read no more than the limit allows
        except OSError as exc:
            raise InvalidRequest(f"cannot read inputs file {path}: {exc.strerror}") from None
    else:
        raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > limit:
        raise InvalidRequest(f"the JSON is over the limit of {limit} bytes", limit="max_bytes", allowed=limit)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"--inputs is not valid JSON: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("--inputs must be a JSON object")
    return value
