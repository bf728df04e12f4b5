"""The audit hash chain: sealing is deterministic; edits, deletions and tail cuts are named."""

from __future__ import annotations

import dataclasses

import orjson

from shared.security.audit import GENESIS, AuditFact, Decision, StoredEntry, seal, verify_chain


def chain(n: int) -> tuple[list[StoredEntry], tuple[int, str]]:
    entries, prev = [], GENESIS
    for seq in range(1, n + 1):
        fact = AuditFact("acme", "key:1", "jobs.request", "a.b.c", Decision.ALLOW if seq % 2 else Decision.DENY,
                         f"reason {seq}", "t1", {"n": seq})
        body, digest = seal(fact, seq=seq, prev_hash=prev, occurred_at=f"2026-01-01T00:00:{seq:02d}.000000+00:00")
        parsed = orjson.loads(body)
        columns = {name: parsed[name] for name in ("tenant_id", "seq", "prev_hash", "occurred_at", "actor", "action",
                                                   "resource", "decision", "reason", "trace_id")}
        entries.append(StoredEntry(seq, digest, body, columns))
        prev = digest
    return entries, (n, prev)


def test_intact_chain_verifies() -> None:
    """An untouched chain verifies, and sealing the same fact twice gives the same bytes."""
    entries, head = chain(5)
    verdict = verify_chain("acme", entries, head)
    assert verdict.ok and verdict.entries == 5 and verdict.head_seq == 5
    fact = AuditFact("acme", "a", "x", "r", Decision.ALLOW)
    assert seal(fact, seq=1, prev_hash=GENESIS, occurred_at="t") == seal(fact, seq=1, prev_hash=GENESIS,
                                                                         occurred_at="t")
    assert verify_chain("empty", [], None).ok


def test_edited_column_is_named() -> None:
    """Changing a kept column (allow → deny) is caught against the sealed bytes, naming the entry."""
    entries, head = chain(5)
    entries[2] = dataclasses.replace(entries[2], columns={**entries[2].columns, "decision": "deny"})
    verdict = verify_chain("acme", entries, head)
    assert not verdict.ok
    assert [(p.seq, p.kind) for p in verdict.problems] == [(3, "edited")]
    assert "decision" in verdict.problems[0].message


def test_edited_bytes_are_named_with_or_without_rehash() -> None:
    """Editing sealed bytes is caught; re-hashing them breaks the next entry's link, still naming the entry."""
    entries, head = chain(5)
    tampered = entries[1].body.replace(b"reason 2", b"reason X")
    entries_a = [*entries[:1], dataclasses.replace(entries[1], body=tampered), *entries[2:]]
    assert [(p.seq, p.kind) for p in verify_chain("acme", entries_a, head).problems] == [(2, "edited")]
    import hashlib

    rehashed = dataclasses.replace(entries[1], body=tampered, hash=hashlib.sha256(tampered).hexdigest(),
                                   columns={**entries[1].columns, "reason": "reason X"})
    entries_b = [*entries[:1], rehashed, *entries[2:]]
    assert [(p.seq, p.kind) for p in verify_chain("acme", entries_b, head).problems] == [(2, "edited")]


def test_deleted_rows_are_named() -> None:
    """A deleted middle row shows as a gap; a deleted tail shows against the head."""
    entries, head = chain(6)
    verdict = verify_chain("acme", [*entries[:2], *entries[3:]], head)
    assert [(p.seq, p.kind) for p in verdict.problems] == [(3, "deleted")]
    assert "entry 3 deleted" in verdict.problems[0].message
    verdict = verify_chain("acme", entries[:4], head)
    assert [(p.seq, p.kind) for p in verdict.problems] == [(5, "tail_deleted")]
    assert not verify_chain("acme", entries, None).ok
