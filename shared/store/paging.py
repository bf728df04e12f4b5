"""Keyset pagination: pages of newest-first rows and the opaque cursors that continue them (pure).

A cursor names the last row of a page by its sort key (a moment and a tie-breaking id); the next
page is every row strictly older than that key, read from an index range, so a page costs the same
at the ten-thousandth row as at the first and rows arriving meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import orjson

from jobforge.errors import InvalidRequest

T = TypeVar("T")

#: the most rows one page may hold
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of rows, newest first; ``next_cursor`` continues with older rows (None: this is the last)."""

    items: Sequence[T]
    next_cursor: str | None = None


def encode_cursor(moment: datetime, ident: str | int) -> str:
    """An opaque, URL-safe cursor for the row sorted at (``moment``, ``ident``)."""
    raw = orjson.dumps([moment.astimezone(UTC).isoformat(timespec="microseconds"), ident])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str | int]:
    """The (moment, id) a cursor names; :class:`InvalidRequest` for anything that is not such a cursor."""
    try:
        if len(text) > 400:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        moment_text, ident = orjson.loads(raw)
        moment = datetime.fromisoformat(moment_text)
        if moment.tzinfo is None or not isinstance(ident, str | int) or isinstance(ident, bool):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidRequest("the page cursor is not valid; start again from the first page",
                             field="cursor") from None
    return moment, ident


def page_size(limit: int) -> int:
    """``limit`` within 1..:data:`MAX_PAGE`."""
    return max(1, min(int(limit), MAX_PAGE))

