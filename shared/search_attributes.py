"""The names of JobForge's search attributes (Keyword), known without importing the Temporal SDK.

Every run is started with them (``shared.temporal`` builds the typed keys from these names), and
``jobforge dev`` registers them on the Temporal dev server it launches, before its CLI has imported Temporal.
"""

from __future__ import annotations

TENANT_ATTRIBUTE = "JobForgeTenant"
TEMPLATE_ATTRIBUTE = "JobForgeTemplate"
TRACE_ATTRIBUTE = "JobForgeTrace"


def search_attribute_args() -> list[str]:
    """``--search-attribute`` values for ``temporal server start-dev`` / ``operator search-attribute``."""
    return [f"{name}=Keyword" for name in (TENANT_ATTRIBUTE, TEMPLATE_ATTRIBUTE, TRACE_ATTRIBUTE)]
