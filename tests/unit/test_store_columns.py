"""The store's text limits (shared/store/columns.py): clipped columns keep the documented prefix, exact ones
refuse whole with a typed error; nothing else is lost."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import String

from jobforge.errors import InvalidRequest, UnstorableText
from shared.security.limits import find_unstorable
from shared.store.columns import CLIP, columns, fit
from shared.store.tables import Base

#: any code point, lone surrogates and NUL included
HOSTILE = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=2500)
CLIPPED = [c for table in columns().values() for c in table.values() if c.clipped]
EXACT = [c for table in columns().values() for c in table.values() if not c.clipped and c.chars is not None]


def test_every_text_column_has_a_limit_rule() -> None:
    """Each String/Text column of the metadata is known to ``columns()``, with its declared length (or its clip)."""
    for table in Base.metadata.sorted_tables:
        for col in table.columns:
            if isinstance(col.type, String):
                known = columns()[table.name][col.name]
                assert known.clipped == (CLIP in col.info)
                assert known.chars == (col.info.get(CLIP) or col.type.length)
    assert {c.name for c in columns()["audit_log"].values() if c.clipped} == {"actor", "resource", "reason",
                                                                                 "trace_id"}


@given(value=HOSTILE, column=st.sampled_from(CLIPPED))
def test_a_clipped_column_keeps_the_storable_prefix(value: str, column: object) -> None:
    """A clipped column stores the value's first N characters, with only NUL and lone surrogates replaced by
    U+FFFD: every other character of that prefix is kept, in place."""
    from shared.store.columns import Column

    assert isinstance(column, Column)
    stored = column.fit(value)
    assert find_unstorable(stored) is None
    kept = value if column.chars is None else value[:column.chars]
    assert len(stored) == len(kept)
    for got, sent in zip(stored, kept, strict=True):
        assert got == sent or (got == "\ufffd" and find_unstorable(sent) is not None)


@given(value=HOSTILE, column=st.sampled_from(EXACT))
def test_an_exact_column_stores_the_value_whole_or_refuses_it_typed(value: str, column: object) -> None:
    """An exact column stores the value unchanged, or refuses it: UnstorableText for NUL / a lone surrogate,
    InvalidRequest naming the column and its length for text too long."""
    from shared.store.columns import Column

    assert isinstance(column, Column)
    assert column.chars is not None
    try:
        stored = column.fit(value)
    except UnstorableText as err:
        assert find_unstorable(value) is not None
        assert f"{column.table}.{column.name}" in err.message
    except InvalidRequest as err:
        assert find_unstorable(value) is None and len(value) > column.chars
        assert err.details["field"] == column.name and err.details["limit"] == column.chars
    else:
        assert stored == value and len(value) <= column.chars


@given(actor=HOSTILE, reason=HOSTILE)
def test_fit_passes_other_values_and_refuses_unknown_columns(actor: str, reason: str) -> None:
    """``fit`` fits each text value to its own column, leaves None and numbers alone, and a name that is not a
    column is a KeyError (no value can skip its limit by being misnamed)."""
    row = fit("flag_overrides", {"name": "X", "enabled": True, "actor": actor, "reason": reason})
    assert row["enabled"] is True and row["name"] == "X"
    assert row["actor"] == columns()["flag_overrides"]["actor"].fit(actor)
    assert len(row["reason"]) == len(reason)
    with pytest.raises(KeyError):
        fit("flag_overrides", {"actr": actor})
