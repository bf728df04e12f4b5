"""Optional C fast paths for payload limits and redaction (``shared/_native.c``)."""

from collections.abc import Iterable
from typing import Any, Literal, final

def check_limits(value: Any, max_depth: int, max_string: int, max_array: int, /) -> bool:
    """True when ``value`` is plain JSON within the limits; False means "look closer"."""

def collect_keys(value: Any, /) -> set[str] | Literal[False] | None:
    """Every dict key in ``value``; None for a non-plain value type; False when undecided."""

@final
class Matcher:
    """One-pass search for up to 64 ASCII keywords (``fold_words`` lower-case, ASCII case folded)."""

    def __init__(self, words: Iterable[str], fold_words: Iterable[str] = ()) -> None: ...
    @property
    def words(self) -> tuple[str, ...]: ...
    def search(self, text: str, mask: int = ..., /) -> int:
        """Bit ``i`` set when ``words[i]`` occurs in ``text`` (only the bits in ``mask`` are looked for)."""
