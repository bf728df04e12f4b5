"""Every SQL statement JobForge runs, each defined once and named here (no imports: the CLI loads it cheaply).

Statements are psycopg text (``%(name)s`` parameters, or ``%s`` where a statement is executed with a
tuple), run over a psycopg connection: :func:`shared.store.fast.connection` in the processes that hold
an engine (workers, API, the commands that open a runtime), :func:`shared.store.direct.connect` in the
commands that read one thing and exit. The few statements whose ``WHERE`` is assembled from optional
filters are built by a function here from constant clauses; their values are always bound.

A new statement goes here, under a name that says what it does, next to the others of its table; the
store method that runs it maps its rows to typed records (``shared/store/rows.py`` and the stores).
"""

from __future__ import annotations

from collections.abc import Iterable

# -- schema ---------------------------------------------------------------------------------------

PING = "SELECT 1"
SCHEMA_REVISION = ("SELECT CASE WHEN to_regclass('alembic_version') IS NULL THEN NULL "
                   "ELSE (SELECT version_num FROM alembic_version LIMIT 1) END")

# -- runs -----------------------------------------------------------------------------------------

#: a run handed out by the SDK, recorded before admission; an existing record is left alone
RUN_RECORD_QUEUED = (
    "INSERT INTO runs (run_id, workflow_id, tenant_id, template_key, status, trace_id, actor, "
    "idempotency_key, input_hash, summary, error) VALUES (%(run_id)s, %(workflow_id)s, %(tenant_id)s, "
    "%(template_key)s, 'queued', %(trace_id)s, %(actor)s, %(idem)s, %(input_hash)s, '{}'::jsonb, '') "
    "ON CONFLICT (run_id) DO NOTHING")
#: admission's verdict: insert the run or move its queued record on; the row as it is afterwards (a
#: record another admission committed meanwhile is not in this statement's snapshot: read it with RUN_BY_ID)
RUN_RECORD_VERDICT = (
    "WITH up AS (INSERT INTO runs (run_id, workflow_id, tenant_id, template_key, status, trace_id, "
    "actor, idempotency_key, input_hash, summary, error, finished_at) VALUES (%(run_id)s, "
    "%(workflow_id)s, %(tenant_id)s, %(template_key)s, %(status)s, %(trace_id)s, %(actor)s, %(idem)s, "
    "%(input_hash)s, '{}'::jsonb, %(error)s, CASE WHEN %(final)s THEN now() END) ON CONFLICT (run_id) "
    "DO UPDATE SET status = EXCLUDED.status, idempotency_key = EXCLUDED.idempotency_key, "
    "input_hash = EXCLUDED.input_hash, error = EXCLUDED.error, finished_at = EXCLUDED.finished_at, "
    "updated_at = now() WHERE runs.status = 'queued' RETURNING *) "
    "SELECT * FROM up UNION ALL SELECT * FROM runs WHERE run_id = %(run_id)s "
    "AND NOT EXISTS (SELECT 1 FROM up)")
RUN_BY_ID = "SELECT * FROM runs WHERE run_id = %(run_id)s"
#: a run by Temporal run id or workflow id (the newest run of that workflow id)
RUN_BY_IDENT = ("SELECT * FROM runs WHERE (run_id = %(ident)s OR workflow_id = %(ident)s) "
                "ORDER BY created_at DESC LIMIT 1")
RUN_OF_TENANT_BY_IDENT = ("SELECT * FROM runs WHERE (run_id = %(ident)s OR workflow_id = %(ident)s) "
                          "AND tenant_id = %(tenant)s ORDER BY created_at DESC LIMIT 1")
RUN_FINISH = (
    "UPDATE runs SET status = %(status)s, summary = %(summary)s, error = %(error)s, updated_at = now(), "
    "finished_at = now() WHERE run_id = %(run_id)s RETURNING *")
#: runs still queued after ``s`` seconds, oldest first (the partial index ix_runs_queued)
RUNS_QUEUED_BEFORE = ("SELECT * FROM runs WHERE status = 'queued' "
                      "AND created_at < now() - make_interval(secs => %(s)s) ORDER BY created_at LIMIT %(n)s")
RUN_CLOSE_QUEUED = (
    "UPDATE runs SET status = %(status)s, error = %(error)s, updated_at = now(), finished_at = now() "
    "WHERE run_id = %(run_id)s AND status = 'queued' RETURNING *")
RUN_BY_IDEMPOTENCY_KEY = ("SELECT * FROM runs WHERE tenant_id = %(t)s AND idempotency_key = %(k)s "
                          "ORDER BY created_at LIMIT 1")
RUN_COUNTS = (
    "SELECT date_bin(make_interval(secs => %(b)s), created_at, TIMESTAMPTZ '2000-01-01 00:00Z') AS bucket, "
    "status, count(*) FROM runs WHERE tenant_id = %(t)s AND created_at >= %(since)s "
    "GROUP BY 1, 2 ORDER BY 1, 2")
RUN_DURATIONS = (
    "SELECT template_key, count(*), "
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)), "
    "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) "
    "FROM runs WHERE tenant_id = %(t)s AND created_at >= %(since)s AND finished_at IS NOT NULL "
    "AND status = ANY(%(final)s) GROUP BY template_key ORDER BY template_key")

#: the optional filters of a tenant's runs (``runs`` below), by the parameter each binds
RUNS_FILTERS = {
    "template_key": "template_key = %(template_key)s",
    "status": "status = %(status)s",
    "trace_id": "trace_id = %(trace_id)s",
    "since": "created_at >= %(since)s",
    "until": "created_at < %(until)s",
    "trigger_id": ("workflow_id IN (SELECT run_workflow_id FROM trigger_fires WHERE trigger_id = %(trigger_id)s "
                   "AND run_workflow_id IS NOT NULL)"),
}


def runs(filters: Iterable[str] = (), *, after_cursor: bool = False) -> str:
    """A tenant's runs (``%(tenant)s``), newest first, up to ``%(limit)s``: those of ``RUNS_FILTERS[f]`` for
    each name in ``filters``, and with ``after_cursor`` only those older than (``%(c_at)s``, ``%(c_id)s``).

    ``jobforge runs list`` (no filter), :meth:`~shared.store.Store.list_runs` and the console's pages
    (:meth:`~shared.store.Store.page_runs`) all run it."""
    clauses = ["tenant_id = %(tenant)s", *(RUNS_FILTERS[name] for name in filters)]
    if after_cursor:
        clauses.append("(created_at, run_id) < (%(c_at)s, %(c_id)s)")
    return f"SELECT * FROM runs WHERE {' AND '.join(clauses)} ORDER BY created_at DESC, run_id DESC LIMIT %(limit)s"


# -- flag overrides ---------------------------------------------------------------------------------

FLAG_OVERRIDES = "SELECT name, enabled FROM flag_overrides"
FLAG_OVERRIDE_ROWS = "SELECT name, enabled, actor, reason, updated_at FROM flag_overrides"
FLAG_OVERRIDE_SET = (
    "INSERT INTO flag_overrides (name, enabled, actor, reason) VALUES (%(name)s, %(enabled)s, %(actor)s, "
    "%(reason)s) ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, actor = excluded.actor, "
    "reason = excluded.reason, updated_at = now()")
FLAG_OVERRIDE_DELETE = "DELETE FROM flag_overrides WHERE name = %(name)s"

# -- artifacts and the verify cache -----------------------------------------------------------------

#: record (or, for a retried step, replace) a run's artifact
ARTIFACT_PUT = (
    "INSERT INTO artifacts (tenant_id, run_id, name, kind, media_type, sha256, size, path) VALUES (%(tenant_id)s, "
    "%(run_id)s, %(name)s, %(kind)s, %(media_type)s, %(sha256)s, %(size)s, %(path)s) "
    "ON CONFLICT ON CONSTRAINT uq_artifacts_run_name DO UPDATE SET kind = excluded.kind, "
    "media_type = excluded.media_type, sha256 = excluded.sha256, size = excluded.size, path = excluded.path, "
    "created_at = now() RETURNING *")
ARTIFACTS_OF_RUN = "SELECT * FROM artifacts WHERE tenant_id = %(tenant_id)s AND run_id = %(run_id)s ORDER BY name"
VERIFY_CACHE_GET = "SELECT * FROM verify_cache WHERE tenant_id = %(tenant_id)s AND fingerprint = %(fingerprint)s"
VERIFY_CACHE_PUT = (
    "INSERT INTO verify_cache (tenant_id, fingerprint, verdict, report, run_id) VALUES (%(tenant_id)s, "
    "%(fingerprint)s, %(verdict)s, %(report)s, %(run_id)s) ON CONFLICT (tenant_id, fingerprint) DO UPDATE "
    "SET verdict = excluded.verdict, report = excluded.report, run_id = excluded.run_id, created_at = now() "
    "RETURNING *")

# -- tenants and API keys ---------------------------------------------------------------------------

#: whether a tenant exists (the gate's lookup, and the CLI's before it lists a tenant's runs)
TENANT_EXISTS = "SELECT 1 FROM tenants WHERE tenant_id = %(t)s"
TENANT_CREATE = ("INSERT INTO tenants (tenant_id, name) VALUES (%(t)s, %(name)s) "
                 "ON CONFLICT (tenant_id) DO NOTHING RETURNING *")
TENANT_GET = "SELECT * FROM tenants WHERE tenant_id = %(t)s"
TENANTS = "SELECT * FROM tenants ORDER BY tenant_id"
API_KEY_CREATE = ("INSERT INTO api_keys (key_id, tenant_id, secret_sha256, scopes, description) "
                  "VALUES (%(key_id)s, %(t)s, %(sha)s, %(scopes)s, %(description)s) RETURNING *")
API_KEY_GET = "SELECT * FROM api_keys WHERE key_id = %(key_id)s"
API_KEYS = "SELECT * FROM api_keys ORDER BY created_at"
API_KEYS_OF_TENANT = "SELECT * FROM api_keys WHERE tenant_id = %(t)s ORDER BY created_at"
API_KEY_REVOKE = ("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = %(key_id)s "
                  "RETURNING *")

# -- the event gate: dedupe, rate limits --------------------------------------------------------------

# One atomic upsert: a new key is inserted; an existing key is re-armed only WHERE it has expired.
# A row back = this copy is the original; no row = a duplicate within the TTL.
DEDUPE_CLAIM = """
INSERT INTO event_dedupe AS d (tenant_id, event_type, event_id, first_seen_at, expires_at, trace_id,
                               payload_hash, duplicates)
SELECT %(tenant)s, %(etype)s, %(eid)s, c.now, c.now + make_interval(secs => %(ttl)s), %(trace)s, %(hash)s, 0
  FROM (SELECT clock_timestamp() AS now) AS c
ON CONFLICT (tenant_id, event_type, event_id) DO UPDATE
   SET first_seen_at = excluded.first_seen_at, expires_at = excluded.expires_at, trace_id = excluded.trace_id,
       payload_hash = excluded.payload_hash, duplicates = 0
 WHERE d.expires_at <= excluded.first_seen_at
RETURNING first_seen_at, expires_at, trace_id, payload_hash
"""
#: the duplicate is counted on its original's row and in the tenant's minute (one statement)
DEDUPE_COUNT_DUPLICATE = """
WITH minute AS (
  INSERT INTO event_gate_minutes AS m (tenant_id, minute, duplicates)
  VALUES (%(tenant)s, date_trunc('minute', clock_timestamp()), 1)
  ON CONFLICT (tenant_id, minute) DO UPDATE SET duplicates = m.duplicates + 1
)
UPDATE event_dedupe SET duplicates = duplicates + 1
 WHERE tenant_id = %(tenant)s AND event_type = %(etype)s AND event_id = %(eid)s
RETURNING first_seen_at, expires_at, trace_id, payload_hash
"""
DEDUPE_COUNT_RATE_LIMITED = """
INSERT INTO event_gate_minutes AS m (tenant_id, minute, rate_limited)
VALUES (%(tenant)s, date_trunc('minute', clock_timestamp()), 1)
ON CONFLICT (tenant_id, minute) DO UPDATE SET rate_limited = m.rate_limited + 1
"""
DEDUPE_RELEASE = ("DELETE FROM event_dedupe WHERE tenant_id = %(tenant)s AND event_type = %(etype)s "
                  "AND event_id = %(eid)s AND first_seen_at = %(seen)s")
GATE_REFUSALS = ("SELECT minute, duplicates, rate_limited FROM event_gate_minutes "
                 "WHERE tenant_id = %(t)s AND minute >= %(since)s ORDER BY minute")

# The whole GCRA step is this one statement: a fresh bucket is admitted with TAT = now + T; an
# existing one moves to max(TAT, now) + T only WHERE that stays within the window (capacity x T),
# else no row comes back and the request is refused. ``now`` is read once, in VALUES.
RATE_HIT = """
INSERT INTO rate_limits AS r (bucket, tat)
VALUES (%(bucket)s, coalesce(CAST(%(at)s AS timestamptz), clock_timestamp()) + make_interval(secs => %(t)s))
ON CONFLICT (bucket) DO UPDATE
   SET tat = greatest(r.tat, excluded.tat - make_interval(secs => %(t)s)) + make_interval(secs => %(t)s)
 WHERE greatest(r.tat, excluded.tat - make_interval(secs => %(t)s)) + make_interval(secs => %(t)s)
       <= excluded.tat - make_interval(secs => %(t)s) + make_interval(secs => %(window)s)
RETURNING extract(epoch FROM r.tat)::float8 AS tat,
          extract(epoch FROM coalesce(CAST(%(at)s AS timestamptz), clock_timestamp()))::float8 AS now
"""
RATE_READ = """
SELECT extract(epoch FROM tat)::float8 AS tat,
       extract(epoch FROM coalesce(CAST(%(at)s AS timestamptz), clock_timestamp()))::float8 AS now
  FROM rate_limits WHERE bucket = %(bucket)s
"""
RATE_RESET = "DELETE FROM rate_limits WHERE bucket = %(bucket)s"

# -- the audit chain ----------------------------------------------------------------------------------

AUDIT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('jobforge.audit:' || %(t)s, 0))"
AUDIT_HEAD = ("SELECT clock_timestamp() AS now, h.seq, h.hash FROM (SELECT 1) AS one "
              "LEFT JOIN audit_heads AS h ON h.tenant_id = %(t)s")
AUDIT_INSERT = (
    "INSERT INTO audit_log (tenant_id, seq, prev_hash, hash, body, occurred_at, actor, action, resource, "
    "decision, reason, trace_id) VALUES (%(t)s, %(seq)s, %(prev)s, %(hash)s, %(body)s, %(at)s, %(actor)s, "
    "%(action)s, %(resource)s, %(decision)s, %(reason)s, %(trace)s)")
AUDIT_SET_HEAD = (
    "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (%(t)s, %(seq)s, %(hash)s) "
    "ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
    "updated_at = clock_timestamp()")
AUDIT_HEAD_OF = "SELECT seq, hash FROM audit_heads WHERE tenant_id = %s"
AUDIT_CHAIN = ("SELECT seq, hash, body, tenant_id, prev_hash, occurred_at, actor, action, resource, decision, "
               "reason, trace_id FROM audit_log WHERE tenant_id = %s ORDER BY seq")
AUDIT_NEWEST = "SELECT * FROM audit_log WHERE tenant_id = %(t)s ORDER BY seq DESC LIMIT %(limit)s"
AUDIT_NEWEST_BEFORE = ("SELECT * FROM audit_log WHERE tenant_id = %(t)s AND seq < %(before)s "
                       "ORDER BY seq DESC LIMIT %(limit)s")
AUDIT_TENANTS = "SELECT tenant_id FROM audit_heads ORDER BY tenant_id"

# -- policy tokens and receipts -----------------------------------------------------------------------

POLICY_TOKEN_RECORD = (
    "INSERT INTO policy_tokens (jti, token_ref, tenant_id, template_key, inputs_hash, actor, expires_at, "
    "used_by) VALUES (%(jti)s, %(ref)s, %(tenant)s, %(template)s, %(hash)s, %(actor)s, %(exp)s, '')")
POLICY_TOKEN_CONSUME = """
UPDATE policy_tokens SET used_at = clock_timestamp(), used_by = %(by)s
 WHERE token_ref = %(ref)s AND used_at IS NULL AND expires_at > clock_timestamp()
   AND tenant_id = %(tenant)s AND template_key = %(template)s AND inputs_hash = %(hash)s
RETURNING jti
"""
POLICY_TOKEN_LOOK = """
SELECT jti, tenant_id, template_key, inputs_hash, used_at, used_by, expires_at <= clock_timestamp() AS expired
  FROM policy_tokens WHERE token_ref = %(ref)s
"""
#: one atomic upsert: the run that holds the receipt comes back (another run's = already used)
RECEIPT_CONSUME = (
    "INSERT INTO receipt_uses (jti, workflow_id, run_id, expires_at) VALUES (%(jti)s, %(wf)s, %(run)s, %(exp)s) "
    "ON CONFLICT (jti) DO UPDATE SET jti = excluded.jti RETURNING run_id")

# -- console sessions ---------------------------------------------------------------------------------

SESSIONS_DROP_EXPIRED = "DELETE FROM console_sessions WHERE expires_at < now()"
SESSION_OPEN = (
    "INSERT INTO console_sessions (id_sha256, tenant_id, key_id, operator_sha256, actor, csrf_token, "
    "expires_at) VALUES (%(id)s, %(tenant)s, %(key)s, %(op)s, %(actor)s, %(csrf)s, "
    "now() + make_interval(secs => %(ttl)s)) RETURNING *")
SESSION_GET = "SELECT * FROM console_sessions WHERE id_sha256 = %(id)s AND expires_at > now()"
SESSION_CLOSE = "DELETE FROM console_sessions WHERE id_sha256 = %(id)s"
