"""Activities of ``autopilot.readylayer.verify_pack``: check out, plan, install, run steps, write artifacts.

Every decision is made by :mod:`shared.verify` (detection, path checks, fingerprint, environment,
sandbox command line, verdict); this module reads the repository, runs processes and persists.

On disk, under ``<home>/verify``:

* ``runs/<tenant>/<run_id>/`` the run's workspace: ``home/`` and ``tmp/`` of the steps, ``dist/`` of
  the build, ``logs/`` while they are written, ``steps/`` pid files, ``repo/`` for a cloned URL;
  removed when the run is finalised (logs live on in the artifact store);
* ``envs/<tenant>/<repo key>/`` the per-repository virtualenv, reused while the install key holds;
* ``stamps/<tenant>/<repo key>.json`` what the last successful install installed;
* ``cache/pip``, ``cache/npm`` download caches shared by installs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import structlog
from temporalio import activity

from activities.artifacts import ArtifactStore
from activities.process import ProcessResult, Progress, kill_stale, run_process
from shared import metrics
from shared.canonical import canonical_json
from shared.errors import JobForgeError, RepoCheckoutFailed, SandboxUnavailable
from shared.flags import Flag, FlagReader
from shared.manifest import MANIFEST_NAME, build_manifest, manifest_bytes
from shared.models import RunStatus
from shared.settings import Settings
from shared.store import Store
from shared.temporal import to_application_error
from shared.verify import detect
from shared.verify.environment import StepPaths, step_env
from shared.verify.fingerprint import (
    IGNORED_DIRS,
    CodeState,
    compose,
    files_digest,
    fingerprint_parts,
    ignored,
    normalise_command,
    sha256_hex,
)
from shared.verify.models import (
    ArtifactRef,
    CheckoutSpec,
    FinalizeInput,
    InstallResult,
    ManifestInfo,
    Plan,
    Prepared,
    PrepareInput,
    SandboxInfo,
    StepInput,
    StepName,
    StepResult,
    StepSpec,
    StepStatus,
    Toolchain,
    VerifyReport,
)
from shared.verify.paths import check_repo_path, file_url_path
from shared.verify.sandbox import SECRET_DIRS, SECRET_FILES, SandboxSpec, bwrap_argv

log = structlog.get_logger("jobforge.activities.verify")

GIT_TIMEOUT = 60.0
CLONE_TIMEOUT = 600.0
MAX_CONFIG_BYTES = 1 << 20
_SHA = re.compile(r"^[0-9a-f]{7,40}$")

_sandbox_probe: dict[str, SandboxInfo] = {}
_node_versions: dict[str, str] = {}


# -- helpers (I/O) ------------------------------------------------------------------------------------


def probe_sandbox(mode: str) -> SandboxInfo:
    """Whether steps can run under bubblewrap here (probed once per process)."""
    if mode == "off":
        return SandboxInfo(enabled=False, reason="turned off (JOBFORGE_VERIFY_SANDBOX=off)")
    if "bwrap" in _sandbox_probe:
        return _sandbox_probe["bwrap"]
    path = shutil.which("bwrap")
    if path is None:
        info = SandboxInfo(enabled=False, reason="bubblewrap is not installed on this worker (Debian: bubblewrap)")
    else:
        try:
            probe = subprocess.run(
                [path, "--die-with-parent", "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/", "--dev", "/dev",
                 "--proc", "/proc", "--", "true"], capture_output=True, timeout=15, check=False,
                stdin=subprocess.DEVNULL)
            version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            info = SandboxInfo(enabled=False, reason=f"bubblewrap does not start here: {exc}")
        else:
            if probe.returncode == 0:
                info = SandboxInfo(enabled=True, tool=version.stdout.strip() or "bubblewrap")
            else:
                first = (probe.stderr.decode(errors="replace").strip().splitlines() or ["?"])[0]
                info = SandboxInfo(enabled=False, reason=f"bubblewrap does not work here: {first[:200]}")
    _sandbox_probe["bwrap"] = info
    return info


def read_facts(repo: Path) -> detect.RepoFacts:
    """The files detection looks at (config files that resolve outside the repository are ignored)."""
    files: dict[str, str] = {}
    for name in detect.CONFIG_FILES:
        path = repo / name
        try:
            if not path.is_file() or not path.resolve().is_relative_to(repo):
                continue
            with path.open("rb") as f:
                files[name] = f.read(MAX_CONFIG_BYTES).decode("utf-8", errors="replace")
        except OSError:
            continue
    present = frozenset(p for p in detect.PROBED_PATHS if (repo / p).exists())
    entries = frozenset(os.listdir(repo))
    packages = tuple(sorted(
        name for name in entries
        if name not in ("tests", "test") and not name.startswith(".") and (repo / name / "__init__.py").is_file()))
    return detect.RepoFacts(files=files, present=present, root_entries=entries, python_packages=packages)


def _git(repo: Path, *args: str, env: Mapping[str, str] | None = None, text: bool = True) -> Any:
    return subprocess.run(["git", "-c", "safe.directory=*", "-c", "core.quotepath=off", *args], cwd=repo,
                          capture_output=True, text=text, timeout=GIT_TIMEOUT, check=False, env=dict(env or _git_env()),
                          stdin=subprocess.DEVNULL)


def _git_env(home: str = "/nonexistent") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    env.update({"HOME": home, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_ASKPASS": "/bin/false"})
    return env


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def code_state(repo: Path) -> CodeState:
    """The git tree of HEAD + hashes of the uncommitted diff and untracked files; or every file's hash."""
    probe = _git(repo, "rev-parse", "--is-inside-work-tree", "HEAD", "HEAD:./")
    lines = probe.stdout.split()
    if (probe.returncode == 0 and lines[:1] == ["true"]) or (
            _git(repo, "rev-parse", "--is-inside-work-tree").stdout.strip() == "true"):
        has_head = probe.returncode == 0 and len(lines) == 3
        base = ["HEAD"] if has_head else ["--cached"]  # no commit yet: the index against nothing
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            diff_job = pool.submit(_git, repo, "diff", *base, "--binary", "--no-ext-diff", "--no-color", "--", ".",
                                   text=False)
            untracked = pool.submit(_git, repo, "ls-files", "--others", "--exclude-standard", "-z", "--", ".").result()
            diff = diff_job.result()
        entries: list[tuple[str, str]] = []
        for name in untracked.stdout.split("\0"):
            path = repo / name
            if not name or ignored(name):
                continue
            with contextlib.suppress(OSError):
                entries.append((name, os.readlink(path) if path.is_symlink() else _file_digest(path)))
        return CodeState(kind="git", head=lines[1] if has_head else "", tree=lines[2] if has_head else "",
                         diff="sha256:" + sha256_hex(diff.stdout or b""), untracked=files_digest(entries))
    files: list[tuple[str, str]] = []
    for root, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS and not d.endswith(".egg-info")]
        for name in names:
            path = Path(root) / name
            relative = path.relative_to(repo).as_posix()
            with contextlib.suppress(OSError):
                files.append((relative, os.readlink(path) if path.is_symlink() else _file_digest(path)))
    return CodeState(kind="files", files=files_digest(files))


def dependency_hashes(repo: Path, plan: Plan) -> dict[str, str]:
    out: dict[str, str] = {}
    named = [argv[i + 1] for argv in plan.install.commands() for i, arg in enumerate(argv[:-1]) if arg == "-r"]
    for name in (*detect.dependency_files(plan), *named):
        path = repo / name
        with contextlib.suppress(OSError):
            if path.is_file():
                out[name] = "sha256:" + _file_digest(path)
    return out


def _identity(path: str) -> str:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return "missing"
    return f"{real}:{st.st_size}:{st.st_mtime_ns}"


def _node_version(node: str) -> str:
    key = _identity(node)
    if key not in _node_versions:
        try:
            result = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=15, check=False)
            _node_versions[key] = result.stdout.strip() or "unknown"
        except (OSError, subprocess.TimeoutExpired):
            _node_versions[key] = "unknown"
    return _node_versions[key]


def tool_versions(plan: Plan, repo: Path, path: str) -> dict[str, str]:
    """What the steps will run with: executables' identities, the venv's packages, node and its modules."""
    out: dict[str, str] = {}
    for spec in plan.steps:
        if spec.runnable and not spec.argv[0].startswith("/bin/sh"):
            found = shutil.which(spec.argv[0], path=path)
            out[f"exe:{spec.argv[0]}"] = _identity(found) if found else "missing"
    if plan.env_dir:
        env = Path(plan.env_dir)
        cfg = env / "pyvenv.cfg"
        version = ""
        with contextlib.suppress(OSError):
            for line in cfg.read_text().splitlines():
                if line.split("=")[0].strip() in ("version", "version_info"):
                    version = line.split("=", 1)[1].strip()
        out["python"] = version or "absent"
        dists = sorted(p.name for p in env.glob("lib/python*/site-packages/*.dist-info"))
        out["packages"] = "sha256:" + sha256_hex("\n".join(dists).encode())
    if plan.toolchain is Toolchain.NODE:
        node = shutil.which("node", path=path)
        out["node"] = _node_version(node) if node else "missing"
        for lock in ("node_modules/.package-lock.json", "node_modules/.modules.yaml", "node_modules/.yarn-state.yml"):
            if (repo / lock).is_file():
                out["node_modules"] = "sha256:" + _file_digest(repo / lock)
    return out


def short_tmp(workspace: str) -> Path:
    """A short, per-run temporary directory for unsandboxed steps."""
    return Path(tempfile.gettempdir()) / f"jobforge-{sha256_hex(workspace.encode())[:12]}"


def _fresh_dirs(remove: Path | None, create: list[Path]) -> None:
    if remove is not None and remove.exists():
        shutil.rmtree(remove)
    for path in create:
        path.mkdir(parents=True, exist_ok=True)


def _relative_under(path: Path, parent: Path) -> bool:
    try:
        return path.resolve().is_relative_to(parent.resolve())
    except OSError:
        return False


# -- the activities -----------------------------------------------------------------------------------


class VerifyActivities:
    def __init__(self, store: Store, settings: Settings, flags: FlagReader,
                 artifacts: ArtifactStore | None = None) -> None:
        self.store = store
        self.settings = settings
        self.flags = flags
        self.artifacts = artifacts or ArtifactStore(settings.artifact_root.resolve(), store)
        self.base = settings.home.resolve() / "verify"
        self.cache = (settings.verify_cache_dir or self.base / "cache").resolve()

    # -- layout

    def workspace(self, tenant_id: str, run_id: str) -> Path:
        return self.base / "runs" / tenant_id / run_id

    def repo_key(self, tenant_id: str, identity: str) -> str:
        return sha256_hex(f"{tenant_id}\0{identity}".encode())[:20]

    def env_dir(self, tenant_id: str, identity: str) -> Path:
        return self.base / "envs" / tenant_id / self.repo_key(tenant_id, identity)

    def stamp_file(self, tenant_id: str, identity: str) -> Path:
        return self.base / "stamps" / tenant_id / f"{self.repo_key(tenant_id, identity)}.json"

    def _host(self) -> detect.Host:
        available = frozenset(t for t in ("uv", "poetry", "pnpm", "yarn", "npm", "node", "git") if shutil.which(t))
        return detect.Host(python=sys.executable, pip_python=sys.executable, available=available)

    def _user_config_files(self) -> dict[str, str]:
        home = Path.home()
        found: dict[str, str] = {}
        for key, candidates in (("pip", (".config/pip/pip.conf", ".pip/pip.conf")), ("npm", (".npmrc",))):
            for rel in candidates:
                if (home / rel).is_file():
                    found[key] = str(home / rel)
                    break
        return found

    # -- checkout

    async def _clone(self, url: str, ref: str | None, dest: Path, workspace: Path, commit: str | None = None) -> str:
        local = file_url_path(url)
        if local is not None:
            await asyncio.to_thread(check_repo_path, local, self.settings.verify_allowed_roots)
        await asyncio.to_thread(_fresh_dirs, remove=dest, create=[dest.parent, workspace / "home", workspace / "logs"])
        env = _git_env(str(workspace / "home"))
        base = ["git", "-c", "protocol.ext.allow=never", "-c", "protocol.file.allow=always", "clone", "--quiet",
                "--no-hardlinks"]
        shallow = commit is None and ref is not None and not _SHA.match(ref)
        argv = [*base, "--depth", "1", "--branch", ref, "--", url, str(dest)] if shallow and ref else [
            *base, "--", url, str(dest)]
        with (workspace / "logs" / "checkout.log").open("w", encoding="utf-8") as sink:
            result = await run_process(argv, cwd=workspace, env=env, time_limit=CLONE_TIMEOUT,
                                       kill_grace=self.settings.verify_kill_grace_seconds, sink=sink,
                                       on_tick=lambda p: activity.heartbeat({"phase": "clone", "elapsed": p.elapsed}))
            target = commit or (ref if ref and not shallow else None)
            if result.exit_code == 0 and target:
                checkout = await asyncio.to_thread(_git, dest, "checkout", "--quiet", "--detach", target, env=env)
                if checkout.returncode != 0:
                    raise RepoCheckoutFailed(f"cannot check out {target!r}: {checkout.stderr.strip()[:300]}",
                                             url=url, ref=target)
        if result.exit_code != 0:
            detail = result.error or " | ".join(result.tail[-3:])
            raise RepoCheckoutFailed(f"git clone of {url} failed: {detail[:400]}", url=url)
        head = await asyncio.to_thread(_git, dest, "rev-parse", "HEAD", env=env)
        if head.returncode != 0:
            raise RepoCheckoutFailed(f"the clone of {url} has no HEAD", url=url)
        return str(head.stdout.strip())

    async def _ensure_checkout(self, prepared: Prepared) -> None:
        """A retried step on another host (or after cleanup) gets the same commit checked out again."""
        if prepared.checkout is None or await asyncio.to_thread((Path(prepared.repo_dir) / ".git").exists):
            return
        workspace = Path(prepared.workspace)
        await self._clone(prepared.checkout.url, None, Path(prepared.repo_dir), workspace,
                          commit=prepared.checkout.commit)

    # -- environment of a step

    @staticmethod
    def _tmp(prepared: Prepared) -> Path:
        """TMPDIR of the steps: the sandbox's private /tmp, else a short per-run directory (deep paths break
        AF_UNIX sockets, which tools such as mypy's parallel workers create under TMPDIR)."""
        if prepared.sandbox.enabled:
            return Path("/tmp")
        return short_tmp(prepared.workspace)

    def _path_prefix(self, plan: Plan, repo: Path) -> tuple[str, ...]:
        return tuple(p if p.startswith("/") else str(repo / p) for p in plan.path_prefix)

    def _paths(self, prepared: Prepared, install: bool) -> StepPaths:
        ws = Path(prepared.workspace)
        repo = Path(prepared.repo_dir)
        return StepPaths(
            home=str(ws / "home"), tmp=str(self._tmp(prepared)), path_prefix=self._path_prefix(prepared.plan, repo),
            venv=prepared.plan.env_dir, pip_cache=str(self.cache / "pip"),
            npm_cache=str(self.cache / "npm"), config_files=self._user_config_files() if install else {},
        )

    def _sandbox_spec(self, prepared: Prepared, install: bool, network: bool) -> SandboxSpec:
        home = Path.home()
        config_files = set(self._user_config_files().values()) if install else set()
        hidden_dirs = [str(self.settings.home.resolve())]
        artifact_root = self.settings.artifact_root.resolve()
        if not _relative_under(artifact_root, self.settings.home):
            hidden_dirs.append(str(artifact_root))
        hidden_dirs += [str(home / d) for d in SECRET_DIRS if (home / d).is_dir()]
        hidden_files = [str(home / f) for f in SECRET_FILES
                        if (home / f).is_file() and str(home / f) not in config_files]
        dotenv = Path(".env").resolve()
        if dotenv.is_file():
            hidden_files.append(str(dotenv))
        env_dir = prepared.plan.env_dir
        # the interpreter steps use to make environments must stay visible, wherever it is installed
        # (a checkout under /tmp would otherwise vanish behind the sandbox's empty /tmp)
        readonly: list[str] = sorted({str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix)
                                      if Path(p).resolve() != Path("/")})
        writable: list[str] = []
        if install:
            writable = [str(self.cache / "pip"), str(self.cache / "npm")]
            if env_dir:
                writable.insert(0, env_dir)
        elif env_dir and Path(env_dir).is_dir():
            readonly.append(env_dir)
        return SandboxSpec(repo=prepared.repo_dir, workspace=prepared.workspace, hidden_dirs=hidden_dirs,
                           hidden_files=hidden_files, readonly=readonly, writable=writable, network=network)

    async def _execute(self, req: StepInput, spec: StepSpec, install: bool) -> StepResult:
        """Run a step's commands in turn (sandboxed when possible), store its log, say how it went."""
        prepared = req.prepared
        ws = Path(prepared.workspace)
        repo = Path(prepared.repo_dir)
        dirs = [ws / sub for sub in ("home", "logs", "steps", "dist")]
        if not prepared.sandbox.enabled:
            dirs.append(self._tmp(prepared))
        if install:
            dirs += [self.cache / "pip", self.cache / "npm"]
            if prepared.plan.env_dir:
                dirs.append(Path(prepared.plan.env_dir))
        await asyncio.to_thread(_fresh_dirs, remove=None, create=dirs)
        pidfile = ws / "steps" / f"{spec.name.value}.pid"
        await asyncio.to_thread(kill_stale, pidfile)
        env = step_env(os.environ, self._paths(prepared, install), install=install)
        sandbox = prepared.sandbox.enabled
        bwrap = shutil.which("bwrap") if sandbox else None
        log_path = ws / "logs" / f"{spec.name.value}.log"
        attempt = activity.info().attempt
        name = spec.name.value
        log.info("step_started", step=name, run_id=req.run_id, tenant_id=req.tenant_id, attempt=attempt,
                 sandboxed=sandbox)
        results: list[ProcessResult] = []
        cancelled = False

        def tick(progress: Progress) -> None:
            activity.heartbeat({"step": name, "elapsed": round(progress.elapsed, 1), "bytes": progress.output_bytes,
                                "last_line": progress.last_line})

        timeout = prepared.timeout_seconds
        with log_path.open("w", encoding="utf-8") as sink:
            sink.write(f"# jobforge verify step {name} (attempt {attempt})\n# cwd: {repo}\n"
                       f"# sandbox: {prepared.sandbox.tool if sandbox else 'none (' + prepared.sandbox.reason + ')'}\n")
            try:
                for argv in spec.commands():
                    sink.write(f"$ {normalise_command([shlex.join(argv)], '')}\n")
                    sink.flush()
                    full = (bwrap_argv(bwrap, argv, self._sandbox_spec(prepared, install, spec.network))
                            if bwrap else argv)
                    result = await run_process(full, cwd=repo, env=env, time_limit=timeout,
                                               kill_grace=prepared.kill_grace_seconds, sink=sink, on_tick=tick,
                                               pidfile=pidfile)
                    results.append(result)
                    timeout = max(1.0, timeout - result.duration)
                    if result.error:
                        sink.write(f"[jobforge: {result.error}]\n")
                    if result.exit_code != 0 or result.timed_out:
                        break
            except asyncio.CancelledError:
                cancelled = True
                sink.write("\n[jobforge: step cancelled; its process group was killed]\n")
        duration = sum(r.duration for r in results)
        ref: ArtifactRef | None = None
        store_log = self.artifacts.put_file(tenant_id=req.tenant_id, run_id=req.run_id, name=f"logs/{name}.log",
                                            kind="log", media_type="text/plain; charset=utf-8", src=log_path)
        if cancelled:
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.ensure_future(store_log))
            log.info("step_cancelled", step=name, run_id=req.run_id, tenant_id=req.tenant_id)
            metrics.verify_step_finished(name, "cancelled", duration)
            raise asyncio.CancelledError
        ref = await store_log
        last = results[-1] if results else None
        if last is None:
            status, reason, code = StepStatus.SKIPPED, "no command", None
        elif last.timed_out:
            status, code = StepStatus.TIMED_OUT, None
            reason = f"timed out after {prepared.timeout_seconds:g}s; its process group was killed"
        elif last.exit_code == 0:
            status, reason, code = StepStatus.PASSED, "", 0
        else:
            status, code = StepStatus.FAILED, last.exit_code
            reason = last.error or (f"killed by signal {last.signal}" if last.signal else f"exit code {code}")
        if last is not None and last.pipe_abandoned:
            reason = (reason + "; " if reason else "") + "a background process kept the output open"
        tail = last.tail if last is not None else []
        log.info("step_finished", step=name, run_id=req.run_id, tenant_id=req.tenant_id, status=status.value,
                 exit_code=code, duration=round(duration, 3))
        metrics.verify_step_finished(name, status.value, duration)
        return StepResult(name=spec.name, status=status, exit_code=code, duration_seconds=round(duration, 3),
                          command=spec.display, reason=reason, log=ref, tail=tail, attempt=attempt)

    # -- prepare

    @activity.defn(name="verify.prepare")
    async def prepare(self, req: PrepareInput) -> Prepared:
        """Locate (or clone) the repository, plan its steps, fingerprint it and look the fingerprint up."""
        started = time.monotonic()
        try:
            prepared = await self._prepare(req)
        except JobForgeError as err:
            log.warning("verify_refused", error_code=err.code, error=err.message, run_id=req.run_id,
                        tenant_id=req.tenant_id)
            raise to_application_error(err) from None
        if prepared.cached is not None:
            # the cached verdict's duration is how long answering it took, measured here so that the
            # recorded history (and a replay dry run answered from it) carries it
            answered = prepared.cached.model_copy(update={"duration_seconds": round(time.monotonic() - started, 3)})
            prepared = prepared.model_copy(update={"cached": answered})
        return prepared

    async def _prepare(self, req: PrepareInput) -> Prepared:
        inputs = req.inputs
        settings = self.settings
        ws = self.workspace(req.tenant_id, req.run_id)
        ws.mkdir(parents=True, exist_ok=True)
        sandbox = probe_sandbox(settings.verify_sandbox)
        if settings.verify_sandbox == "required" and not sandbox.enabled:
            raise SandboxUnavailable(f"JOBFORGE_VERIFY_SANDBOX=required, but {sandbox.reason}")
        checkout: CheckoutSpec | None = None
        if inputs.repo_path is not None:
            repo = await asyncio.to_thread(check_repo_path, inputs.repo_path, settings.verify_allowed_roots)
            identity = str(repo)
        else:
            assert inputs.repo_url is not None
            repo = ws / "repo"
            commit = await self._clone(inputs.repo_url, inputs.ref, repo, ws)
            checkout = CheckoutSpec(url=inputs.repo_url, commit=commit)
            identity = inputs.repo_url
        activity.heartbeat({"phase": "detect"})
        facts = await asyncio.to_thread(read_facts, repo)
        options = inputs.options
        env_dir = self.env_dir(req.tenant_id, identity)
        request = detect.Request(pack=inputs.pack, selected=tuple(options.steps) if options.steps is not None else None,
                                 install=options.install, timeout_minutes=options.timeout_minutes,
                                 env_dir=str(env_dir), dist_dir=str(ws / "dist"))
        plan = detect.plan(facts, request, self._host())
        lockfiles = await asyncio.to_thread(dependency_hashes, repo, plan)
        install_key = "sha256:" + sha256_hex(canonical_json({
            "files": lockfiles, "commands": [normalise_command(a, str(ws)) for a in plan.install.commands()],
        }))
        plan = plan.model_copy(update={"install_key": install_key})
        activity.heartbeat({"phase": "fingerprint"})
        code = await asyncio.to_thread(code_state, repo)
        selected = [s.value for s in options.steps] if options.steps is not None else None
        parts = fingerprint_parts(code, lockfiles, plan, str(ws), inputs.pack.value, selected)
        paths = StepPaths(home=str(ws / "home"), tmp=str(ws / "tmp"), path_prefix=self._path_prefix(plan, repo))
        path = step_env(os.environ, paths, install=False)["PATH"]
        versions = await asyncio.to_thread(tool_versions, plan, repo, path)
        fingerprint = compose(parts, versions)
        prepared = Prepared(
            repo_dir=str(repo), workspace=str(ws), checkout=checkout, plan=plan, fingerprint=fingerprint,
            fingerprint_parts=parts, tool_versions=versions, sandbox=sandbox,
            heartbeat_timeout_seconds=settings.verify_heartbeat_timeout_seconds,
            kill_grace_seconds=settings.verify_kill_grace_seconds, timeout_seconds=plan.timeout_minutes * 60,
        )
        up_to_date = self._install_up_to_date(req.tenant_id, prepared)
        cached = None
        if not options.no_cache and up_to_date:
            hit = await self._cached_report(req, prepared)
            if hit is not None:  # answered at once: finalised here, no further activity
                cached = await self._finalize(FinalizeInput(tenant_id=req.tenant_id, run_id=req.run_id,
                                                            workflow_id=req.workflow_id, report=hit, workspace=str(ws)))
        log.info("verify_prepared", run_id=req.run_id, tenant_id=req.tenant_id, toolchain=plan.toolchain.value,
                 plan=plan.source, fingerprint=fingerprint, cached=cached is not None, sandboxed=sandbox.enabled)
        return prepared.model_copy(update={"cached": cached,
                                           "install_needed": plan.install.runnable and not up_to_date})

    def _identity(self, prepared: Prepared) -> str:
        return prepared.checkout.url if prepared.checkout is not None else prepared.repo_dir

    def _install_up_to_date(self, tenant_id: str, prepared: Prepared) -> bool:
        plan = prepared.plan
        if not plan.install.runnable:
            return True
        try:
            stamp = orjson.loads(self.stamp_file(tenant_id, self._identity(prepared)).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return False
        if stamp.get("install_key") != plan.install_key:
            return False
        if plan.env_dir and not (Path(plan.env_dir) / "bin" / "python").exists():
            return False
        if plan.toolchain is Toolchain.NODE and not (Path(prepared.repo_dir) / "node_modules").is_dir():
            return False
        # a clone lives in its run's workspace: what was installed from (or into) an earlier clone is stale
        return prepared.checkout is None or stamp.get("repo_dir") == prepared.repo_dir

    async def _cached_report(self, req: PrepareInput, prepared: Prepared) -> VerifyReport | None:
        entry = await self.store.get_verify_cache(req.tenant_id, prepared.fingerprint)
        if entry is None or entry.verdict != "passed":
            return None
        previous = VerifyReport.model_validate(entry.report)
        log.info("verify_cache_hit", run_id=req.run_id, tenant_id=req.tenant_id, fingerprint=prepared.fingerprint,
                 cached_from=entry.run_id)
        return previous.model_copy(update={
            "cached": True, "cached_from_run_id": entry.run_id, "run_id": req.run_id, "tenant_id": req.tenant_id,
            "source": req.inputs.source, "sandbox": prepared.sandbox, "manifest": None, "duration_seconds": 0.0,
            "artifacts": [a for a in previous.artifacts if a.kind == "log"],
        })

    # -- install

    @activity.defn(name="verify.install")
    async def install(self, req: StepInput) -> InstallResult:
        """Install the repository's dependencies into its environment, unless its install key is unchanged."""
        prepared = req.prepared
        plan = prepared.plan
        try:
            await self._ensure_checkout(prepared)
        except JobForgeError as err:
            raise to_application_error(err) from None
        repo = Path(prepared.repo_dir)
        path = step_env(os.environ, self._paths(prepared, False), install=False)["PATH"]
        spec = plan.install
        if not spec.runnable:
            result = StepResult(name=StepName.INSTALL, status=StepStatus.SKIPPED, reason=spec.reason)
            return InstallResult(result=result, tool_versions=await asyncio.to_thread(tool_versions, plan, repo, path))
        lock_path = self.base / "locks" / f"{self.repo_key(req.tenant_id, self._identity(prepared))}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as lock:
            while True:  # one install per environment at a time; heartbeat while waiting
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    activity.heartbeat({"step": "install", "waiting": "another run installs this environment"})
                    await asyncio.sleep(0.5)
            if self._install_up_to_date(req.tenant_id, prepared):
                result = StepResult(name=StepName.INSTALL, status=StepStatus.SKIPPED, command=spec.display,
                                    reason=f"environment up to date (install key {plan.install_key[:19]}…)")
            else:
                result = await self._execute(req, spec, install=True)
                if result.status is StepStatus.PASSED:
                    stamp = self.stamp_file(req.tenant_id, self._identity(prepared))
                    stamp.parent.mkdir(parents=True, exist_ok=True)
                    stamp.write_bytes(orjson.dumps({"install_key": plan.install_key, "repo_dir": prepared.repo_dir,
                                                    "env_dir": plan.env_dir, "run_id": req.run_id}))
        versions = await asyncio.to_thread(tool_versions, plan, repo, path)
        return InstallResult(result=result, tool_versions=versions)

    # -- steps

    @activity.defn(name="verify.run_step")
    async def run_step(self, req: StepInput) -> StepResult:
        """Run one check step (lint, typecheck, build or test) and store its log."""
        spec = req.prepared.plan.step(req.step)
        if not spec.runnable:
            return StepResult(name=req.step, status=StepStatus.SKIPPED, reason=spec.reason)
        try:
            await self._ensure_checkout(req.prepared)
        except JobForgeError as err:
            raise to_application_error(err) from None
        return await self._execute(req, spec, install=False)

    # -- finalize

    @activity.defn(name="verify.finalize")
    async def finalize(self, req: FinalizeInput) -> VerifyReport:
        """Write report.json (and the manifest when JOBFORGE_MANIFESTS_ENABLED), cache a pass, clean up."""
        return await self._finalize(req)

    async def _finalize(self, req: FinalizeInput) -> VerifyReport:
        report = req.report
        logs = [a for a in report.artifacts if a.kind == "log"]
        snapshot = report.model_copy(update={"artifacts": logs})
        report_ref = await self.artifacts.put_bytes(
            tenant_id=req.tenant_id, run_id=req.run_id, name="report.json", kind="report",
            media_type="application/json", data=canonical_json(snapshot.model_dump(mode="json")) + b"\n")
        artifacts = [*logs, report_ref]
        if await self.flags.is_enabled(Flag.MANIFESTS):
            records = await self.store.list_artifacts(req.tenant_id, req.run_id)
            manifest = build_manifest(
                tenant_id=req.tenant_id, run_id=req.run_id, workflow_id=req.workflow_id,
                template_key=report.template_key, run_status=RunStatus.SUCCEEDED.value, artifacts=records,
                extra={"verdict": report.verdict.value, "cached": report.cached, "fingerprint": report.fingerprint})
            ref = await self.artifacts.put_bytes(tenant_id=req.tenant_id, run_id=req.run_id, name=MANIFEST_NAME,
                                                 kind="manifest", media_type="application/json",
                                                 data=manifest_bytes(manifest))
            info = ManifestInfo(status="written", artifact=ref)
            artifacts.append(ref)
        else:
            info = ManifestInfo(status="skipped", reason=f"{Flag.MANIFESTS.value} is off")
        if report.passed and not report.cached and report.fingerprint:
            await self.store.put_verify_cache(tenant_id=req.tenant_id, fingerprint=report.fingerprint,
                                              verdict=report.verdict.value, report=snapshot.model_dump(mode="json"),
                                              run_id=req.run_id)
        if req.workspace:
            workspace = Path(req.workspace)
            if workspace.is_relative_to(self.base / "runs"):
                await asyncio.to_thread(shutil.rmtree, workspace, True)
                await asyncio.to_thread(shutil.rmtree, short_tmp(req.workspace), True)
        log.info("verify_finished", run_id=req.run_id, tenant_id=req.tenant_id, verdict=report.verdict.value,
                 cached=report.cached, manifest=info.status)
        return report.model_copy(update={"artifacts": artifacts, "manifest": info})
