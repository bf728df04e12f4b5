"""Deterministic orchestration only: one workflow per module, named after its job."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType
from typing import Any


def workflows_in(module: ModuleType) -> list[type[Any]]:
    """The Temporal workflow classes defined in ``module``."""
    return [obj for obj in vars(module).values()
            if isinstance(obj, type) and obj.__module__ == module.__name__
            and hasattr(obj, "__temporal_workflow_definition")]


def discover(extra_modules: Iterable[ModuleType] = ()) -> list[type[Any]]:
    """Every workflow class of this package plus those of ``extra_modules``."""
    found: list[type[Any]] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        found.extend(workflows_in(importlib.import_module(f"{__name__}.{info.name}")))
    for module in extra_modules:
        found.extend(workflows_in(module))
    return found
