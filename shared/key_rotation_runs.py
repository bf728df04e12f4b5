"""A key rotation run's sealed secret, read from its workflow (the HTTP API and ``jobforge keys open-sealed``).

The successor key exists from the grace period on: the workflow's ``successor`` query hands its sealed secret
out before the run's result; once the run has closed, its result holds it.
"""

from __future__ import annotations

import contextlib

from temporalio.client import Client, WorkflowFailureError, WorkflowQueryFailedError
from temporalio.service import RPCError

from activities.keys import SuccessorResult
from jobforge.errors import InvalidRequest, RunFailed, RunStillRunning, typed_error
from jobforge.models import RunRecord, SealedSecret
from shared.keys_rotation import KeyRotationResult

#: the template whose runs carry a sealed secret
ROTATION = "autopilot.keys.rotation"


async def sealed_secret_of(temporal: Client, run: RunRecord) -> SealedSecret:
    """The sealed secret of ``run`` as things stand: :class:`RunStillRunning` while the run has not made the new
    key yet, the run's own typed error when it failed, :class:`InvalidRequest` for a run of another template."""
    if run.template_key != ROTATION:
        raise InvalidRequest(f"run {run.run_id} is a run of {run.template_key}, not of {ROTATION}")
    handle = temporal.get_workflow_handle(run.workflow_id, run_id=run.run_id, result_type=KeyRotationResult)
    with contextlib.suppress(WorkflowQueryFailedError, RPCError):  # not started yet, or closed and gone
        successor = await handle.query("successor", result_type=SuccessorResult | None)  # type: ignore[arg-type]
        if successor is not None:
            return SealedSecret(run_id=run.run_id, new_key_id=successor.new_key_id, scopes=list(successor.scopes),
                                sealed_secret=successor.sealed_secret)
    description = await handle.describe()
    if description.close_time is None:
        raise RunStillRunning(f"run {run.run_id} has not made the new key yet", run_id=run.run_id)
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        raise (typed_error(exc) or RunFailed(f"run {run.run_id} failed: {exc.cause or exc}")) from None
    assert isinstance(result, KeyRotationResult)
    return SealedSecret(run_id=run.run_id, new_key_id=result.new_key_id, scopes=list(result.scopes),
                        sealed_secret=result.sealed_secret)
