"""What the store writes into a text column: every limit applied here, at the store's boundary, never by callers.

Each text column of :mod:`shared.store.tables` is one of two kinds:

* **clipped** (declared with ``info=clip()`` / ``clip(N)``): free text that describes something (an
  actor, a reason, an error). NUL and unpaired surrogates, which PostgreSQL cannot store, become U+FFFD,
  and text longer than the column's length (or N for a ``text`` column) keeps its first characters: that
  prefix is all that is lost;
* **exact** (every other column): an identifier, key, hash or name something is looked up by. Text that
  does not fit is refused whole, never cut: :class:`~jobforge.errors.UnstorableText` for NUL or an unpaired
  surrogate, :class:`~jobforge.errors.InvalidRequest` (naming the column and its length) for text too long.

Lengths are counted in characters (code points), as PostgreSQL counts ``varchar(n)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jobforge.errors import InvalidRequest, UnstorableText
from shared.security.limits import find_unstorable, pg_text

#: the ``info`` key under which a column declares it is clipped (its value: the most characters, or None)
CLIP = "jobforge_clip"


def clip(chars: int | None = None) -> dict[str, Any]:
    """The ``info`` of a clipped column: kept to ``chars`` characters (default: the column's own length)."""
    return {CLIP: chars}


@dataclass(frozen=True, slots=True)
class Column:
    table: str
    name: str
    #: the most characters stored (None: no limit)
    chars: int | None
    clipped: bool

    def fit(self, value: str) -> str:
        """``value`` as stored in this column; the typed error when an exact column cannot hold it whole."""
        if self.clipped:
            text = pg_text(value)
            return text[:self.chars] if self.chars is not None else text
        found = find_unstorable(value)
        if found is not None:
            raise UnstorableText(self.name, found[1], what=f"{self.table}.{self.name}")
        if self.chars is not None and len(value) > self.chars:
            raise InvalidRequest(f"{self.table}.{self.name} holds at most {self.chars} characters, not {len(value)}",
                                 field=self.name, limit=self.chars)
        return value


@cache
def columns() -> dict[str, dict[str, Column]]:
    """Every text column of every table, by table and column name (read once from the tables' metadata)."""
    from sqlalchemy import String

    from shared.store.tables import Base

    found: dict[str, dict[str, Column]] = {}
    for table in Base.metadata.sorted_tables:
        for col in table.columns:
            if isinstance(col.type, String):  # Text is a String without a length
                clipped = CLIP in col.info
                chars = col.info[CLIP] if clipped and col.info[CLIP] is not None else col.type.length
                found.setdefault(table.name, {})[col.name] = Column(table.name, col.name, chars, clipped)
    return found


def fit(table: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (column -> value) of a row of ``table`` as the store writes them: each text value through
    its column's :meth:`Column.fit`; other values (None, numbers, JSON) as they are. A name that is not a
    column of ``table`` is a programming error (:class:`KeyError`), so no value skips its limit."""
    known = columns()[table]
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            from shared.store.tables import Base

            if name not in Base.metadata.tables[table].columns:
                raise KeyError(f"{table} has no column {name!r}")
        out[name] = known[name].fit(value) if isinstance(value, str) and name in known else value
    return out
