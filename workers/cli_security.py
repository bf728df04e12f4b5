"""``jobforge tenants|keys|tokens|audit``: tenants, API keys, policy tokens and the audit log."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.table import Table

from jobforge.errors import InvalidRequest
from shared.flags import Flag
from shared.security.principal import Principal
from shared.security.scopes import parse_scopes
from shared.store.tenants import ApiKey
from workers.cli_common import (
    NegativeVerdict,
    command,
    err,
    out,
    parse_inputs,
    print_json,
    print_table,
    run_async,
    settings,
)
from workers.runtime import Runtime, open_runtime

R = TypeVar("R")

tenants_app = typer.Typer(no_args_is_help=True, help="Tenants: isolated customer/app accounts.")
keys_app = typer.Typer(no_args_is_help=True, help="Tenant API keys (the secret is shown once).")
tokens_app = typer.Typer(no_args_is_help=True, help="Policy tokens that authorize one action run.")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log.")


def _with_runtime(fn: Callable[[Runtime], Awaitable[R]], tenant: str | None = None) -> R:
    """``fn`` on a runtime without Temporal; ``tenant``: refused with unknown_tenant unless it exists (the
    fleet's audit chain is no tenant, and always there)."""
    from shared.kill_switch import FLEET_CHAIN

    async def go() -> R:
        async with open_runtime(settings(), temporal=False, stack_flags=True,
                                tenant=None if tenant == FLEET_CHAIN else tenant) as rt:
            return await fn(rt)

    return run_async(go())


def _key_row(key: ApiKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "tenant_id": key.tenant_id, "scopes": list(key.scopes),
            "description": key.description, "created_at": key.created_at.isoformat(),
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None}


@tenants_app.command("create")
@command
def tenants_create(name: str = typer.Argument(..., help="The tenant id (lowercase letters, digits, _ and -)."),
                   display_name: str = typer.Option("", "--display-name"),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Create tenant NAME."""
    tenant = _with_runtime(lambda rt: rt.gate.tenants.create_tenant(name, display_name))
    row = {"tenant_id": tenant.tenant_id, "name": tenant.name, "created_at": tenant.created_at.isoformat()}
    if as_json:
        print_json(row)
    else:
        out.print(f"tenant {tenant.tenant_id} created", highlight=False)


@tenants_app.command("list")
@command
def tenants_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every tenant."""
    tenants = _with_runtime(lambda rt: rt.gate.tenants.list_tenants())
    rows = [{"tenant_id": t.tenant_id, "name": t.name, "created_at": t.created_at.isoformat()} for t in tenants]
    if as_json:
        print_json(rows)
        return
    table = Table("tenant", "name", "created")
    for row in rows:
        table.add_row(row["tenant_id"], row["name"], row["created_at"])
    print_table(table)


@keys_app.command("create")
@command
def keys_create(tenant: str = typer.Option(..., "--tenant", "-t"),
                scopes: str = typer.Option(..., "--scopes", help="Comma separated, e.g. 'jobs:*,events:write'."),
                description: str = typer.Option("", "--description"),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Create an API key for a tenant; its secret is printed once and never stored."""
    parsed = parse_scopes(scopes)
    issued = _with_runtime(lambda rt: rt.gate.tenants.create_key(tenant, parsed, description))
    if as_json:
        print_json({**_key_row(issued.key), "secret": issued.secret})
        return
    err.print(f"key {issued.key.key_id} for {tenant} with scopes {', '.join(issued.key.scopes)}; "
              "store the secret now, it is not shown again:", highlight=False)
    out.print(issued.secret, highlight=False, soft_wrap=True)


@keys_app.command("list")
@command
def keys_list(tenant: str | None = typer.Option(None, "--tenant", "-t"),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """API keys (never their secrets)."""
    rows = [_key_row(k) for k in _with_runtime(lambda rt: rt.gate.tenants.list_keys(tenant), tenant)]
    if as_json:
        print_json(rows)
        return
    table = Table("key id", "tenant", "scopes", "created", "revoked", "description")
    for row in rows:
        table.add_row(row["key_id"], row["tenant_id"], ",".join(row["scopes"]), row["created_at"],
                      row["revoked_at"] or "", row["description"])
    print_table(table)


@keys_app.command("revoke")
@command
def keys_revoke(key_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Revoke an API key at once (the HTTP ingress refuses it from the next request on)."""
    key = _with_runtime(lambda rt: rt.gate.tenants.revoke_key(key_id))
    if as_json:
        print_json(_key_row(key))
    else:
        out.print(f"key {key.key_id} revoked", highlight=False)


@keys_app.command("keypair")
@command
def keys_keypair(private_key: Path = typer.Option(..., "--private-key", help="Where to write the private key "
                                                  "(PKCS#8 PEM, mode 0600)."),
                 force: bool = typer.Option(False, "--force", help="Overwrite an existing file.")) -> None:
    """Make an X25519 keypair to receive a rotated key's secret: the private key goes to a file, the
    public key (the rotation's ``recipient_public_key``) to stdout."""
    from jobforge.sealed import new_keypair, private_key_pem

    private, public = new_keypair()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(private_key, flags, 0o600)
    except FileExistsError:
        raise InvalidRequest(f"{private_key} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise InvalidRequest(f"cannot write {private_key}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(private_key_pem(private))
    err.print(f"private key written to {private_key}; the public key (recipient_public_key):", highlight=False)
    out.print(public, highlight=False, soft_wrap=True)


def _read_text(source: str, what: str) -> str:
    if source == "-":
        return sys.stdin.read()
    if source.startswith("@"):
        try:
            return Path(source[1:]).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"cannot read {what} from {source[1:]}: {getattr(exc, 'strerror', None) or exc}"
                                 ) from None
    return source


async def _sealed_of_run(ident: str, within: float) -> str:
    """The sealed secret of a rotation run: queried while it waits out its grace period, else its result."""
    from jobforge.errors import RunStillRunning
    from shared.key_rotation_runs import sealed_secret_of

    async with open_runtime(settings(), stack_flags=True) as rt:
        run = await rt.store.get_run(ident)
        assert rt.temporal is not None
        deadline = time.monotonic() + within
        while True:
            try:
                return (await sealed_secret_of(rt.temporal, run)).sealed_secret
            except RunStillRunning:
                if time.monotonic() > deadline:
                    raise RunStillRunning(f"run {run.run_id} has not made the new key within {within:g}s") from None
            await asyncio.sleep(0.2)


@keys_app.command("open-sealed")
@command
def keys_open_sealed(
    sealed: str | None = typer.Argument(None, metavar="[SEALED]", help="The sealed secret (base64), @FILE or - "
                                        "(stdin); a file may hold a rotation's result JSON."),
    private_key: Path = typer.Option(..., "--private-key", help="The private key of `jobforge keys keypair`."),
    run: str | None = typer.Option(None, "--run", help="Take the sealed secret from this rotation run (its run "
                                   "id or workflow id); it is there from the grace period on."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="With --run: seconds to wait for the new key."),
) -> None:
    """Open a rotated key's sealed secret (``autopilot.keys.rotation``) and print the new key."""
    from jobforge.sealed import open_sealed_secret, read_private_key, sealed_from_text

    if (sealed is None) == (run is None):
        raise InvalidRequest("give the sealed secret (SEALED, @FILE or -) or --run RUN, one of them")
    try:
        key = read_private_key(private_key.read_bytes())
    except OSError as exc:
        raise InvalidRequest(f"cannot read the private key {private_key}: {exc.strerror}") from None
    text = run_async(_sealed_of_run(run, timeout)) if run is not None else _read_text(sealed or "", "the sealed secret")
    secret = open_sealed_secret(sealed_from_text(text), key)
    out.print(secret, highlight=False, soft_wrap=True, markup=False)


@tokens_app.command("issue")
@command
def tokens_issue(tenant: str = typer.Option(..., "--tenant", "-t"),
                 template: str = typer.Option(..., "--template"),
                 inputs: str | None = typer.Option(None, "--inputs", "-i", help="JSON object, or @file.json"),
                 ttl: int | None = typer.Option(None, "--ttl", min=5, help="Seconds (capped by settings)."),
                 actor: str = typer.Option("cli", "--actor"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Issue a single-use policy token for one run of an action template with exactly these inputs."""
    parsed = parse_inputs(inputs)

    async def go(rt: Runtime) -> Any:
        operator = Principal.operator(actor, tuple(rt.settings.operator_scopes))
        return await rt.gate.issue_policy_token(operator, tenant, template, parsed, ttl=ttl)

    issued = _with_runtime(go)
    expires = datetime.fromtimestamp(issued.expires_at, UTC).isoformat()
    if as_json:
        print_json({"token": issued.token, "ref": issued.ref, "jti": issued.jti, "expires_at": expires})
        return
    err.print(f"policy token {issued.jti} for {template} ({tenant}), single use, expires {expires}:",
              highlight=False)
    out.print(issued.token, highlight=False, soft_wrap=True)


@audit_app.command("list")
@command
def audit_list(tenant: str = typer.Option(..., "--tenant", "-t"), limit: int = typer.Option(50, min=1, max=10000),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """A tenant's audit entries, newest first."""

    async def go(rt: Runtime) -> Any:
        if not await rt.flags.is_enabled(Flag.AUDIT_LOGGING):
            err.print(f"note: {Flag.AUDIT_LOGGING.value} is off: no new entries are being written",
                      highlight=False)
        return await rt.gate.audit.list(tenant, limit=limit)

    records = _with_runtime(go, tenant)
    if as_json:
        print_json([r.to_json() for r in records])
        return
    table = Table("seq", "at", "actor", "action", "resource", "decision", "reason")
    for r in records:
        table.add_row(str(r.seq), r.occurred_at.isoformat(timespec="seconds"), r.actor, r.action, r.resource,
                      r.decision, r.reason[:80])
    print_table(table)


@audit_app.command("verify")
@command
def audit_verify(tenant: str = typer.Option(..., "--tenant", "-t"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Re-check a tenant's hash chain; exit 1 naming each edited or deleted entry."""
    verdict = _with_runtime(lambda rt: rt.gate.audit.verify(tenant), tenant)
    problems = [{"seq": p.seq, "kind": p.kind, "message": p.message} for p in verdict.problems]
    if as_json:
        print_json({"tenant_id": tenant, "ok": verdict.ok, "entries": verdict.entries,
                    "head_seq": verdict.head_seq, "problems": problems})
    elif verdict.ok:
        out.print(f"audit chain of {tenant}: {verdict.entries} entries, intact", highlight=False)
    if not verdict.ok:
        raise NegativeVerdict("\n".join(f"audit chain of {tenant} is broken: {p['message']}" for p in problems)
                              if not as_json else "")
