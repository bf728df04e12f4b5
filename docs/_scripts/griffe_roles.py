"""A Griffe extension (mkdocs.yml, mkdocstrings ``extensions``): Sphinx roles in docstrings read as code.

JobForge's docstrings name other objects the Sphinx way (``:class:`OperatorClient```, ``:func:`~x.y```);
mkdocstrings renders Markdown, where such a role would show its colons and backticks. Each role becomes a
code span of the name it points at (the last part of it with ``~``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


def plain(text: str) -> str:
    return _ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)


class SphinxRolesAsCode(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
