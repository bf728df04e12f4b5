"""Audit entries and the per-tenant hash chain (pure).

Each entry's canonical bytes include its tenant, sequence number and the previous entry's hash;
its hash is the SHA-256 of those bytes. The store keeps the bytes as ``bytea`` (never ``jsonb``,
which re-normalises) and the chain's head in a separate table, so :func:`verify_chain` can name an
edited row (hash or columns disagree with the bytes, or the next row's link breaks), a deleted row
(a gap in the sequence) and a deleted tail (the head names a later entry).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.canonical import canonical_json, sha256_hex

GENESIS = "0" * 64
#: the columns kept beside the canonical bytes (for queries) and checked against them
COLUMNS = ("tenant_id", "seq", "prev_hash", "occurred_at", "actor", "action", "resource", "decision", "reason",
           "trace_id")


class Decision(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class AuditFact:
    """What happened, before it is placed in the chain."""

    tenant_id: str
    actor: str
    action: str
    resource: str
    decision: Decision
    reason: str = ""
    trace_id: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


def entry_body(fact: AuditFact, *, seq: int, prev_hash: str, occurred_at: str) -> dict[str, Any]:
    return {"tenant_id": fact.tenant_id, "seq": seq, "prev_hash": prev_hash, "occurred_at": occurred_at,
            "actor": fact.actor, "action": fact.action, "resource": fact.resource,
            "decision": fact.decision.value, "reason": fact.reason, "trace_id": fact.trace_id,
            "details": dict(fact.details)}


def seal(fact: AuditFact, *, seq: int, prev_hash: str, occurred_at: str) -> tuple[bytes, str]:
    """The canonical bytes of the entry and its hash."""
    body = canonical_json(entry_body(fact, seq=seq, prev_hash=prev_hash, occurred_at=occurred_at))
    return body, sha256_hex(body)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A row as read back: the bytes, the hash, and the columns kept beside them."""

    seq: int
    hash: str
    body: bytes
    columns: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    kind: str  # edited | deleted | broken_link | tail_deleted
    message: str


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    tenant_id: str
    ok: bool
    entries: int
    head_seq: int
    problems: tuple[ChainProblem, ...] = ()


def verify_chain(tenant_id: str, entries: Iterable[StoredEntry], head: tuple[int, str] | None) -> ChainVerdict:
    """Check a tenant's chain in ``seq`` order against its recorded head."""
    problems: list[ChainProblem] = []
    expected_seq, prev_hash, count, last_seq = 1, GENESIS, 0, 0
    for entry in entries:
        count += 1
        if entry.seq > expected_seq:
            missing = (f"entry {expected_seq}" if entry.seq == expected_seq + 1
                       else f"entries {expected_seq}-{entry.seq - 1}")
            problems.append(ChainProblem(expected_seq, "deleted",
                                         f"{missing} deleted (sequence jumps to {entry.seq})"))
        body_ok = sha256_hex(entry.body) == entry.hash
        try:
            parsed = orjson.loads(entry.body)
        except orjson.JSONDecodeError:
            parsed = None
        if not body_ok or not isinstance(parsed, dict):
            problems.append(ChainProblem(entry.seq, "edited",
                                         f"entry {entry.seq} was edited: its bytes no longer hash to its hash"))
        else:
            changed = sorted(name for name in COLUMNS
                             if name in entry.columns and parsed.get(name) != entry.columns[name])
            if changed:
                problems.append(ChainProblem(entry.seq, "edited",
                                             f"entry {entry.seq} was edited: column(s) {', '.join(changed)} "
                                             "differ from its sealed bytes"))
            elif parsed.get("prev_hash") != prev_hash and entry.seq == expected_seq:
                problems.append(ChainProblem(entry.seq - 1, "edited",
                                             f"entry {entry.seq - 1} was edited: entry {entry.seq} sealed a "
                                             "different hash for it"))
        prev_hash, last_seq, expected_seq = entry.hash, entry.seq, entry.seq + 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last_seq:
            problems.append(ChainProblem(
                last_seq + 1, "tail_deleted",
                f"entries {last_seq + 1}-{head_seq} deleted (the head names entry {head_seq})"))
        elif head_seq < last_seq:
            problems.append(ChainProblem(head_seq + 1, "unsealed",
                                         f"entries {head_seq + 1}-{last_seq} were added outside the chain's head"))
        elif head_seq == last_seq and head_hash != prev_hash:
            problems.append(ChainProblem(last_seq, "edited",
                                         f"entry {last_seq} was edited: the head sealed a different hash"))
    elif count:
        problems.append(ChainProblem(1, "tail_deleted", "the chain has entries but no head"))
    return ChainVerdict(tenant_id=tenant_id, ok=not problems, entries=count, head_seq=head[0] if head else 0,
                        problems=tuple(problems))
