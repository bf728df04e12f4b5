"""The JobForge SDK over the HTTP ingress (`jobforge-api`, a tenant API key): the same methods and typed errors
as the server's Temporal-direct operator client (`shared.client`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
from pydantic import TypeAdapter

from jobforge.errors import (
    InvalidRequest,
    JobForgeError,
    RoutingTimeout,
    RunStillRunning,
    StoreUnavailable,
    TemporalUnavailable,
    typed_error,
)
from jobforge.models import (
    ArtifactRecord,
    EventEnvelope,
    EventReceipt,
    EventRouting,
    FireRecord,
    RouteEventResult,
    RunHandleInfo,
    RunRecord,
    SealedSecret,
    TriggerSpec,
    TriggerView,
)

_ARTIFACTS = TypeAdapter(list[ArtifactRecord])
_TRIGGERS = TypeAdapter(list[TriggerView])
_FIRES = TypeAdapter(list[FireRecord])


def _check_wait(within: float, interval: float) -> float:
    if not (within > 0 and interval > 0):
        raise InvalidRequest("within and interval must be positive", within=within, interval=interval)
    return time.monotonic() + within


def error_from_problem(response: httpx.Response) -> JobForgeError:
    """The typed error a problem+json answer carries (rebuilt by :func:`typed_error`, as the Temporal
    transport does); an answer without a registered code is an outage (5xx) or a plain JobForgeError."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    typed = typed_error(body if isinstance(body, dict) else {})
    if typed is not None:
        return typed
    message = str(body.get("detail", "")) if isinstance(body, dict) else ""
    kind = TemporalUnavailable if response.status_code >= 500 else JobForgeError
    return kind(message or f"HTTP {response.status_code}")


class JobForgeClient:
    """``JobForgeSDK`` over ``jobforge-api`` with a tenant API key (``Authorization: Bearer``)."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._timeout = timeout
        self._transport = transport
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                                       headers={"Authorization": f"Bearer {api_key}"})

    @property
    def base_url(self) -> str:
        """The API this client talks to."""
        return str(self._http.base_url)

    def with_api_key(self, api_key: str) -> JobForgeClient:
        """A client of the same API with another key (a rotated key's successor, another tenant's key); it shares
        the transport this client was given, if any."""
        return JobForgeClient(self.base_url, api_key, timeout=self._timeout, transport=self._transport)

    async def __aenter__(self) -> JobForgeClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"cannot reach the JobForge API: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise error_from_problem(response)
        return response.json()

    async def submit_event(self, event: EventEnvelope) -> EventReceipt:
        body = event.model_dump(mode="json", exclude_none=True)
        return EventReceipt.model_validate(await self._call("POST", "/v1/events", json=body))

    async def request_job(self, tenant_id: str, template_key: str, inputs: Mapping[str, Any] | None = None,
                          trace_id: str | None = None, actor: str = "sdk", idempotency_key: str | None = None,
                          policy_token: str | None = None) -> RunHandleInfo:
        body: dict[str, Any] = {"tenant_id": tenant_id, "template_key": template_key, "inputs": dict(inputs or {}),
                                "actor": actor}
        optional = {"trace_id": trace_id, "idempotency_key": idempotency_key, "policy_token": policy_token}
        body.update({name: value for name, value in optional.items() if value is not None})
        return RunHandleInfo.model_validate(await self._call("POST", "/v1/jobs", json=body))

    async def get_run(self, ident: str, tenant_id: str | None = None) -> RunRecord:
        return RunRecord.model_validate(await self._call("GET", f"/v1/runs/{ident}"))

    async def wait_run(self, run_id: str, *, within: float = 600.0, interval: float = 0.5) -> RunRecord:
        """The run's record once its status is final (succeeded, failed, rejected, cancelled, timed out),
        read with ``get_run`` every ``interval`` seconds; :class:`~jobforge.errors.RunStillRunning` when it is
        not final after ``within`` seconds. A failed run is answered, not raised: read ``status`` and ``error``."""
        deadline = _check_wait(within, interval)
        while True:
            record = await self.get_run(run_id)
            if record.status.is_final:
                return record
            if time.monotonic() >= deadline:
                raise RunStillRunning(f"run {run_id} is still {record.status.value} after {within:g}s",
                                      run_id=run_id, status=record.status.value)
            await asyncio.sleep(interval)

    async def list_artifacts(self, run_id: str, tenant_id: str | None = None) -> Sequence[ArtifactRecord]:
        return _ARTIFACTS.validate_python(await self._call("GET", f"/v1/runs/{run_id}/artifacts"))

    async def list_audit(self, limit: int = 100, before_seq: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if before_seq is not None:
            params["before_seq"] = before_seq
        result: list[dict[str, Any]] = await self._call("GET", "/v1/audit", params=params)
        return result

    async def issue_policy_token(self, template_key: str, inputs: Mapping[str, Any] | None = None,
                                 ttl_seconds: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"template_key": template_key, "inputs": dict(inputs or {})}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        result: dict[str, Any] = await self._call("POST", "/v1/policy-tokens", json=body)
        return result

    async def event_routing(self, receipt: EventReceipt) -> EventRouting:
        """Where the event a receipt names is: received, and once routed, what its triggers decided (scope
        ``events:read``)."""
        params = {"first_seen_at": receipt.first_seen_at.isoformat()}
        return EventRouting.model_validate(
            await self._call("GET", f"/v1/events/{receipt.event_type}/{receipt.event_id}", params=params))

    async def wait_routed(self, receipt: EventReceipt, within: float = 60.0, interval: float = 0.5) -> RouteEventResult:
        """The routing result of the event a receipt names (the triggers it matched, each fire's verdict and
        run), read with :meth:`event_routing` until the event's router has handled it;
        :class:`~jobforge.errors.RoutingTimeout` after ``within`` seconds (routing is durable: it still will be)."""
        deadline = _check_wait(within, interval)
        pause = min(0.05, interval)
        while True:
            state = await self.event_routing(receipt)
            if state.routing is not None:
                return state.routing
            if time.monotonic() >= deadline:
                raise RoutingTimeout(f"event {receipt.event_id} was not routed within {within:g}s; it still will be")
            await asyncio.sleep(pause)
            pause = min(pause * 2, interval)

    async def create_trigger(self, spec: TriggerSpec) -> TriggerView:
        """Create a cron or event trigger of the key's tenant (scope ``triggers:write`` and the scopes of the
        template it runs). Its scheduled fires run as the API key's actor: leave ``actor`` unset (an
        event trigger's fires run as the event's submitter)."""
        body = spec.model_dump(mode="json", exclude_unset=True)
        return TriggerView.model_validate(await self._call("POST", "/v1/triggers", json=body))

    async def list_triggers(self) -> list[TriggerView]:
        """The tenant's triggers (scope ``triggers:read``)."""
        return _TRIGGERS.validate_python(await self._call("GET", "/v1/triggers"))

    async def get_trigger(self, name: str) -> TriggerView:
        """One of the tenant's triggers (scope ``triggers:read``); :class:`~jobforge.errors.TriggerNotFound`."""
        return TriggerView.model_validate(await self._call("GET", f"/v1/triggers/{name}"))

    async def dry_runs(self, name: str, limit: int = 100) -> list[FireRecord]:
        """What a dry-run trigger would have run, newest first (scope ``triggers:read``)."""
        return _FIRES.validate_python(await self._call("GET", f"/v1/triggers/{name}/dry-runs", params={"limit": limit}))

    async def sealed_secret(self, run_id: str) -> SealedSecret:
        """The new key of a key rotation run, its secret sealed to the rotation's recipient key (scopes
        ``runs:read`` and ``keys:rotate``); :class:`~jobforge.errors.RunStillRunning` before the run has made it.
        Open it with :func:`jobforge.sealed.open_sealed_secret` (the ``keys`` extra)."""
        return SealedSecret.model_validate(await self._call("GET", f"/v1/runs/{run_id}/sealed-secret"))

    async def wait_sealed_secret(self, run_id: str, *, within: float = 60.0, interval: float = 0.5) -> SealedSecret:
        """:meth:`sealed_secret` once the rotation has made the new key (from its grace period on);
        :class:`~jobforge.errors.RunStillRunning` when it has not after ``within`` seconds."""
        deadline = _check_wait(within, interval)
        while True:
            try:
                return await self.sealed_secret(run_id)
            except RunStillRunning:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(interval)
