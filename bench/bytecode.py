"""Whether JobForge's own modules have up-to-date bytecode, which the start-up benches print beside their figures.

An installed wheel has its ``.pyc`` files compiled by pip at install time. The editable install of a checkout
has them written on first import, unless ``PYTHONDONTWRITEBYTECODE`` is set: then every process compiles
JobForge's modules from source again. ``make install`` compiles them (``compileall``) as pip does for a wheel;
a ``.pyc`` whose recorded source mtime and size no longer match its source is ignored by Python, and counted
here as missing.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the project's own packages (the folders ``make install`` compiles)
PACKAGES = ("workers", "shared", "activities", "workflows", "sdk/jobforge")


@dataclass(frozen=True)
class Bytecode:
    #: modules whose cached bytecode matches their source
    compiled: int
    #: all the modules of :data:`PACKAGES`
    modules: int

    def describe(self) -> str:
        """One line: how many of the project's modules had bytecode, and whether imports write the missing."""
        writes = ("PYTHONDONTWRITEBYTECODE is set: a module without it is compiled from source by every process"
                  if os.environ.get("PYTHONDONTWRITEBYTECODE") else "the missing are written on first import")
        return f"bytecode of JobForge's own modules: {self.compiled} of {self.modules} up to date ({writes})"


def up_to_date(source: Path) -> bool:
    """True when ``source``'s cached ``.pyc`` exists and records its current mtime and size (as Python checks)."""
    cached = Path(importlib.util.cache_from_source(str(source)))
    try:
        header = cached.read_bytes()[:16]
    except OSError:
        return False
    stat = source.stat()
    return (len(header) == 16 and header[:4] == importlib.util.MAGIC_NUMBER
            and int.from_bytes(header[4:8], "little") == 0  # timestamp-based, as compileall writes by default
            and int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF)


def bytecode(root: Path = ROOT) -> Bytecode:
    """How many of the project's modules under ``root`` have up-to-date bytecode."""
    sources = [path for package in PACKAGES for path in (root / package).rglob("*.py")
               if "__pycache__" not in path.parts]
    return Bytecode(sum(up_to_date(path) for path in sources), len(sources))
