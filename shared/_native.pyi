"""Optional C fast paths for payload limits and redaction (``shared/_native.c``)."""

from typing import Any, final

def count_containers(data: bytes, /) -> int: ...
def check_limits(value: Any, max_depth: int, max_string: int, max_array: int, /) -> bool:
    """True when ``value`` is plain JSON within the limits; False means "look closer"."""

@final
class Redactor:
    """The redaction engine of :mod:`shared.security.redaction`, configured with its rule set."""

    def __init__(self, config: dict[str, Any], /) -> None: ...
    def redact_text(self, text: str, json_keys: bool = True, /) -> str:
        """``text`` redacted (the same object when nothing changes)."""
    def changes(self, text: str, json_keys: bool = True, /) -> bool:
        """Whether :meth:`redact_text` would change ``text``."""
    def is_secret_field(self, name: str, /) -> bool: ...
    def holds_secret_value(self, name: str, /) -> bool: ...
    def redact_value(self, value: Any, keep_types: bool = False, /) -> Any:
        """The redacted copy of a plain JSON value, or NotImplemented for anything else."""
    def find_secret(self, value: Any, /) -> tuple[list[Any], str] | Any | None:
        """(path keys, why) of the first secret, None, or NotImplemented for a value that is not plain."""
    def work(self) -> int:
        """Characters examined since the engine was made (a cost counter for tests and benchmarks)."""
