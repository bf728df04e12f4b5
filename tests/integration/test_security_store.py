"""The gate's PostgreSQL services, raced by several processes: dedupe, GCRA rate limit, audit chain."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from jobforge.errors import ApiKeyNotFound, PolicyTokenInvalid, PolicyTokenReplayed, TenantExists, Unauthenticated
from shared.security.audit import AuditFact, Decision
from shared.security.ratelimit import RatePolicy
from shared.store import Store
from tests.support.security_race import race

pytestmark = pytest.mark.integration

PROCESSES = 4


def run_race(pg_url: str, op: str, key: str, total: int = 1000, at: datetime | None = None) -> tuple[int, float]:
    """``total`` operations split over PROCESSES spawned processes; (admitted, seconds of the race)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=ctx) as pool:
        start_at = time.time() + 3.0
        futures = [pool.submit(race, pg_url, start_at, total // PROCESSES, op, key, at) for _ in range(PROCESSES)]
        admitted = sum(f.result(timeout=120) for f in futures)
        return admitted, time.time() - start_at


@pytest.fixture
async def store(pg_url: str) -> Store:
    store = Store.from_url(pg_url)
    yield store  # type: ignore[misc]
    await store.close()


def test_dedupe_admits_one_of_a_thousand_copies_across_processes(pg_url: str) -> None:
    """1,000 copies of one event from 4 processes (16 connections) admit exactly one."""
    admitted, seconds = run_race(pg_url, "dedupe", "race-dedupe")
    print(f"dedupe: {admitted} of 1000 admitted in {seconds:.2f}s")
    assert admitted == 1


def test_rate_limit_admits_exactly_the_limit_across_processes(pg_url: str) -> None:
    """At one instant, 1,000 requests from 4 processes against 100/min admit exactly 100."""
    admitted, _ = run_race(pg_url, "ratelimit", "tenant:race-pinned", at=datetime.now(UTC))
    assert admitted == 100


def test_rate_limit_on_the_shared_clock(pg_url: str) -> None:
    """On clock_timestamp(), 1,000 racing requests admit the burst of 100 plus only what time refilled."""
    admitted, seconds = run_race(pg_url, "ratelimit", "tenant:race-clock")
    print(f"rate limit (shared clock): {admitted} of 1000 admitted in {seconds:.2f}s")
    assert 100 <= admitted <= 100 + int(seconds / 0.6) + 1


def test_audit_chain_written_by_four_processes_verifies(pg_url: str) -> None:
    """400 entries appended by 4 processes at once form one gap-free chain that verifies."""
    admitted, _ = run_race(pg_url, "audit", "race-audit", total=400)
    assert admitted == 400
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM audit_log WHERE tenant_id = 'race-audit' ORDER BY seq")]
    assert seqs == list(range(1, 401))


async def test_audit_verify_names_edited_and_deleted_rows(store: Store, pg_url: str) -> None:
    """An edited column, edited bytes and a deleted row are each named by seq; an intact chain verifies."""
    audit = store.audit
    for i in range(6):
        await audit.append(AuditFact("tamper", "a", "jobs.request", "a.b.c", Decision.DENY, f"r{i}", "t",
                                     {"i": i}))
    assert (await audit.verify("tamper")).ok
    listed = await audit.list("tamper", limit=2)
    assert [r.seq for r in listed] == [6, 5] and listed[0].details == {"i": 5}
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("UPDATE audit_log SET decision = 'allow' WHERE tenant_id = 'tamper' AND seq = 2")
        conn.execute("UPDATE audit_log SET body = convert_to(replace(convert_from(body, 'UTF8'), "
                     "'\"r3\"', '\"rX\"'), 'UTF8') WHERE tenant_id = 'tamper' AND seq = 4")
        conn.execute("DELETE FROM audit_log WHERE tenant_id = 'tamper' AND seq = 5")
    verdict = await audit.verify("tamper")
    assert not verdict.ok
    assert [(p.seq, p.kind) for p in verdict.problems] == [(2, "edited"), (4, "edited"), (5, "deleted")]


async def test_dedupe_rearms_after_the_ttl(store: Store) -> None:
    """A copy after the TTL is admitted again; a duplicate points at the original's trace."""
    deduper = store.deduper
    first = await deduper.claim("ttl", "x.y", "e1", ttl_seconds=0.3, trace_id="orig")
    dup = await deduper.claim("ttl", "x.y", "e1", ttl_seconds=0.3, trace_id="second")
    assert not first.duplicate and dup.duplicate
    assert dup.original_trace_id == "orig" and dup.first_seen_at == first.first_seen_at
    other_type = await deduper.claim("ttl", "x.z", "e1", ttl_seconds=0.3)
    assert not other_type.duplicate
    await asyncio.sleep(0.35)
    again = await deduper.claim("ttl", "x.y", "e1", ttl_seconds=0.3, trace_id="later")
    assert not again.duplicate and again.original_trace_id == "later"


async def test_rate_limit_all_or_nothing_across_buckets(store: Store) -> None:
    """When the actor bucket refuses, the tenant bucket is not charged; retry_after says when to come back."""
    limiter = store.limiter
    now = datetime.now(UTC)
    tenant, actor = ("tenant:aon", RatePolicy(10, 60)), ("actor:aon:bob", RatePolicy(1, 60))
    assert (await limiter.hit([actor, tenant], at=now)).allowed
    refused = await limiter.hit([actor, tenant], at=now)
    assert not refused.allowed and refused.retry_after == pytest.approx(60, abs=0.01)
    left = [await limiter.hit([tenant], at=now) for _ in range(10)]
    assert [d.allowed for d in left] == [True] * 9 + [False]


async def test_a_refusal_is_remembered_until_its_retry_after(store: Store) -> None:
    """After a refusal the same buckets are refused from memory (no database: it still answers with the
    database gone) until retry_after has passed; a reset forgets it; a request after the wait is admitted."""
    tenant = f"tenant:mem-{time.monotonic_ns()}"
    limiter = store.limiter
    assert (await limiter.hit([(tenant, RatePolicy(1, 60))])).allowed
    first = await limiter.hit([(tenant, RatePolicy(1, 60))])
    assert not first.allowed and 59 < first.retry_after <= 60
    own, limiter._store = limiter._store, None  # type: ignore[assignment] # any query now fails
    remembered = await limiter.hit([(tenant, RatePolicy(1, 60))])
    assert not remembered.allowed and remembered.retry_after <= first.retry_after
    limiter._store = own
    await limiter.reset(tenant)
    assert (await limiter.hit([(tenant, RatePolicy(1, 60))])).allowed

    quick = (f"{tenant}:quick", RatePolicy(20, 1.0, burst=1))  # one request per 50 ms
    assert (await limiter.hit([quick])).allowed
    refused = await limiter.hit([quick])
    assert not refused.allowed and refused.retry_after <= 0.05 + 1e-6
    deadline = time.monotonic() + 10
    while not (await limiter.hit([quick])).allowed:  # admitted once the wait has passed, not refused on from memory
        assert time.monotonic() < deadline, "still refused long after retry_after"
        await asyncio.sleep(0.01)


async def test_tenants_and_keys(store: Store) -> None:
    """Keys authenticate to their tenant and scopes; only a hash is stored; revoked and forged keys fail."""
    tenants = store.tenants
    await tenants.create_tenant("keyco", "Key Co")
    with pytest.raises(TenantExists):
        await tenants.create_tenant("keyco")
    issued = await tenants.create_key("keyco", ["jobs:*", "events:write"], "ci")
    principal = await tenants.authenticate(issued.secret)
    assert (principal.tenant_id, principal.scopes) == ("keyco", ("events:write", "jobs:*"))
    async with store.connection() as conn:
        [stored] = await (await conn.execute("SELECT secret_sha256 FROM api_keys WHERE key_id = %s",
                                             (issued.key.key_id,))).fetchone() or [None]
    assert issued.secret not in stored and len(stored) == 64
    for bad in ("", "jfk_nope", issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")):
        with pytest.raises(Unauthenticated):
            await tenants.authenticate(bad)
    await tenants.revoke_key(issued.key.key_id)
    with pytest.raises(Unauthenticated):
        await tenants.authenticate(issued.secret)
    with pytest.raises(ApiKeyNotFound):
        await tenants.revoke_key("000000000000")


async def test_policy_token_single_use(store: Store) -> None:
    """A token is consumed once; the same run may re-consume (retries); anyone else is a replay."""
    grants = store.grants
    await grants.record_policy_token(jti="j" * 32, token_ref="sha256:ref1", tenant_id="t", template_key="a.b.c",
                                     inputs_hash="h", actor="x", expires_at=int(time.time()) + 60)
    with pytest.raises(PolicyTokenInvalid, match="bound"):
        await grants.consume_policy_token("sha256:ref1", tenant_id="t", template_key="a.b.c", inputs_hash="other",
                                          used_by="run-1")
    grant = await grants.consume_policy_token("sha256:ref1", tenant_id="t", template_key="a.b.c", inputs_hash="h",
                                              used_by="run-1")
    assert grant.jti == "j" * 32
    await grants.consume_policy_token("sha256:ref1", tenant_id="t", template_key="a.b.c", inputs_hash="h",
                                      used_by="run-1")
    with pytest.raises(PolicyTokenReplayed):
        await grants.consume_policy_token("sha256:ref1", tenant_id="t", template_key="a.b.c", inputs_hash="h",
                                          used_by="run-2")
    with pytest.raises(PolicyTokenInvalid, match="unknown"):
        await grants.consume_policy_token("sha256:nope", tenant_id="t", template_key="a.b.c", inputs_hash="h",
                                          used_by="run-1")


async def test_audit_appends_in_one_process_are_group_committed(store: Store) -> None:
    """300 concurrent appends of one process share transactions, yet each returns its own committed entry."""
    audit = store.audit
    writes: list[int] = []
    write = audit._write

    async def counting(tenant_id: str, facts: Any) -> Any:
        writes.append(len(facts))
        return await write(tenant_id, facts)

    audit._write = counting  # type: ignore[method-assign]
    facts = [AuditFact("group", f"actor-{i}", "events.submit", f"e:{i}", Decision.ALLOW, "ok", f"t{i}", {"i": i})
             for i in range(300)]
    records = await asyncio.gather(*(audit.append(fact) for fact in facts))
    assert sorted(r.seq for r in records) == list(range(1, 301))
    assert [r.actor for r in records] == [f.actor for f in facts]  # each caller got its own entry back
    assert sum(writes) == 300 and len(writes) < 300 and max(writes) > 1
    verdict = await audit.verify("group")
    assert verdict.ok and verdict.entries == 300
    listed = {r.seq: r for r in await audit.list("group", limit=300)}
    assert all(listed[r.seq].resource == r.resource and listed[r.seq].hash == r.hash for r in records)


async def test_a_failed_audit_batch_fails_every_waiter_and_the_next_batch_still_writes(store: Store) -> None:
    """A batch whose transaction fails raises in each of its callers; later appends are not stuck behind it."""
    audit = store.audit
    write = audit._write
    failing = [True]
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def flaky(tenant_id: str, facts: Any) -> Any:
        if failing[0]:
            failing[0] = False
            in_flight.set()
            await release.wait()  # the rest of the burst queues behind this batch
            raise RuntimeError("database went away")
        return await write(tenant_id, facts)

    audit._write = flaky  # type: ignore[method-assign]
    first = asyncio.ensure_future(audit.append(AuditFact("flaky", "a", "x.y", "r", Decision.ALLOW, "first")))
    await asyncio.wait_for(in_flight.wait(), 10)  # the first batch (just this entry) is in flight
    queued = asyncio.gather(*(audit.append(AuditFact("flaky", "a", "x.y", "r", Decision.ALLOW, f"n{i}"))
                              for i in range(4)))
    batcher = audit._batchers[asyncio.get_running_loop()]
    for _ in range(1000):  # each append queues its entry before its first wait: a few loop turns
        if len(batcher.waiting.get("flaky", [])) == 4:
            break
        await asyncio.sleep(0)
    assert len(batcher.waiting["flaky"]) == 4
    release.set()
    with pytest.raises(RuntimeError, match="went away"):
        await first
    assert sorted(r.seq for r in await queued) == [1, 2, 3, 4]  # the next batch was written by the same writer
    written = await audit.append(AuditFact("flaky", "a", "x.y", "r", Decision.ALLOW, "after"))
    assert written.seq == 5 and (await audit.verify("flaky")).ok


async def test_an_append_the_database_refuses_rolls_its_batch_back_and_leaves_the_connection_clean(
        store: Store, pg_url: str) -> None:
    """A chain step whose append fails (a row already holds its seq) raises, moves no head, and the pooled
    connection it ran on is reused cleanly: the pipelined transaction is rolled back, not left open."""
    audit = store.audit
    first = await audit.append(AuditFact("refused", "a", "x.y", "r", Decision.ALLOW, "first"))
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("INSERT INTO audit_log (tenant_id, seq, prev_hash, hash, body, occurred_at, actor, action, "
                      "resource, decision, reason, trace_id) VALUES ('refused', 2, '', '', '', now(), '', '', '', "
                      "'allow', '', '')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        await audit.append(AuditFact("refused", "a", "x.y", "r", Decision.ALLOW, "second"))
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        assert conn.execute("SELECT seq, hash FROM audit_heads WHERE tenant_id = 'refused'").fetchone() == (
            1, first.hash)
        conn.execute("DELETE FROM audit_log WHERE tenant_id = 'refused' AND seq = 2")
    again = await audit.append(AuditFact("refused", "a", "x.y", "r", Decision.ALLOW, "again"))
    assert again.seq == 2 and again.prev_hash == first.hash and (await audit.verify("refused")).ok
