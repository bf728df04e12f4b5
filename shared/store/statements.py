"""Every SQL statement JobForge runs, each defined once and named here (no imports: the CLI loads it cheaply).

Statements are psycopg text (``%(name)s`` parameters, or ``%s`` where a statement is executed with a
tuple), run over a psycopg connection: ``Store.connection()`` (the pool of :mod:`shared.store.fast`) in
the processes that open a store (workers, API, the commands that open a runtime), and
:func:`shared.store.direct.connect` in the commands that read one thing and exit. The few statements
whose ``WHERE`` is assembled from optional filters are built by a function here from constant clauses;
their values are always bound.

A new statement goes here, under a name that says what it does, next to the others of its table; the
store method that runs it maps its rows to typed records (``shared/store/rows.py`` and the stores).
"""

from __future__ import annotations

from collections.abc import Iterable

# -- schema ---------------------------------------------------------------------------------------

PING = "SELECT 1"
#: a transaction's ends as statements, for a pipeline that sends them with its other statements
TX_BEGIN = "BEGIN"
TX_COMMIT = "COMMIT"
#: whether the database was ever migrated (a statement naming a missing table fails however it is guarded)
SCHEMA_MIGRATED = "SELECT to_regclass('alembic_version') IS NOT NULL"
SCHEMA_REVISION = "SELECT version_num FROM alembic_version LIMIT 1"

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
#: an admitted run's receipt use and its record in one statement: the receipt's holder (``receipt_run_id``,
#: this run unless another used the receipt first) and, when it is this run, RUN_RECORD_VERDICT's row
#: (absent when the row was committed by another admission meanwhile: read it with RUN_BY_ID)
RUN_RECORD_ADMITTED_WITH_RECEIPT = (
    "WITH used AS (INSERT INTO receipt_uses (jti, workflow_id, run_id, expires_at) VALUES (%(jti)s, "
    "%(workflow_id)s, %(run_id)s, %(exp)s) ON CONFLICT (jti) DO UPDATE SET jti = excluded.jti RETURNING run_id), "
    "up AS (INSERT INTO runs (run_id, workflow_id, tenant_id, template_key, status, trace_id, actor, "
    "idempotency_key, input_hash, summary, error) SELECT %(run_id)s, %(workflow_id)s, %(tenant_id)s, "
    "%(template_key)s, 'running', %(trace_id)s, %(actor)s, %(idem)s, %(input_hash)s, '{}'::jsonb, '' FROM used "
    "WHERE used.run_id = %(run_id)s ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, "
    "idempotency_key = EXCLUDED.idempotency_key, input_hash = EXCLUDED.input_hash, error = EXCLUDED.error, "
    "finished_at = NULL, updated_at = now() WHERE runs.status = 'queued' RETURNING *) "
    "SELECT used.run_id AS receipt_run_id, found.* FROM used LEFT JOIN (SELECT * FROM up UNION ALL "
    "SELECT * FROM runs WHERE run_id = %(run_id)s AND NOT EXISTS (SELECT 1 FROM up)) AS found "
    "ON used.run_id = %(run_id)s")
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
#: a timestamp's microseconds since the epoch exactly as Python's ``int(ts.timestamp() * 1_000_000)`` (the
#: route key's, :func:`shared.events.route_key`): the exact microseconds divided by 10^6 and multiplied back
#: in float8 (IEEE double, as Python's float), then truncated. ``{ts}``: the timestamp's expression
ROUTE_MICROS = ("trunc((((extract(epoch FROM {ts}) * 1000000)::bigint)::float8 / 1000000::float8) "
                "* 1000000::float8)::bigint::text")
#: the dedupe claim that also stores the admitted copy, in one statement (atomic: never a claim without its
#: event). The event's route key is ``%(route_prefix)s`` followed by the claim's first sighting in
#: microseconds (:data:`ROUTE_MICROS`), as :func:`shared.events.route_key` makes it. No row back = a duplicate
_CLAIM_INTO = """INSERT INTO event_dedupe AS d (tenant_id, event_type, event_id, first_seen_at, expires_at, trace_id,
                               payload_hash, duplicates)
SELECT %(tenant)s, %(etype)s, %(eid)s, c.now, c.now + make_interval(secs => %(ttl)s), %(trace)s, %(hash)s, 0
  FROM (SELECT clock_timestamp() AS now) AS c"""
#: the rest of a claim's CTE (a lapsed claim is taken over) and the stored copy's CTE, made from the claim
_CLAIM_REST = f"""ON CONFLICT (tenant_id, event_type, event_id) DO UPDATE
   SET first_seen_at = excluded.first_seen_at, expires_at = excluded.expires_at, trace_id = excluded.trace_id,
       payload_hash = excluded.payload_hash, duplicates = 0
 WHERE d.expires_at <= excluded.first_seen_at
RETURNING first_seen_at, expires_at, trace_id, payload_hash
), stored AS (
INSERT INTO events (tenant_id, event_id, event_type, trace_id, source_app, source_module, payload, occurred_at,
                    route_workflow_id, actor)
SELECT %(tenant_id)s, %(event_id)s, %(event_type)s, %(trace_id)s, %(source_app)s, %(source_module)s, %(payload)s,
       %(occurred_at)s, %(route_prefix)s || {ROUTE_MICROS.format(ts="claim.first_seen_at")}, %(actor)s
  FROM claim
ON CONFLICT (route_workflow_id) DO NOTHING
)"""
DEDUPE_CLAIM_STORING = f"""
WITH claim AS (
{_CLAIM_INTO}
{_CLAIM_REST}
SELECT first_seen_at, expires_at, trace_id, payload_hash FROM claim
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
RATE_HIT_BODY = """INSERT INTO rate_limits AS r (bucket, tat)
VALUES (%(bucket)s, coalesce(CAST(%(at)s AS timestamptz), clock_timestamp()) + make_interval(secs => %(t)s))
ON CONFLICT (bucket) DO UPDATE
   SET tat = greatest(r.tat, excluded.tat - make_interval(secs => %(t)s)) + make_interval(secs => %(t)s)
 WHERE greatest(r.tat, excluded.tat - make_interval(secs => %(t)s)) + make_interval(secs => %(t)s)
       <= excluded.tat - make_interval(secs => %(t)s) + make_interval(secs => %(window)s)
RETURNING extract(epoch FROM r.tat)::float8 AS tat,
          extract(epoch FROM coalesce(CAST(%(at)s AS timestamptz), clock_timestamp()))::float8 AS now"""
RATE_HIT = f"""
{RATE_HIT_BODY}
"""
RATE_READ = """
SELECT extract(epoch FROM tat)::float8 AS tat,
       extract(epoch FROM coalesce(CAST(%(at)s AS timestamptz), clock_timestamp()))::float8 AS now
  FROM rate_limits WHERE bucket = %(bucket)s
"""
RATE_RESET = "DELETE FROM rate_limits WHERE bucket = %(bucket)s"
#: the gate's rate-limit charge of one bucket (:data:`RATE_HIT`'s) and :data:`DEDUPE_CLAIM_STORING` in one
#: statement: the claim (and the stored copy) only when the charge is allowed. No row back = refused (nothing
#: claimed); a row whose claim columns are NULL = charged, and a duplicate
RATE_HIT_DEDUPE_CLAIM_STORING = f"""
WITH charge AS (
{RATE_HIT_BODY}
), claim AS (
{_CLAIM_INTO}
 WHERE EXISTS (SELECT 1 FROM charge)
{_CLAIM_REST}
SELECT charge.tat, charge.now, claim.first_seen_at, claim.expires_at, claim.trace_id, claim.payload_hash
  FROM charge LEFT JOIN claim ON true
"""

# -- the audit chain ----------------------------------------------------------------------------------

#: the tenant's chain head, row-locked until the transaction ends (a tenant's writers take turns on it), with
#: the database clock: a first entry creates the head at (0, genesis). ON CONFLICT DO UPDATE waits for a
#: writer holding the row and then locks the latest committed version, so RETURNING is the head that writer
#: left (under READ COMMITTED, no separate lock statement is needed)
AUDIT_CLAIM_HEAD = (
    "INSERT INTO audit_heads (tenant_id, seq, hash, updated_at) VALUES (%(t)s, 0, %(genesis)s, clock_timestamp()) "
    "ON CONFLICT (tenant_id) DO UPDATE SET updated_at = excluded.updated_at "
    "RETURNING seq, hash, clock_timestamp() AS now")
#: sealed entries (arrays, one element per entry) appended and the head moved to the last, in one statement
AUDIT_APPEND = (
    "WITH entries AS (INSERT INTO audit_log (tenant_id, seq, prev_hash, hash, body, occurred_at, actor, action, "
    "resource, decision, reason, trace_id) SELECT %(t)s, e.seq, e.prev, e.hash, e.body, %(at)s, e.actor, e.action, "
    "e.resource, e.decision, e.reason, e.trace FROM unnest(%(seq)s::bigint[], %(prev)s::text[], %(hash)s::text[], "
    "%(body)s::bytea[], %(actor)s::text[], %(action)s::text[], %(resource)s::text[], %(decision)s::text[], "
    "%(reason)s::text[], %(trace)s::text[]) AS e(seq, prev, hash, body, actor, action, resource, decision, reason, "
    "trace)) "
    "UPDATE audit_heads SET seq = %(head_seq)s, hash = %(head_hash)s, updated_at = clock_timestamp() "
    "WHERE tenant_id = %(t)s")
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

# -- triggers and their fires -------------------------------------------------------------------------

TRIGGER_CREATE = (
    "INSERT INTO triggers (trigger_id, tenant_id, name, kind, template_key, event_pattern, enabled, spec) "
    "VALUES (%(trigger_id)s, %(tenant_id)s, %(name)s, %(kind)s, %(template_key)s, %(event_pattern)s, %(enabled)s, "
    "%(spec)s) ON CONFLICT (tenant_id, name) DO NOTHING RETURNING *")
TRIGGER_BY_NAME = "SELECT * FROM triggers WHERE tenant_id = %(t)s AND name = %(name)s"
TRIGGER_BY_ID = "SELECT * FROM triggers WHERE trigger_id = %(id)s"
#: the trigger's row, locked until the transaction ends (fires of one trigger with limits take turns)
TRIGGER_LOCK = "SELECT * FROM triggers WHERE trigger_id = %(id)s FOR UPDATE"
TRIGGERS_OF_TENANT = "SELECT * FROM triggers WHERE tenant_id = %(t)s ORDER BY name"
TRIGGERS_OF_KIND = "SELECT * FROM triggers WHERE tenant_id = %(t)s AND kind = %(kind)s ORDER BY name"
TRIGGER_SAVE = ("UPDATE triggers SET enabled = %(enabled)s, spec = %(spec)s, updated_at = now() "
                "WHERE trigger_id = %(id)s")
TRIGGER_DELETE = "DELETE FROM triggers WHERE trigger_id = %(id)s"

#: a fire of a trigger without cooldown or max-runs, decided without a lock: one statement takes the
#: record's id and the database clock and inserts the record unless this fire was decided already
FIRE_RECORD_STATELESS = (
    "WITH fire AS (SELECT nextval(pg_get_serial_sequence('trigger_fires', 'id')) AS id) "
    "INSERT INTO trigger_fires (id, tenant_id, trigger_id, trigger_name, fire_key, source, verdict, "
    "reasons, event_type, event_id, inputs, run_workflow_id, start_error, fired_at) "
    "SELECT fire.id, %(tenant_id)s, %(trigger_id)s, %(trigger_name)s, %(fire_key)s, %(source)s, "
    "%(verdict)s, %(reasons)s, %(event_type)s, %(event_id)s, %(inputs)s, "
    "CASE WHEN %(fires)s THEN %(run_prefix)s::text || fire.id END, '', clock_timestamp() FROM fire "
    "ON CONFLICT (fire_key) DO NOTHING RETURNING *")
FIRE_BY_KEY = "SELECT * FROM trigger_fires WHERE fire_key = %(key)s"
#: under the trigger's lock: the clock, the next record's id and the trigger's fire history in one statement
FIRE_STATE = (
    "SELECT clock_timestamp() AS now, nextval(pg_get_serial_sequence('trigger_fires', 'id')) AS id, "
    "(SELECT max(fired_at) FILTER (WHERE verdict = 'fire') FROM trigger_fires WHERE trigger_id = %(id)s) "
    "AS last_fired_at, "
    "(SELECT count(*) FILTER (WHERE verdict = 'fire' AND fired_at > clock_timestamp() - %(window)s) "
    "FROM trigger_fires WHERE trigger_id = %(id)s) AS fires_in_window")
FIRE_RECORD = (
    "INSERT INTO trigger_fires (id, tenant_id, trigger_id, trigger_name, fire_key, source, verdict, reasons, "
    "event_type, event_id, inputs, run_workflow_id, start_error, fired_at) VALUES (%(id)s, %(tenant_id)s, "
    "%(trigger_id)s, %(trigger_name)s, %(fire_key)s, %(source)s, %(verdict)s, %(reasons)s, %(event_type)s, "
    "%(event_id)s, %(inputs)s, %(run_workflow_id)s, '', %(fired_at)s) RETURNING *")
FIRE_SET_START_ERROR = "UPDATE trigger_fires SET start_error = %(start_error)s WHERE id = %(id)s"
#: how many fires a trigger has recorded, counted up to a limit (an index range, no rows read)
FIRES_COUNT = "SELECT count(*) FROM (SELECT 1 FROM trigger_fires WHERE trigger_id = %s LIMIT %s) AS f"


def fires(*, trigger_name: bool = False, trigger_id: bool = False, verdict: bool = False,
          after_cursor: bool = False) -> str:
    """A tenant's fire decisions (``%(t)s``), newest first, up to ``%(limit)s``: of one trigger (by
    ``%(trigger_name)s`` or ``%(trigger)s``), of one ``%(verdict)s``, older than (``%(c_at)s``, ``%(c_id)s``)."""
    clauses = ["tenant_id = %(t)s"]
    if trigger_name:
        clauses.append("trigger_name = %(trigger_name)s")
    if trigger_id:
        clauses.append("trigger_id = %(trigger)s")
    if verdict:
        clauses.append("verdict = %(verdict)s")
    if after_cursor:
        clauses.append("(fired_at, id) < (%(c_at)s, %(c_id)s)")
    return f"SELECT * FROM trigger_fires WHERE {' AND '.join(clauses)} ORDER BY fired_at DESC, id DESC LIMIT %(limit)s"


# -- events -----------------------------------------------------------------------------------------

#: an admitted event, stored once (a retried submission finds the row there)
EVENT_INSERT = (
    "INSERT INTO events (tenant_id, event_id, event_type, trace_id, source_app, source_module, payload, "
    "occurred_at, route_workflow_id, actor) VALUES (%(tenant_id)s, %(event_id)s, %(event_type)s, %(trace_id)s, "
    "%(source_app)s, %(source_module)s, %(payload)s, %(occurred_at)s, %(route_workflow_id)s, %(actor)s) "
    "ON CONFLICT (route_workflow_id) DO NOTHING")
EVENT_BY_ROUTE_KEY = "SELECT * FROM events WHERE route_workflow_id = %(route)s"
EVENT_OF_TENANT_BY_ROUTE_KEY = "SELECT * FROM events WHERE tenant_id = %(t)s AND route_workflow_id = %(route)s"
EVENTS_BY_ROUTE_KEYS = "SELECT * FROM events WHERE route_workflow_id = ANY(%s)"
EVENT_BY_ID = "SELECT * FROM events WHERE id = %(id)s AND tenant_id = %(t)s"
#: how events were routed, in one statement (a retried routing writes the same result again)
EVENTS_MARK_ROUTED = (
    "UPDATE events SET routed_at = coalesce(events.routed_at, now()), routing = done.routing "
    "FROM unnest(%s::bigint[], %s::jsonb[]) AS done(id, routing) WHERE events.id = done.id")
EVENTS_UNROUTED = ("SELECT route_workflow_id FROM events WHERE tenant_id = %s AND routed_at IS NULL "
                   "AND received_at < now() - %s ORDER BY received_at, id LIMIT %s")
EVENT_DROP_UNROUTED = "DELETE FROM events WHERE route_workflow_id = %s AND routed_at IS NULL"
EVENT_COUNTS = (
    "SELECT date_bin(make_interval(secs => %(b)s), received_at, TIMESTAMPTZ '2000-01-01 00:00Z'), "
    "count(*) FROM events WHERE tenant_id = %(t)s AND received_at >= %(since)s GROUP BY 1")


def events(*, event_type: bool = False, source_app: bool = False, after_cursor: bool = False) -> str:
    """A tenant's stored events (``%(t)s``), newest first, up to ``%(limit)s``: of one ``%(type)s``, one
    ``%(source)s``, older than (``%(c_at)s``, ``%(c_id)s``)."""
    clauses = ["tenant_id = %(t)s"]
    if event_type:
        clauses.append("event_type = %(type)s")
    if source_app:
        clauses.append("source_app = %(source)s")
    if after_cursor:
        clauses.append("(received_at, id) < (%(c_at)s, %(c_id)s)")
    return f"SELECT * FROM events WHERE {' AND '.join(clauses)} ORDER BY received_at DESC, id DESC LIMIT %(limit)s"

# -- the replay pack ----------------------------------------------------------------------------------

#: a run's provenance, first capture kept (a retried activity does not overwrite it)
PROVENANCE_SAVE = ("INSERT INTO run_provenance (run_id, tenant_id, input_hash, provenance) VALUES (%(run_id)s, "
                   "%(tenant_id)s, %(input_hash)s, %(provenance)s) ON CONFLICT (run_id) DO NOTHING")
PROVENANCE_GET = "SELECT provenance FROM run_provenance WHERE run_id = %(run_id)s"
#: finished runs whose history is not captured yet, newest first
RUNS_WITHOUT_HISTORY = (
    "SELECT r.tenant_id, r.workflow_id, r.run_id FROM runs AS r LEFT OUTER JOIN run_histories AS h "
    "ON h.run_id = r.run_id WHERE r.status = ANY(%(final)s) AND h.run_id IS NULL "
    "ORDER BY r.finished_at DESC NULLS LAST LIMIT %(limit)s")
HISTORY_SAVE = ("INSERT INTO run_histories (run_id, tenant_id, workflow_id, history, events) VALUES (%(run_id)s, "
                "%(tenant_id)s, %(workflow_id)s, %(history)s, %(events)s) ON CONFLICT (run_id) DO NOTHING")
HISTORY_GET = "SELECT history FROM run_histories WHERE run_id = %(run_id)s"
BUNDLE_RECORD = ("INSERT INTO replay_bundles (tenant_id, run_id, bundle_sha256, replay_sha256, location) "
                 "VALUES (%(tenant_id)s, %(run_id)s, %(bundle_sha256)s, %(replay_sha256)s, %(location)s)")
BUNDLES_OF_RUN = ("SELECT bundle_sha256, replay_sha256, location, created_at FROM replay_bundles "
                  "WHERE tenant_id = %(tenant_id)s AND run_id = %(run_id)s ORDER BY created_at DESC")

# -- console sessions ---------------------------------------------------------------------------------

SESSIONS_DROP_EXPIRED = "DELETE FROM console_sessions WHERE expires_at < now()"
SESSION_OPEN = (
    "INSERT INTO console_sessions (id_sha256, tenant_id, key_id, operator_sha256, actor, csrf_token, "
    "expires_at) VALUES (%(id)s, %(tenant)s, %(key)s, %(op)s, %(actor)s, %(csrf)s, "
    "now() + make_interval(secs => %(ttl)s)) RETURNING *")
SESSION_GET = "SELECT * FROM console_sessions WHERE id_sha256 = %(id)s AND expires_at > now()"
SESSION_CLOSE = "DELETE FROM console_sessions WHERE id_sha256 = %(id)s"
