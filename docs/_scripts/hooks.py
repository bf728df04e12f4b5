"""MkDocs hooks of the documentation site (mkdocs.yml ``hooks:``).

- Pages other sessions are still writing (``OPTIONAL``) sit in the nav where they belong and are left
  out of it while they do not exist, so the strict build passes before and after they land.
- A Markdown page under docs/ that the nav does not name is added under "More", so a new page is
  never unreachable (and never fails the build for that alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: pages named in the nav that may not exist yet
OPTIONAL = frozenset({"temporal.md", "schedules.md"})
#: folders whose files are not site pages
IGNORED = ("_scripts/",)


def _prune(entries: list[Any], docs: Path) -> list[Any]:
    kept: list[Any] = []
    for entry in entries:
        if isinstance(entry, dict):
            (title, value), = entry.items()
            if isinstance(value, list):
                value = _prune(value, docs)
                if not value:
                    continue
            elif isinstance(value, str) and value in OPTIONAL and not (docs / value).exists():
                continue
            kept.append({title: value})
        elif isinstance(entry, str) and entry in OPTIONAL and not (docs / entry).exists():
            continue
        else:
            kept.append(entry)
    return kept


def _named(entries: list[Any]) -> set[str]:
    names: set[str] = set()
    for entry in entries:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, list):
                names |= _named(value)
            elif isinstance(value, str):
                names.add(value)
    return names


def on_config(config: Any) -> Any:
    docs = Path(config["docs_dir"])
    nav = _prune(list(config["nav"] or []), docs)
    named = _named(nav)
    stray = sorted(str(p.relative_to(docs)) for p in docs.rglob("*.md")
                   if not str(p.relative_to(docs)).startswith(IGNORED) and str(p.relative_to(docs)) not in named)
    if stray:
        nav.append({"More": stray})
    config["nav"] = nav
    return config
