"""The security gate as a service: pure decisions from ``shared/security`` + state in PostgreSQL.

One gate serves every entry path. The HTTP ingress and the SDK call :meth:`Gate.admit_job`
synchronously (so callers get 4xx/429 at once) and hand the run a signed receipt; the workflow's
admission activity accepts a valid receipt (:meth:`Gate.accept_receipt`) and applies the full gate
to a run that has none (a raw ``temporal workflow start``, the UI, a Schedule), judged as an
operator request. Rate limits are charged, policy tokens consumed and the audit entry written once
per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from jobforge.errors import (
    FeatureDisabled,
    InvalidRequest,
    JobForgeError,
    PolicyTokenInvalid,
    PolicyTokenRequired,
    RateLimited,
    TokenInvalid,
    UnknownTenant,
)
from jobforge.ids import check_tenant_id, check_trace_id, new_trace_id
from jobforge.models import EventEnvelope, EventReceipt, JobRun
from shared import metrics
from shared.admission import Judged, judge
from shared.canonical import input_hash
from shared.events import route_prefix
from shared.flags import Flag, FlagReader, FlagSnapshot, disabled
from shared.security import tokens
from shared.security.audit import AuditFact, Decision
from shared.security.limits import PayloadLimits, check_payload, check_storable, pg_text
from shared.security.principal import Principal
from shared.security.ratelimit import RateDecision, RatePolicy
from shared.security.redaction import redact, redact_text
from shared.security.scopes import require_scopes
from shared.settings import Settings
from shared.signing import signing_keys
from shared.store.audit import AuditLog
from shared.store.dedupe import DedupeOutcome, EventDeduper
from shared.store.grants import GrantStore
from shared.store.ratelimits import RateLimiter
from shared.store.store import Store
from shared.store.tenants import TenantStore
from shared.store.triggers import TriggerStore
from shared.templates import Registry

log = structlog.get_logger("jobforge.gate")

EVENTS_WRITE = "events:write"
TOKENS_ISSUE = "tokens:issue"
#: audit actions (and what the rate limit's refusals are counted under)
JOBS_REQUEST = "jobs.request"
EVENTS_SUBMIT = "events.submit"
TOKENS_ISSUE_ACTION = "tokens.issue"
TRIGGERS_CREATE = "triggers.create"
#: a paced key's request refused because too many are waiting (workers/api.py, shared/security/pacing.py)
PACED_ACTION = "requests.paced"
#: rate-limit refusals of one (tenant, actor, action, resource) are audited at most once per this many
#: seconds; each entry counts the refusals it stands for (``details.refusals``)
RATE_DENY_WINDOW_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Charge:
    """A request already charged to its tenant's rate limit: the HTTP ingress charges right after
    authentication, before it reads the body, so refused requests are counted too."""

    decision: RateDecision | None


@dataclass(frozen=True, slots=True)
class ReceiptUse:
    """A run's use of its receipt, to be recorded (``receipt_uses``): single use, bound to one run."""

    jti: str
    workflow_id: str
    run_id: str
    #: the receipt's expiry (seconds since the epoch)
    expires_at: int


#: records an admitted run together with its receipt's use; False when another run used the receipt
RecordAdmitted = Callable[[Judged, ReceiptUse], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class JobAdmission:
    judged: Judged
    receipt: str
    rate: RateDecision | None
    policy: RatePolicy


@dataclass(frozen=True, slots=True)
class EventAdmission:
    receipt: EventReceipt
    rate: RateDecision | None
    policy: RatePolicy


@dataclass(slots=True)
class _Flood:
    """Rate-limit refusals of one caller and action: when the next may be audited, and how many were held."""

    quiet_until: float
    held: int = 0
    #: the last held refusal (its message and trace id go into the entry that counts it)
    last: tuple[RateLimited, str] | None = None
    flush: asyncio.TimerHandle | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class IssuedPolicyToken:
    token: str
    ref: str
    jti: str
    expires_at: int


class Gate:
    def __init__(self, store: Store, settings: Settings, flags: FlagReader, registry: Registry) -> None:
        self.settings = settings
        self.flags = flags
        self.registry = registry
        # the process's one store of each area (shared with everything else that uses them)
        self.tenants: TenantStore = store.tenants
        self.limiter: RateLimiter = store.limiter
        self.deduper: EventDeduper = store.deduper
        #: admitted events are stored here before their router is signalled
        self.events: TriggerStore = store.triggers
        self.audit: AuditLog = store.audit
        self.grants: GrantStore = store.grants
        self._keys: list[bytes] | None = None
        #: rate-limit refusals being coalesced, by (tenant, actor, action, resource)
        self._floods: dict[tuple[str, str, str, str], _Flood] = {}
        self._flushing: set[asyncio.Task[None]] = set()
        #: the clock of the coalescing window (tests move it)
        self.clock = time.monotonic

    # -- configuration ------------------------------------------------------------------------

    @property
    def keys(self) -> list[bytes]:
        if self._keys is None:
            self._keys = signing_keys(self.settings)
        return self._keys

    @property
    def limits(self) -> PayloadLimits:
        s = self.settings
        return PayloadLimits(s.max_payload_bytes, s.max_payload_depth, s.max_string_chars, s.max_array_items,
                             s.max_payload_containers)

    @property
    def tenant_policy(self) -> RatePolicy:
        return RatePolicy(self.settings.rate_limit_per_minute, 60.0, self.settings.rate_limit_burst)

    def _buckets(self, tenant_id: str, actor: str) -> list[tuple[str, RatePolicy]]:
        buckets = [(f"tenant:{tenant_id}", self.tenant_policy)]
        if self.settings.rate_limit_actor_per_minute:
            buckets.insert(0, (f"actor:{tenant_id}:{actor}",  # the store clips the bucket to its column
                               RatePolicy(self.settings.rate_limit_actor_per_minute, 60.0)))
        return buckets

    async def flag_values(self) -> FlagSnapshot:
        """Every flag's value now (a mapping of flag to on/off that can explain a refusal)."""
        return await self.flags.snapshot()

    # -- the shared steps ---------------------------------------------------------------------

    async def _judge(self, run: JobRun, workflow_type: str, flags: FlagSnapshot, principal: Principal,
                     attributes: Mapping[str, str] | None) -> tuple[Judged, FlagSnapshot]:
        """:func:`judge` with ``flags``; a refusal for a flag that is off is judged again on a fresh reading of
        the overrides first (an override turned on within the TTL counts at once). Returns the flags used."""
        try:
            return judge(run, workflow_type, self.registry, flags, principal=principal, limits=self.limits,
                         attributes=attributes), flags
        except FeatureDisabled:
            confirmed = await self.flags.confirm(flags)
            if dict(confirmed) == dict(flags):
                raise
            return judge(run, workflow_type, self.registry, confirmed, principal=principal, limits=self.limits,
                         attributes=attributes), confirmed

    async def require_tenant(self, principal: Principal, tenant_id: str) -> None:
        """:class:`UnknownTenant` unless ``tenant_id`` exists. A key's own tenant exists (a key is made for
        an existing tenant): only an operator's request costs a lookup, one primary-key read per tenant
        and process."""
        if principal.tenant_id != tenant_id:
            await self.tenants.require(tenant_id)

    async def charge(self, flags: Mapping[Flag, bool], tenant_id: str, actor: str) -> RateDecision | None:
        """Charge one request to the tenant's (and actor's) budget; :class:`RateLimited` when spent."""
        if not flags.get(Flag.RATE_LIMITING, False):
            return None
        buckets = self._buckets(tenant_id, actor)
        decision = await self.limiter.hit(buckets)
        if not decision.allowed:
            policy = self.tenant_policy
            raise RateLimited(retry_after=round(decision.retry_after, 3), limit=policy.limit, period=policy.period)
        return decision

    async def charge_request(self, principal: Principal, tenant_id: str, action: str) -> Charge:
        """Charge one request of ``principal`` before anything else is judged (see :class:`Charge`)."""
        flags = await self.flag_values()
        try:
            return Charge(await self.charge(flags, tenant_id, principal.actor))
        except RateLimited as err:
            metrics.rate_limited(action)
            if action == EVENTS_SUBMIT:
                metrics.event_denied(err.code, retryable=err.retryable)
                await self.deduper.count_rate_limited(tenant_id)  # the console's refusals per minute
            elif action == JOBS_REQUEST:
                metrics.job_admission("gate", allowed=False, reason=err.code, retryable=err.retryable)
            await self._deny(flags, tenant_id, principal.actor, action, "", err, "")
            raise

    async def deny(self, principal: Principal, tenant_id: str, action: str, err: JobForgeError) -> None:
        """Audit a refusal decided outside the gate's own steps (a rate-limit refusal coalesced as usual)."""
        await self._deny(await self.flag_values(), tenant_id, principal.actor, action, "", err, "")

    async def record(self, flags: Mapping[Flag, bool], tenant_id: str, actor: str, action: str, resource: str,
                     decision: Decision, reason: str = "", trace_id: str = "",
                     details: Mapping[str, Any] | None = None) -> None:
        """Write an audit entry when JOBFORGE_AUDIT_LOGGING_ENABLED is on (secrets redacted)."""
        if not flags.get(Flag.AUDIT_LOGGING, False):
            return
        try:
            check_tenant_id(tenant_id)
        except InvalidRequest:
            log.warning("audit_skipped_invalid_tenant", action=action, decision=decision.value)
            return
        await self.audit.append(AuditFact(
            tenant_id=tenant_id, actor=actor, action=action, resource=resource,  # the store clips them
            decision=decision, reason=redact_text(reason), trace_id=trace_id,
            details=redact(dict(details or {}))))

    async def _deny(self, flags: Mapping[Flag, bool], tenant_id: str, actor: str, action: str, resource: str,
                    err: JobForgeError, trace_id: str) -> None:
        if err.retryable:
            return  # infrastructure trouble is not a decision
        if isinstance(err, UnknownTenant):  # no chain is started for a tenant that does not exist
            log.warning("request_for_unknown_tenant", action=action, tenant_id=pg_text(tenant_id)[:63])
            return
        if isinstance(err, RateLimited):
            await self._deny_rate_limited(flags, tenant_id, actor, action, resource, err, trace_id)
            return
        await self.record(flags, tenant_id, actor, action, resource, Decision.DENY, err.message, trace_id,
                          {"error_code": err.code})

    async def _deny_rate_limited(self, flags: Mapping[Flag, bool], tenant_id: str, actor: str, action: str,
                                 resource: str, err: RateLimited, trace_id: str) -> None:
        """Audit a rate-limit refusal, coalesced: the first of a caller's flood is written at once; those
        within :data:`RATE_DENY_WINDOW_SECONDS` after an entry are held and counted, and written as one
        entry (``details.refusals`` = how many it stands for) when the window ends. A flood of refused
        requests so costs one audit write per window instead of one per request."""
        if not flags.get(Flag.AUDIT_LOGGING, False):
            return
        key = (tenant_id, actor, action, resource)
        now = self.clock()
        flood = self._floods.get(key)
        if flood is not None and now < flood.quiet_until:
            flood.held += 1
            flood.last = (err, trace_id)
            if flood.flush is None:
                flood.flush = asyncio.get_running_loop().call_later(
                    flood.quiet_until - now, self._start_flush, flags, key)
            return
        held = 0
        if flood is not None:  # its window is over: the refusals it held are counted in this entry
            held = flood.held
            if flood.flush is not None:
                flood.flush.cancel()
        self._floods[key] = _Flood(quiet_until=now + RATE_DENY_WINDOW_SECONDS)
        if len(self._floods) > 10_000:  # callers whose window is over and nothing is held: forgotten
            self._floods = {k: f for k, f in self._floods.items() if f.held or f.quiet_until > now}
        await self.record(flags, tenant_id, actor, action, resource, Decision.DENY, err.message, trace_id,
                          {"error_code": err.code, "refusals": held + 1})

    def _start_flush(self, flags: Mapping[Flag, bool], key: tuple[str, str, str, str]) -> None:
        task = asyncio.get_running_loop().create_task(self._flush_flood(flags, key))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush_flood(self, flags: Mapping[Flag, bool], key: tuple[str, str, str, str]) -> None:
        """Write the refusals held for ``key`` as one entry (its window is over)."""
        flood = self._floods.get(key)
        if flood is None or not flood.held or flood.last is None:
            return
        held, (err, trace_id) = flood.held, flood.last
        # the next refusals are held for another window, counted from this entry
        self._floods[key] = _Flood(quiet_until=self.clock() + RATE_DENY_WINDOW_SECONDS)
        tenant_id, actor, action, resource = key
        try:
            await self.record(flags, tenant_id, actor, action, resource, Decision.DENY, err.message, trace_id,
                              {"error_code": err.code, "refusals": held})
        except Exception as exc:  # the store is away: the count is lost, as a crash would lose it
            log.warning("audit_refusals_lost", action=action, refusals=held, error_type=type(exc).__name__)

    async def flush_denials(self) -> None:
        """Write every held rate-limit refusal now (a process about to stop)."""
        for key, flood in list(self._floods.items()):
            if flood.flush is not None:
                flood.flush.cancel()
            if flood.held:
                await self._flush_flood({Flag.AUDIT_LOGGING: True}, key)
        self._floods.clear()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    # -- jobs ---------------------------------------------------------------------------------

    async def admit_job(self, run: JobRun, principal: Principal, *, workflow_id: str, run_id: str = "",
                        workflow_type: str | None = None, policy_token: str | None = None,
                        charged: Charge | None = None, attributes: Mapping[str, str] | None = None) -> JobAdmission:
        """The full gate for a job request; raises the typed error that refuses it (after auditing it).

        Cheapest first: who may act for the tenant, then the rate limit (unless ``charged`` already),
        then everything that reads the inputs.
        """
        flags = await self.flag_values()
        try:
            check_tenant_id(run.tenant_id)
            if not principal.may_act_for(run.tenant_id):
                raise InvalidRequest("these credentials belong to another tenant", field="tenant_id")
            await self.require_tenant(principal, run.tenant_id)
            rate = charged.decision if charged is not None else await self.charge(flags, run.tenant_id, run.actor)
            judged, flags = await self._judge(run, workflow_type or run.template_key, flags, principal, attributes)
            policy_jti = ""
            if judged.spec.action:
                policy_jti = await self._use_policy_token(run, judged, policy_token, used_by=run_id or workflow_id)
        except JobForgeError as err:
            metrics.job_admission("gate", allowed=False, reason=err.code, retryable=err.retryable)
            if isinstance(err, RateLimited):
                metrics.rate_limited("jobs.request")
            await self._deny(flags, run.tenant_id, run.actor, JOBS_REQUEST, run.template_key, err, run.trace_id)
            raise
        metrics.job_admission("gate", allowed=True, reason="admitted")
        await self.record(flags, run.tenant_id, run.actor, JOBS_REQUEST, run.template_key, Decision.ALLOW,
                          "admitted", run.trace_id, {"workflow_id": workflow_id, "input_hash": judged.input_hash,
                                                     "key_id": principal.key_id or "", "policy_jti": policy_jti})
        now = int(time.time())
        receipt = tokens.sign(tokens.make_claims(
            typ="receipt", tenant=run.tenant_id, now=now, ttl=self.settings.receipt_ttl_seconds,
            template=run.template_key, inputs_hash=judged.input_hash, workflow_id=workflow_id, actor=run.actor,
            scopes=list(principal.scopes), key_id=principal.key_id or "", policy_jti=policy_jti),
            self.keys[0], tokens.RECEIPT_PREFIX)
        return JobAdmission(judged, receipt, rate, self.tenant_policy)

    async def _use_policy_token(self, run: JobRun, judged: Judged, token: str | None, used_by: str) -> str:
        if token:
            try:
                claims = tokens.verify(token, self.keys, prefix=tokens.POLICY_PREFIX, typ="policy",
                                       now=time.time(), max_ttl=self.settings.policy_token_ttl_seconds)
            except TokenInvalid as err:
                raise PolicyTokenInvalid(reason=str(err.details.get("reason", "invalid"))) from None
            if (claims.get("tenant"), claims.get("template"), claims.get("inputs_hash")) != (
                    run.tenant_id, run.template_key, judged.input_hash):
                raise PolicyTokenInvalid(reason="the token is bound to another tenant, template or inputs")
            ref = tokens.token_ref(token)
        elif run.policy_ref:
            ref = run.policy_ref
        else:
            raise PolicyTokenRequired(run.template_key)
        grant = await self.grants.consume_policy_token(ref, tenant_id=run.tenant_id, template_key=run.template_key,
                                                       inputs_hash=judged.input_hash, used_by=used_by)
        return grant.jti

    async def accept_receipt(self, run: JobRun, *, workflow_type: str, workflow_id: str,
                             run_id: str, attributes: Mapping[str, str] | None = None,
                             record_admitted: RecordAdmitted | None = None) -> Judged | None:
        """The judged run when it carries a genuine, unexpired, unused receipt bound to it; else None.

        Flags, scopes and limits are judged again (a kill switch flipped since the request still
        applies); rate limit, policy token and audit were settled when the receipt was issued. The run
        is judged before the receipt is used: a refused run still uses it (then the refusal is raised),
        and an admitted one uses it through ``record_admitted`` when given (the admission activity
        records the run in the same statement), else on its own. A receipt another run used is None.
        """
        try:
            claims = tokens.verify(run.receipt, self.keys, prefix=tokens.RECEIPT_PREFIX, typ="receipt",
                                   now=time.time(), max_ttl=self.settings.receipt_ttl_seconds)
        except TokenInvalid as err:
            log.warning("receipt_refused", reason=err.details.get("reason"), workflow_id=workflow_id)
            return None
        if (claims.get("tenant"), claims.get("template"), claims.get("workflow_id"), claims.get("inputs_hash")) != (
                run.tenant_id, run.template_key, workflow_id, input_hash(run.inputs)):
            log.warning("receipt_refused", reason="bound to another run", workflow_id=workflow_id)
            return None
        jti, expires_at = str(claims["jti"]), int(claims["exp"])
        try:
            principal = Principal(actor=str(claims.get("actor", run.actor)),
                                  scopes=tuple(str(s) for s in claims.get("scopes", [])), tenant_id=run.tenant_id,
                                  key_id=str(claims.get("key_id") or "") or None)
            judged, _ = await self._judge(run, workflow_type, await self.flag_values(), principal, attributes)
            if judged.spec.action and not claims.get("policy_jti"):
                raise PolicyTokenRequired(run.template_key)
        except JobForgeError:
            if not await self._use_receipt(jti, workflow_id, run_id, expires_at):
                return None  # another run's receipt: the caller applies the full gate, which refuses it again
            raise
        if record_admitted is not None:
            used = await record_admitted(judged, ReceiptUse(jti, workflow_id, run_id, expires_at))
            if not used:
                log.warning("receipt_refused", reason="already used", workflow_id=workflow_id)
        else:
            used = await self._use_receipt(jti, workflow_id, run_id, expires_at)
        return judged if used else None

    async def _use_receipt(self, jti: str, workflow_id: str, run_id: str, expires_at: int) -> bool:
        """Record run ``run_id``'s use of the receipt; False (logged) when another run used it."""
        try:
            await self.grants.consume_receipt(jti, workflow_id=workflow_id, run_id=run_id, expires_at=expires_at)
        except TokenInvalid:
            log.warning("receipt_refused", reason="already used", workflow_id=workflow_id)
            return False
        return True

    async def issue_policy_token(self, principal: Principal, tenant_id: str, template_key: str,
                                 inputs: Mapping[str, Any], *, ttl: int | None = None) -> IssuedPolicyToken:
        """A single-use token authorizing one run of the action ``template_key`` with exactly ``inputs``."""
        flags = await self.flag_values()
        try:
            check_tenant_id(tenant_id)
            if not principal.may_act_for(tenant_id):
                raise InvalidRequest("these credentials belong to another tenant", field="tenant_id")
            await self.require_tenant(principal, tenant_id)
            if not flags.get(Flag.ACTION_JOBS, False):
                raise disabled(flags, Flag.ACTION_JOBS)
            spec = self.registry.get(template_key)
            if not spec.action:
                raise InvalidRequest(f"{template_key} is not an action job; it needs no policy token")
            require_scopes(principal.scopes, (TOKENS_ISSUE, *spec.required_scopes))
            ttl = min(ttl or self.settings.policy_token_ttl_seconds, self.settings.policy_token_ttl_seconds)
            digest = input_hash(dict(inputs))
            claims = tokens.make_claims(typ="policy", tenant=tenant_id, now=int(time.time()), ttl=ttl,
                                        template=template_key, inputs_hash=digest, actor=principal.actor)
            token = tokens.sign(claims, self.keys[0], tokens.POLICY_PREFIX)
            ref = tokens.token_ref(token)
            await self.grants.record_policy_token(jti=claims["jti"], token_ref=ref, tenant_id=tenant_id,
                                                  template_key=template_key, inputs_hash=digest,
                                                  actor=principal.actor, expires_at=claims["exp"])
        except JobForgeError as err:
            await self._deny(flags, tenant_id, principal.actor, TOKENS_ISSUE_ACTION, template_key, err, "")
            raise
        await self.record(flags, tenant_id, principal.actor, TOKENS_ISSUE_ACTION, template_key, Decision.ALLOW,
                          "issued", "", {"jti": claims["jti"], "inputs_hash": digest})
        return IssuedPolicyToken(token, ref, claims["jti"], claims["exp"])

    # -- events -------------------------------------------------------------------------------

    async def admit_event(self, event: EventEnvelope, principal: Principal, *,
                          charged: Charge | None = None) -> EventAdmission:
        """The gate for one event, cheapest first: who may act for the tenant, the rate limit (unless
        ``charged`` already), flag and scopes, then limits and text the store cannot hold; then the
        dedupe claim, whose statement also stores the admitted copy (redacted). A duplicate
        points at the original.

        When the request is charged to one bucket (no per-actor limit) the charge is made by the claim's
        statement (:meth:`~shared.store.dedupe.EventDeduper.claim_charged`), after the checks that read no
        database; a request those checks refuse is charged on its own first, so every request is charged
        as before and a spent budget still answers :class:`RateLimited` ahead of any other refusal."""
        flags = await self.flag_values()
        trace_id = event.trace_id or new_trace_id()
        resource = f"{event.event_type}:{event.event_id}"
        try:
            check_tenant_id(event.tenant_id)
            if not principal.may_act_for(event.tenant_id):
                raise InvalidRequest("these credentials belong to another tenant", field="tenant_id")
            await self.require_tenant(principal, event.tenant_id)
            buckets = self._buckets(event.tenant_id, principal.actor)
            folded = charged is None and flags.get(Flag.RATE_LIMITING, False) and len(buckets) == 1
            rate = None
            if charged is not None:
                rate = charged.decision
            elif not folded:
                rate = await self.charge(flags, event.tenant_id, principal.actor)
            try:
                if not flags.get(Flag.EVENTS, False):
                    raise disabled(flags, Flag.EVENTS)
                require_scopes(principal.scopes, (EVENTS_WRITE,))
                check_trace_id(trace_id)
                for name in ("source_app", "source_module"):
                    check_storable(getattr(event, name), "the event", f"$.{name}")
                if flags.get(Flag.SECURITY_VALIDATION, False):
                    check_payload(event.payload, self.limits)
                check_storable(event.payload, "the event payload")
            except JobForgeError:
                if folded:
                    await self.charge(flags, event.tenant_id, principal.actor)  # RateLimited comes first
                raise
            row = self.events.claim_row(event, trace_id, route_prefix(event.tenant_id, event.event_type,
                                                                      event.event_id), principal.actor)
            if folded:
                (bucket, policy), = buckets
                rate, claimed = await self.deduper.claim_charged(
                    self.limiter, bucket, policy, event.tenant_id, event.event_type, event.event_id,
                    ttl_seconds=self.settings.dedupe_ttl_seconds, trace_id=trace_id,
                    payload_hash=input_hash(event.payload), event_row=row)
                if claimed is None:
                    raise RateLimited(retry_after=round(rate.retry_after, 3), limit=policy.limit,
                                      period=policy.period)
                outcome = claimed
            else:
                outcome = await self.deduper.claim(
                    event.tenant_id, event.event_type, event.event_id, ttl_seconds=self.settings.dedupe_ttl_seconds,
                    trace_id=trace_id, payload_hash=input_hash(event.payload), event_row=row)
        except JobForgeError as err:
            metrics.event_denied(err.code, retryable=err.retryable)
            if isinstance(err, RateLimited):
                metrics.rate_limited(EVENTS_SUBMIT)
                await self.deduper.count_rate_limited(event.tenant_id)  # the console's refusals per minute
            await self._deny(flags, event.tenant_id, principal.actor, EVENTS_SUBMIT, resource, err, trace_id)
            raise
        metrics.event_admitted(duplicate=outcome.duplicate)
        reason = (f"duplicate of the copy first seen at {outcome.first_seen_at.isoformat()} "
                  f"(trace {outcome.original_trace_id})" if outcome.duplicate else "admitted")
        await self.record(flags, event.tenant_id, principal.actor, EVENTS_SUBMIT, resource, Decision.ALLOW, reason,
                          trace_id, {"duplicate": outcome.duplicate})
        return EventAdmission(_receipt(event, trace_id, outcome), rate, self.tenant_policy)


def _receipt(event: EventEnvelope, trace_id: str, outcome: DedupeOutcome) -> EventReceipt:
    return EventReceipt(tenant_id=event.tenant_id, event_id=event.event_id, event_type=event.event_type,
                        trace_id=trace_id, duplicate=outcome.duplicate, first_seen_at=outcome.first_seen_at,
                        original_trace_id=outcome.original_trace_id, payload_hash=outcome.original_payload_hash)
