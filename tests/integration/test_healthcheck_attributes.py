"""The health check names the search attributes a namespace lacks (admission sets them on every run)."""

from __future__ import annotations

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.healthcheck import HealthcheckActivities
from shared.healthcheck import CheckStatus
from workers.runtime import Runtime
from workers.stack import temporal_binary

pytestmark = pytest.mark.integration


async def test_namespace_without_jobforge_search_attributes_fails_the_temporal_check(runtime: Runtime) -> None:
    """Against a dev server started without JobForge's search attributes, the temporal check fails naming all
    three and `jobforge temporal setup`; against the session's server (with them) it passes."""
    assert runtime.temporal is not None
    bare = await WorkflowEnvironment.start_local(dev_server_existing_path=str(temporal_binary()), ui=False,
                                                 data_converter=pydantic_data_converter, dev_server_log_level="error")
    try:
        check = await HealthcheckActivities(runtime.store, bare.client, runtime.settings,
                                            runtime.registry).check_temporal()
    finally:
        await bare.shutdown()
    assert check.status is CheckStatus.FAILED
    assert check.data["missing_search_attributes"] == ["JobForgeTenant", "JobForgeTemplate", "JobForgeTrace"]
    assert "jobforge temporal setup" in check.detail
    ok = await HealthcheckActivities(runtime.store, runtime.temporal, runtime.settings,
                                     runtime.registry).check_temporal()
    assert ok.status is CheckStatus.OK
