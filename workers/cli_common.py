"""What every ``jobforge`` command module shares: consoles, error mapping, JSON output, settings.

Importing it is cheap (``jobforge --help`` imports it): rich, pydantic, the settings and the logging
set-up are imported when a command first uses them.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import orjson
import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from shared.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


class _LazyConsole:
    """A rich ``Console`` made when first used: commands that print no table or markup never import rich."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return getattr(self._console, name)


out = cast("Console", _LazyConsole(stderr=False))
err = cast("Console", _LazyConsole(stderr=True))


def print_table(table: Table, *, wide: bool = False) -> None:
    """``table`` on stdout: on a terminal fitted to its width (long cells cut short), else (a pipe, a file, or
    ``--wide``) at its natural width, every id and key whole. ``--json`` is the interface for programs."""
    if out.is_terminal and not wide:
        out.print(table)
        return
    from rich.console import Console

    width = out.measure(table, options=out.options.update_width(1_000_000)).maximum
    Console(file=out.file, width=width, force_terminal=out.is_terminal).print(table)


class NegativeVerdict(Exception):
    """The command worked and its answer is no (exit 1)."""


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def one_line_error(exc: BaseException) -> str:
    """The CLI's line for an error no command mapped: an outage or a value the store refused as
    typed errors, anything else as its class and redacted first line."""
    from jobforge.errors import JobForgeError
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
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as exc:
            from jobforge.errors import JobForgeError

            if isinstance(exc, JobForgeError):
                raise fail(f"{exc.code}: {exc.message}") from None
            raise

    return wrapper


def run_async(coro: Coroutine[Any, Any, R]) -> R:
    import asyncio

    return asyncio.run(coro)


def settings(*, logs: bool = True) -> Settings:
    """The settings commands use (a running ``jobforge dev``'s addresses where the environment names none),
    with logging set up for a command line (warnings and errors on stderr). ``logs=False`` for a command
    whose path logs nothing: importing structlog costs more than a short command's own work."""
    from workers.stack import effective_settings

    s = effective_settings()
    if not logs:
        return s
    from shared.logs import configure

    configure(s.log_level if s.log_level.upper() != "INFO" else "WARNING", s.log_format)
    return s


def print_json(value: Any) -> None:
    value = _default(value) if hasattr(value, "model_dump") else value
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=_default).decode() + "\n")


def _default(value: Any) -> Any:
    """A pydantic model as JSON data (by duck type: importing pydantic to check costs a ``--help``)."""
    dump = getattr(value, "model_dump", None)
    if dump is None:
        raise TypeError
    return dump(mode="json")


def input_limit(s: Settings | None = None) -> int:
    """The most bytes ``--inputs``/``--payload`` may hold: the payload limit when validation is on in
    this environment, else the API's hard cap (the gate judges the exact limit again)."""
    from shared.flags import Flag, resolve
    from shared.security.limits import HARD_CAP_FACTOR
    from shared.settings import Settings

    s = s or Settings()
    validated = resolve(Flag.SECURITY_VALIDATION, os.environ, {}).enabled
    return s.max_payload_bytes if validated else s.max_payload_bytes * HARD_CAP_FACTOR


def parse_inputs(text: str | None, max_bytes: int | None = None) -> dict[str, Any]:
    """``--inputs``: inline JSON or ``@path`` to a JSON file; must be an object of at most ``max_bytes``
    (:func:`input_limit` by default). A file over the limit is refused without being read whole."""
    from jobforge.errors import InvalidRequest

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
