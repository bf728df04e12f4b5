"""``jobforge dev``: bring up the embedded stack, supervise it, tear it down cleanly."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from jobforge.errors import StackStartFailed
from shared.flags import Flag
from shared.settings import Settings
from workers.stack import (
    STACK_GATE,
    EmbeddedPostgres,
    StackState,
    check_port_free,
    temporal_dev_command,
    terminate,
    wait_for_port,
)

log = structlog.get_logger("jobforge.dev")

#: the tenant every dev stack has (``jobforge verify`` and ``jobforge dev --run`` use it by default)
DEMO_TENANT = "demo"


def prepare_database(url: str, tenant_id: str) -> bool:
    """Migrate the database at ``url`` to the head revision, then create ``tenant_id`` unless it exists.

    A database already at head (read in one statement) is left alone without loading Alembic, which a
    warm start would otherwise spend a second or more importing. True when the migrations ran.
    """
    import psycopg

    from shared.store import statements
    from shared.store.direct import conninfo
    from shared.store.schema import HEAD_REVISION

    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        migrated = conn.execute(statements.SCHEMA_MIGRATED).fetchone()
        row = conn.execute(statements.SCHEMA_REVISION).fetchone() if migrated and migrated[0] else None
    migrate = row is None or row[0] != HEAD_REVISION
    if migrate:
        from shared.store.migrate import upgrade  # Alembic loads while the workers and the API import

        log.info("migrating", database=url)
        upgrade(url)
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute(statements.TENANT_CREATE, {"t": tenant_id, "name": tenant_id})
    return migrate


@dataclass(frozen=True)
class DevPorts:
    temporal: int = 7233
    ui: int = 8233
    postgres: int = 54329
    #: the HTTP ingress (jobforge-api); 0 = do not start it (``jobforge dev`` asks for 8080)
    api: int = 0


class DevStack:
    """Temporal dev server + PostgreSQL (embedded unless a URL is configured) + N workers."""

    def __init__(self, settings: Settings, ports: DevPorts, workers: int = 1, headless: bool = False,
                 enable: Sequence[Flag] = ()) -> None:
        self.settings = settings
        #: flags turned on in the environment of the workers and the API (``jobforge dev --enable``)
        self.enable = tuple(enable)
        self.home = settings.home.resolve()
        self.ports = ports
        self.worker_count = workers
        self.headless = headless
        self.temporal: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.api: subprocess.Popen[bytes] | None = None
        self.api_url = f"http://127.0.0.1:{ports.api}" if ports.api else ""
        self.postgres: EmbeddedPostgres | None = None
        self.database_url = settings.database_url_value() or ""
        self.temporal_address = f"127.0.0.1:{ports.temporal}"
        self.ui_url = "" if headless else f"http://127.0.0.1:{ports.ui}"
        #: the console's operator sign-in: the configured token, else a fresh one for this start of the stack
        configured = settings.console_operator_token
        self.console_token = configured.get_secret_value() if configured else secrets.token_urlsafe(32)
        self.console_url = f"{self.api_url}/ui" if ports.api else ""

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def console_token_file(self) -> Path:
        """Where the operator token of the running stack is kept for its user (mode 0600)."""
        return self.home / "console-operator-token"

    def start(self) -> StackState:
        existing = StackState.read(self.settings.state_file)
        if existing is not None:
            raise StackStartFailed(
                f"a dev stack already runs from {self.home} (pid {existing.pid}); stop it first")
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        check_port_free(self.ports.temporal, "Temporal gRPC")
        if not self.headless:
            check_port_free(self.ports.ui, "Temporal Web UI")
        if self.ports.api:
            check_port_free(self.ports.api, "JobForge HTTP API")
        marks = {"cli_ready": time.time()}
        try:
            self._start_temporal()
            if not self.database_url:
                self.postgres = EmbeddedPostgres(self.home / "pgdata", self.ports.postgres)
                self.database_url = self.postgres.url
            # the workers and the API import their code while PostgreSQL starts and migrates; they wait on
            # stdin for the word that the database and Temporal are ready (JOBFORGE_STACK_GATE)
            for index in range(self.worker_count):
                self.workers.append(self._start_worker(index))
            self._launch_api()
            if self.postgres is not None:
                self.postgres.start()
            marks["postgres_started"] = time.time()
            prepare_database(self.database_url, DEMO_TENANT)
            marks["migrated"] = time.time()
            self._wait_temporal()
            marks["temporal_ready"] = time.time()
            self._release([*self.workers, *([self.api] if self.api else [])])
            self._wait_api()
            marks["api_ready"] = time.time()
            state = StackState(pid=os.getpid(), temporal_address=self.temporal_address, ui_url=self.ui_url,
                               database_url=self.database_url, home=str(self.home), api_url=self.api_url,
                               console_url=self.console_url, flag_env=self.flag_env(),
                               pids={"temporal": self.temporal.pid if self.temporal else 0,
                                     **{f"worker{i}": w.pid for i, w in enumerate(self.workers)},
                                     **({"api": self.api.pid} if self.api else {})},
                               startup=marks)
            state.write(self.settings.state_file)
            return state
        except BaseException:
            self.stop()
            raise

    def _start_temporal(self) -> None:
        cmd = temporal_dev_command(self.home, self.ports.temporal, self.ports.ui,
                                   self.settings.temporal_namespace, self.headless)
        with (self.logs / "temporal.log").open("ab") as out:
            self.temporal = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)

    def _wait_temporal(self) -> None:
        assert self.temporal is not None
        if not wait_for_port(self.ports.temporal, 30, self.temporal):
            tail = (self.logs / "temporal.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise StackStartFailed("the Temporal dev server did not start: " + " | ".join(tail))

    @staticmethod
    def _release(procs: Sequence[subprocess.Popen[bytes]]) -> None:
        """Tell processes launched behind the stack gate that the database and Temporal are ready."""
        for proc in procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):  # one that died already is reported by check()
                    proc.stdin.write(b"ready\n")
                    proc.stdin.close()

    def flag_env(self) -> dict[str, str]:
        """The feature-flag variables the workers and the API get: this process's, and ``enable``'s."""
        names = {flag.value for flag in Flag}
        return {name: value for name, value in self.worker_env().items() if name in names}

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({flag.value: "1" for flag in self.enable})
        env.update({"JOBFORGE_TEMPORAL_ADDRESS": self.temporal_address, "JOBFORGE_DATABASE_URL": self.database_url,
                    "JOBFORGE_HOME": str(self.home), "JOBFORGE_LOG_FORMAT": "json", STACK_GATE: "stdin"})
        return env

    def _start_worker(self, index: int) -> subprocess.Popen[bytes]:
        env = self.worker_env()
        if self.settings.metrics_bind:  # one Prometheus endpoint per worker process: consecutive ports
            from shared.metrics import nth_bind  # imports Temporal's runtime: only when metrics are served

            env["JOBFORGE_METRICS_BIND"] = nth_bind(self.settings.metrics_bind, index)
        with (self.logs / f"worker{index}.log").open("ab") as out:
            return subprocess.Popen([sys.executable, "-m", "workers.boot", "worker"], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.PIPE, env=env, start_new_session=True)

    def api_env(self) -> dict[str, str]:
        """The API's environment: the workers', the console's operator token and the Temporal UI for its links."""
        env = self.worker_env()
        env["JOBFORGE_CONSOLE_OPERATOR_TOKEN"] = self.console_token
        if self.ui_url and "temporal_ui_url" not in self.settings.fields_set:
            env["JOBFORGE_TEMPORAL_UI_URL"] = self.ui_url
        return env

    def _launch_api(self) -> None:
        if not self.ports.api:
            return
        fd = os.open(self.console_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as token_file:
            token_file.write(self.console_token + "\n")
        with (self.logs / "api.log").open("ab") as out:
            self.api = subprocess.Popen([sys.executable, "-m", "workers.boot", "api", "--port", str(self.ports.api)],
                                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
                                        env=self.api_env(), start_new_session=True)

    def _wait_api(self) -> None:
        if self.api is None:
            return
        if not wait_for_port(self.ports.api, 30, self.api):
            tail = (self.logs / "api.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise StackStartFailed("the HTTP API did not start: " + " | ".join(tail))

    def check(self) -> str | None:
        """What died, if anything did."""
        if self.api is not None and self.api.poll() is not None:
            return f"the HTTP API exited ({self.api.returncode}); see {self.logs / 'api.log'}"
        if self.temporal is not None and self.temporal.poll() is not None:
            return f"the Temporal dev server exited ({self.temporal.returncode}); see {self.logs / 'temporal.log'}"
        for index, worker in enumerate(self.workers):
            if worker.poll() is not None:
                return f"worker {index} exited ({worker.returncode}); see {self.logs / f'worker{index}.log'}"
        return None

    def stop(self) -> None:
        if self.api is not None:
            terminate(self.api, 15)
            self.api = None
        with contextlib.suppress(FileNotFoundError):
            self.console_token_file.unlink()
        for worker in self.workers:
            terminate(worker, self.settings.worker_graceful_shutdown_seconds + 5)
        self.workers = []
        if self.temporal is not None:
            terminate(self.temporal, 15)
            self.temporal = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        with contextlib.suppress(FileNotFoundError):
            state = StackState.read(self.settings.state_file)
            if state is None or state.pid == os.getpid():
                self.settings.state_file.unlink()

    def wait_until_stopped(self, poll: float = 0.5) -> str | None:
        """Block until a component dies (returns what died) or KeyboardInterrupt."""
        while True:
            problem = self.check()
            if problem:
                return problem
            time.sleep(poll)
