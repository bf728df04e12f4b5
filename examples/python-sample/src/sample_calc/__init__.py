"""Arithmetic on decimal strings, exactly."""

from __future__ import annotations

from decimal import Decimal


def add(*values: str) -> str:
    """The exact sum of decimal strings, as a string."""
    return str(sum((Decimal(v) for v in values), Decimal(0)))


def mean(values: list[str]) -> str:
    """The exact mean of decimal strings; an empty list has none."""
    if not values:
        raise ValueError("the mean of nothing is undefined")
    return str(Decimal(add(*values)) / len(values))
