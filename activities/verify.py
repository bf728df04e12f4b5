"""Activities of ``autopilot.readylayer.verify_pack``: check out, plan, provision, install, run steps,
write artifacts.

Every decision is made by :mod:`shared.verify` (detection, path checks, fingerprint, environment,
sandbox command line, verdict); this module reads the repository, provisions toolchains
(:mod:`activities.toolchains`), runs processes and persists.

The repository is never written: each run works in its own copy (``tree/``), as a CI runner works
in a fresh clone, and builds its environments there and in its workspace. On disk, under
``<home>/verify``:

* ``runs/<tenant>/<run_id>/`` the run's workspace: ``tree/`` (the copy, or the clone of a URL),
  ``env/`` (its Python environment), ``home/`` and ``tmp/`` of the steps, ``dist/`` of the build,
  ``logs/``, ``steps/`` pid files; moved to ``trash/`` when the run is finalised and deleted there in the
  background (logs live on in the artifact store);
* ``stamps/<tenant>/<repo key>.json`` what the last successful install of a repository installed
  (tool versions), so a cached verdict can be found before installing again.

Under the verify cache (``JOBFORGE_VERIFY_CACHE_DIR``, default ``<home>/verify/cache``; a shared volume
in production): ``toolchains/`` (provisioned by JobForge, read-only to steps) and
``tenants/<tenant>/`` download caches (uv, npm, pnpm store, yarn, pre-commit, pip) written by that
tenant's installs only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog
from temporalio import activity

from activities.artifacts import ArtifactStore
from activities.envcache import EnvCache
from activities.process import ProcessResult, Progress, kill_stale, run_process
from activities.toolchains import Toolchains, uv_binary
from jobforge.errors import (
    JobForgeError,
    RepoCheckoutFailed,
    RepoPathRefused,
    SandboxUnavailable,
    ToolchainUnavailable,
)
from jobforge.models import RunStatus
from shared import metrics
from shared.canonical import canonical_json
from shared.flags import Flag, FlagReader
from shared.manifest import MANIFEST_NAME, build_manifest, manifest_bytes
from shared.settings import Settings
from shared.store import Store
from shared.temporal import to_application_error
from shared.verify import detect, envcache, pins
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
    Snapshot,
    SnapshotInput,
    StepInput,
    StepName,
    StepResult,
    StepSpec,
    StepStatus,
    Toolchain,
    VerifyReport,
)
from shared.verify.node import npm_tree_mismatch
from shared.verify.paths import check_repo_path, file_url_path
from shared.verify.sandbox import (
    SECRET_DIRS,
    SECRET_FILES,
    SandboxSpec,
    bwrap_argv,
    probe_failure_reason,
    visible,
)
from shared.verify.verdict import install_failure, interpreter_shortfall, transient_failure

log = structlog.get_logger("jobforge.activities.verify")

GIT_TIMEOUT = 60.0
CLONE_TIMEOUT = 600.0
MAX_CONFIG_BYTES = 1 << 20
MAX_LOCK_BYTES = 16 << 20
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
#: never copied into a run's tree: environments and caches of the checkout (a fresh clone has none)
COPY_SKIPPED = frozenset({".git", "node_modules", ".venv", "venv", ".tox", ".nox", "__pycache__", ".pytest_cache",
                          ".mypy_cache", ".ruff_cache", ".jobforge-verify", ".yarn/install-state.gz"})
_GIT_IDENTITY = {"GIT_AUTHOR_NAME": "jobforge", "GIT_AUTHOR_EMAIL": "verify@jobforge.invalid",
                 "GIT_COMMITTER_NAME": "jobforge", "GIT_COMMITTER_EMAIL": "verify@jobforge.invalid"}

#: probe results by the bubblewrap they are for (its path on PATH; "" when PATH has none)
_sandbox_probe: dict[str, SandboxInfo] = {}
_T = TypeVar("_T")


# -- helpers (I/O) ------------------------------------------------------------------------------------


def in_container(root: Path = Path("/"), environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this worker runs inside a container (docker, podman, kubernetes); ``root`` and ``environ``
    are the filesystem and environment to look at (tests give their own)."""
    if (root / ".dockerenv").exists() or (root / "run/.containerenv").exists() or environ.get("container"):
        return True
    if environ.get("KUBERNETES_SERVICE_HOST"):  # in every pod; under cgroup v2 /proc/1/cgroup names no runtime
        return True
    with contextlib.suppress(OSError):
        text = (root / "proc/1/cgroup").read_text()
        if any(word in text for word in ("docker", "kubepods", "containerd", "libpod")):
            return True
    with contextlib.suppress(OSError):  # a root filesystem assembled from image layers
        for line in (root / "proc/1/mountinfo").read_text().splitlines():
            fields, _, fs = line.partition(" - ")
            if len(fields.split()) > 4 and fields.split()[4] == "/":
                return fs.startswith("overlay ")
    return False


def probe_sandbox(mode: str) -> SandboxInfo:
    """Whether steps can run under bubblewrap here (probed once per process for each ``bwrap`` that PATH
    names: the steps run the one PATH names when they start, so a result is only reused for that one)."""
    if mode == "off":
        return SandboxInfo(enabled=False, reason="turned off (JOBFORGE_VERIFY_SANDBOX=off)")
    path = shutil.which("bwrap")
    if (path or "") in _sandbox_probe:
        return _sandbox_probe[path or ""]
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
                reason = probe_failure_reason(probe.stderr.decode(errors="replace"), in_container())
                info = SandboxInfo(enabled=False, reason=reason)
                log.warning("sandbox_unavailable", reason=reason)
    _sandbox_probe[path or ""] = info
    return info


def _read_text(path: Path, limit: int) -> str | None:
    with contextlib.suppress(OSError), path.open("rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")
    return None


def read_facts(repo: Path) -> detect.RepoFacts:
    """The files detection looks at (config files that resolve outside the repository are ignored)."""
    files: dict[str, str] = {}
    for name in (*detect.CONFIG_FILES, *detect.HEAD_FILES):
        path = repo / name
        try:
            if not path.is_file() or not path.resolve().is_relative_to(repo):
                continue
        except OSError:
            continue
        limit = 4096 if name in detect.HEAD_FILES else (MAX_LOCK_BYTES if name.endswith(".lock") else MAX_CONFIG_BYTES)
        text = _read_text(path, limit)
        if text is not None:
            files[name] = text
    present = frozenset(p for p in detect.PROBED_PATHS if (repo / p).exists())
    entries = frozenset(os.listdir(repo))
    packages = tuple(sorted(
        name for name in entries
        if name not in ("tests", "test") and not name.startswith(".") and (repo / name / "__init__.py").is_file()))
    release = pins.yarn_path(files.get(".yarnrc.yml", ""))
    with contextlib.suppress(OSError, ValueError):
        if not (release and (repo / release).is_file() and (repo / release).resolve().is_relative_to(repo.resolve())):
            release = ""
    return detect.RepoFacts(files=files, present=present, root_entries=entries, python_packages=packages,
                            yarn_release=release)


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


# -- the run's copy of the repository ----------------------------------------------------------------


def _listed_files(source: Path) -> list[str] | None:
    """Tracked and untracked-but-not-ignored files under ``source`` (None when it is no git work tree)."""
    inside = _git(source, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    listed = _git(source, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
    if listed.returncode != 0:
        return None
    return sorted({name for name in listed.stdout.split("\0") if name})


def _walk_files(source: Path) -> list[str]:
    out: list[str] = []
    for root, dirs, names in os.walk(source):
        relative_root = Path(root).relative_to(source)
        dirs[:] = [d for d in dirs if d not in COPY_SKIPPED and not (relative_root == Path(".") and d in (
            "build", "dist"))]
        dirs.sort()
        out += [(relative_root / n).as_posix() for n in sorted(names)]
    return out


def _copy_entries(source: Path, tree: Path, names: list[str]) -> None:
    for name in names:
        parts = Path(name).parts
        if any(part in COPY_SKIPPED for part in parts):
            continue
        src = source / name
        dst = tree / name
        try:
            if src.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(src), dst)
            elif src.is_dir():  # a submodule (git lists it as one entry)
                shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".git"), dirs_exist_ok=True)
            elif src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        except FileExistsError:
            continue


def make_tree(source: Path, tree: Path, env_dir: str, keep_environments: bool) -> None:
    """The run's own copy of ``source`` at ``tree``: what a fresh clone with the working changes would hold.

    A git work tree is cloned with ``--shared`` (objects borrowed read-only, history and tags intact)
    and overlaid with the tracked and untracked-but-not-ignored files as they are in the checkout,
    all added to the copy's index; any other directory is copied (environments and caches left out)
    into a new repository with one commit, so tools that need git (pre-commit) find one.
    ``.venv`` in the copy points at the run's environment.
    """
    if tree.exists():
        shutil.rmtree(tree)
    env = {**_git_env(), **_GIT_IDENTITY}
    listed = _listed_files(source)
    toplevel = _git(source, "rev-parse", "--show-toplevel").stdout.strip() if listed is not None else ""
    cloned = False
    if listed is not None and toplevel and Path(toplevel).resolve() == source.resolve():
        done = subprocess.run(["git", "-c", "safe.directory=*", "clone", "--quiet", "--shared", "--no-checkout",
                               "--", str(source), str(tree)], capture_output=True, text=True, timeout=CLONE_TIMEOUT,
                              check=False, env=env, stdin=subprocess.DEVNULL)
        cloned = done.returncode == 0
        if not cloned and tree.exists():
            shutil.rmtree(tree)
    tree.mkdir(parents=True, exist_ok=True)
    _copy_entries(source, tree, listed if listed is not None else _walk_files(source))
    if cloned:
        _git(tree, "add", "-A", env=env)
    else:
        for args in (("init", "-q"), ("add", "-A"), ("commit", "-q", "--no-verify", "--allow-empty", "-m",
                                                     "jobforge verify: the repository as given")):
            _git(tree, *args, env=env)
    exclude = tree / ".git" / "info" / "exclude"
    with contextlib.suppress(OSError):
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a") as handle:
            handle.write("\n.venv\nnode_modules\n")
    if keep_environments:  # options.install off: the checkout's own environments, as they are
        for name in (".venv", "node_modules"):
            if (source / name).is_dir() and not (tree / name).exists():
                (tree / name).symlink_to(source / name)
    elif env_dir and not (tree / ".venv").exists():
        (tree / ".venv").symlink_to(env_dir)


# -- tool versions ------------------------------------------------------------------------------------


def _exe_identity(path: str) -> str:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return "missing"
    return f"{real}:{st.st_size}:{st.st_mtime_ns}"


def base_versions(plan: Plan, host_node: str, uv_version: str, interpreters: Mapping[str, str],
                  host_npm: str = "") -> dict[str, str]:
    """The toolchains a plan runs with, known before anything is installed (the worker's own npm, for a Node
    plan that installs with it: another npm may lay out node_modules differently)."""
    out: dict[str, str] = {f"tool:{t.name}": t.version for t in plan.provisioned}
    if plan.toolchain is Toolchain.NODE and plan.package_manager.split("@")[0] == "npm" and "tool:npm" not in out:
        out["npm"] = host_npm or "missing"
    if plan.interpreter:
        out["python"] = interpreters.get(plan.interpreter, plan.interpreter)
    if plan.toolchain is Toolchain.PYTHON:
        out["uv"] = uv_version
    if plan.toolchain is Toolchain.NODE or any(t.name.startswith("node-") for t in plan.provisioned):
        out["node"] = next((t.version for t in plan.provisioned if t.name.startswith("node-")), host_node) or "missing"
    for step in plan.steps:
        if step.runnable and step.argv[0] in ("make", "git", "/bin/sh"):
            found = shutil.which(step.argv[0])
            out[f"exe:{step.argv[0]}"] = _exe_identity(found) if found else "missing"
    return out


def installed_versions(plan: Plan, tree: Path) -> dict[str, str]:
    """What ``install`` put in place: the environment's packages, node_modules' own lock."""
    out: dict[str, str] = {}
    if plan.env_dir:
        dists = sorted(p.name for p in Path(plan.env_dir).glob("lib/python*/site-packages/*.dist-info"))
        out["packages"] = "sha256:" + sha256_hex("\n".join(dists).encode())
    for lock in ("node_modules/.package-lock.json", "node_modules/.modules.yaml", "node_modules/.yarn-state.yml",
                 ".pnp.cjs"):
        if (tree / lock).is_file():
            out["node_modules"] = "sha256:" + _file_digest(tree / lock)
    return out


def node_modules_dirs(tree: Path, depth: int = 6) -> list[envcache.EnvDir]:
    """The ``node_modules`` directories a Node install left in ``tree`` (the root's and each workspace package's;
    none inside another ``node_modules`` or a hidden directory), as environment-cache directories."""
    out: list[envcache.EnvDir] = []
    root = str(tree)
    for current, names, _files in os.walk(root):
        relative = os.path.relpath(current, root)
        level = 0 if relative == "." else relative.count("/") + 1
        for name in names:
            here = name if relative == "." else f"{relative}/{name}"
            if envcache.is_tree_dir(here) and not os.path.islink(os.path.join(current, name)):
                out.append(envcache.EnvDir(envcache.tree_dir_name(here), os.path.join(current, name)))
        names[:] = [] if level >= depth else [n for n in names if n != "node_modules" and not n.startswith(".")
                                              and not os.path.islink(os.path.join(current, n))]
    return sorted(out, key=lambda d: d.name)


def npm_restored_mismatch(tree: Path) -> str:
    """Why the ``node_modules`` restored into ``tree`` is not what ``npm ci`` installs from its lockfile ("" when
    it is): npm's hidden lockfile (``node_modules/.package-lock.json``) against the repository's."""
    lockfile = next((tree / n for n in ("npm-shrinkwrap.json", "package-lock.json") if (tree / n).is_file()), None)
    if lockfile is None:
        return "the repository has no package-lock.json"
    try:
        locked = orjson.loads(lockfile.read_bytes())
        hidden = orjson.loads((tree / "node_modules" / ".package-lock.json").read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return f"npm's record of node_modules cannot be read: {exc}"
    if not isinstance(locked, dict) or not isinstance(hidden, dict):
        return "a lockfile that is not a JSON object"
    mismatch = npm_tree_mismatch(locked, hidden)
    return f"node_modules does not match {lockfile.name}: {mismatch}" if mismatch else ""


def short_tmp(workspace: str) -> Path:
    """A short, per-run temporary directory for unsandboxed steps."""
    return Path(tempfile.gettempdir()) / f"jobforge-{sha256_hex(workspace.encode())[:12]}"


def _fresh_dirs(remove: Path | None, create: list[Path]) -> None:
    if remove is not None and remove.exists():
        shutil.rmtree(remove)
    for path in create:
        path.mkdir(parents=True, exist_ok=True)


#: environments a run builds inside its tree (tox's and nox's): a step's own copy of the tree links to them
#: instead of copying hundreds of megabytes
SHARED_ENV_DIRS = (".tox", ".nox")


def step_tree(tree: Path, dest: Path) -> Path:
    """A copy of the run's tree for one step (``StepSpec.own_tree``); node_modules and the tox / nox
    environments are shared, not copied."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    top = set(SHARED_ENV_DIRS)
    shutil.copytree(tree, dest, symlinks=True,
                    ignore=lambda d, names: {"node_modules"} | (top & set(names) if Path(d) == tree else set()))
    for name in SHARED_ENV_DIRS:
        if (tree / name).is_dir() and not (dest / name).exists():
            (dest / name).symlink_to(tree / name)
    for modules in tree.rglob("node_modules"):
        relative = modules.relative_to(tree)
        if modules.is_dir() and not modules.is_symlink() and "node_modules" not in relative.parts[:-1]:
            target = dest / relative
            if target.parent.is_dir() and not target.exists():
                target.symlink_to(modules)
    return dest


def snapshot_dir(workspace: str) -> Path:
    """Where a run's snapshot lanes run (``Plan.lanes``): inside its workspace, deleted with it."""
    return Path(workspace) / "snapshot"


#: directories of the run's tree that a snapshot links to instead of copying (besides every ``node_modules``): what
#: install or the clone put there, large, and not the checks' to write
SNAPSHOT_LINKED = (".git/objects", ".yarn/cache", ".yarn/unplugged")


def snapshot_tree(tree: Path, dest: Path) -> tuple[int, list[str]]:
    """A copy of ``tree`` at ``dest`` as it is now, except that each ``node_modules`` directory (and the git objects,
    yarn's cache and unplugged packages) is a symbolic link to the tree's own: the sources are copied (with their
    times, which incremental tools compare), the installed packages are not. Made aside and renamed into place, so
    a copy cut short is never taken for a whole one. Returns the number of files copied and the directories linked
    (absolute paths in ``tree``)."""
    partial = dest.with_name(dest.name + ".partial")
    for stale in (dest, partial):
        if stale.is_symlink() or stale.is_file():
            stale.unlink()
        elif stale.exists():
            shutil.rmtree(stale)
    root = str(tree)
    top = {str(tree / name) for name in SNAPSHOT_LINKED}
    files = 0
    linked: list[str] = []
    for current, dirs, names in os.walk(root):
        relative = os.path.relpath(current, root)
        target = partial if relative == "." else partial / relative
        target.mkdir(parents=True, exist_ok=True)
        descend: list[str] = []
        for name in sorted(dirs):
            src = os.path.join(current, name)
            if os.path.islink(src):
                os.symlink(os.readlink(src), target / name)
                files += 1
            elif name == "node_modules" or src in top:
                os.symlink(src, target / name)
                linked.append(src)
            else:
                descend.append(name)
        dirs[:] = descend
        for name in names:
            src = os.path.join(current, name)
            if os.path.islink(src):
                os.symlink(os.readlink(src), target / name)
            elif os.path.isfile(src):  # not sockets or fifos a tool left behind
                shutil.copy2(src, target / name)
            else:
                continue
            files += 1
    partial.rename(dest)
    return files, linked


def snapshot_links(snapshot: Path, tree: Path) -> list[str]:
    """The directories of ``tree`` that ``snapshot`` links to (see :func:`snapshot_tree`)."""
    out: list[str] = []
    root = str(tree)
    for current, dirs, _names in os.walk(snapshot):
        for name in dirs:
            path = os.path.join(current, name)
            if os.path.islink(path):
                target = os.readlink(path)
                if os.path.isabs(target) and os.path.commonpath([target, root]) == root and os.path.isdir(target):
                    out.append(target)
    return sorted(out)


#: where tools write inside ``node_modules`` while checking: caches (``find-cache-dir``: prettier ``--cache``, babel,
#: eslint plugins) and ``.tmp`` (the ``tsBuildInfoFile`` of create-vite's tsconfigs, which ``tsc -b`` writes)
NODE_MODULES_SCRATCH = (".cache", ".tmp")


def snapshot_guard(snapshot: Path, tree: Path) -> tuple[list[str], list[str]]:
    """What a sandboxed step in ``snapshot`` sees read-only, and the empty writable directories mounted inside
    those: the tree's directories the snapshot links to (but its git objects, which git only adds to), and
    each linked ``node_modules``' scratch directories (``NODE_MODULES_SCRATCH``), so that a tool writing there
    still works."""
    frozen = [p for p in snapshot_links(snapshot, tree) if not p.endswith("/.git/objects")]
    scratch = [f"{p}/{name}" for p in frozen if p.endswith("/node_modules") for name in NODE_MODULES_SCRATCH
               if os.path.isdir(f"{p}/{name}")]
    return frozen, scratch


def _scratch_mount_points(linked: list[str]) -> None:
    for path in linked:
        if path.endswith("/node_modules"):
            for name in NODE_MODULES_SCRATCH:
                os.makedirs(os.path.join(path, name), exist_ok=True)


def _workspace_locked(workspace: str, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` holding the run's environment lock: two attempts of one install (a retry started while the
    first still copies) never restore or store the run's environments at once."""
    lock = Path(workspace) / "steps" / "environments.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            return fn(*args)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_from(path: Path, offset: int, limit: int = 4 << 20) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(limit).decode("utf-8", errors="replace")


_emptying = threading.Lock()


def _empty(trash: Path) -> None:
    """Delete what is in ``trash`` (one thread at a time; a second caller finds the work done or leaves it to
    the next call)."""
    if not _emptying.acquire(blocking=False):
        return
    try:
        with contextlib.suppress(OSError):
            for entry in list(trash.iterdir()):
                shutil.rmtree(entry, ignore_errors=True)
    finally:
        _emptying.release()


def _relative_under(path: Path, parent: Path) -> bool:
    try:
        return path.resolve().is_relative_to(parent.resolve())
    except OSError:
        return False


def _write_files(files: Mapping[str, str], workspace: Path) -> None:
    for name, text in files.items():
        path = Path(name)
        if path.is_absolute() and path.resolve().is_relative_to(workspace.resolve()):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


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
        self.toolchains = Toolchains(self.cache / "toolchains")
        self.envs = EnvCache(self.cache / "envs", settings.verify_env_cache_max_mb << 20)
        self._warming: asyncio.Future[None] | None = None

    def warm(self) -> None:
        """Probe the host in the background now (bubblewrap; the versions of the worker's Pythons, node, npm
        and uv, which are kept per executable), so that a worker's first run does not wait for it: about 0.3 s,
        most of it ``npm --version``, which is a large part of a small repository's whole run. Called by the
        worker as it registers the activities; without a running event loop (a list built for a replay) there
        is no run to speed up and nothing is started."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._warming is None:
            self._warming = loop.run_in_executor(None, self._probe_host)

    def _probe_host(self) -> None:
        probe_sandbox(self.settings.verify_sandbox)
        self.toolchains.host()

    async def _warmed(self) -> None:
        """Wait for a warm-up still probing (its probes are the ones this run needs; a failed probe is simply
        made again by the run)."""
        if self._warming is not None and not self._warming.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._warming)

    # -- layout

    def workspace(self, tenant_id: str, run_id: str) -> Path:
        return self.base / "runs" / tenant_id / run_id

    def tenant_cache(self, tenant_id: str) -> Path:
        """Download caches written by this tenant's installs only (one tenant cannot poison another's)."""
        return self.cache / "tenants" / tenant_id

    def repo_key(self, tenant_id: str, identity: str) -> str:
        return sha256_hex(f"{tenant_id}\0{identity}".encode())[:20]

    def stamp_file(self, tenant_id: str, identity: str) -> Path:
        return self.base / "stamps" / tenant_id / f"{self.repo_key(tenant_id, identity)}.json"

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

    async def _ensure_tree(self, prepared: Prepared) -> None:
        """A retried step on another host (or after cleanup) gets the same code in its tree again."""
        tree = Path(prepared.repo_dir)
        if await asyncio.to_thread((tree / ".git").exists):
            return
        workspace = Path(prepared.workspace)
        if prepared.checkout is not None:
            await self._clone(prepared.checkout.url, None, tree, workspace, commit=prepared.checkout.commit)
        else:
            await asyncio.to_thread(make_tree, Path(prepared.source_dir), tree, prepared.plan.env_dir,
                                    not prepared.plan.install.runnable and prepared.plan.install.reason.startswith(
                                        "options.install is off"))
        await asyncio.to_thread(_write_files, prepared.plan.files, workspace)

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

    def _paths(self, prepared: Prepared, tenant_id: str, install: bool) -> StepPaths:
        ws = Path(prepared.workspace)
        repo = Path(prepared.repo_dir)
        cache = self.tenant_cache(tenant_id)
        return StepPaths(
            home=str(ws / "home"), tmp=str(self._tmp(prepared)), path_prefix=self._path_prefix(prepared.plan, repo),
            venv=prepared.plan.env_dir, pip_cache=str(cache / "pip"), npm_cache=str(cache / "npm"),
            config_files=self._user_config_files() if install else {},
            path_suffix=(str(self.toolchains.root / "interpreters" / "bin"),),
            uv_cache=str(cache / "uv"), pre_commit_home=str(cache / "pre-commit"),
        )

    def _env(self, prepared: Prepared, tenant_id: str, spec: StepSpec, install: bool) -> dict[str, str]:
        extra = {**prepared.plan.env, **spec.env}
        env = step_env(os.environ, self._paths(prepared, tenant_id, install), install=install, extra=extra)
        if install and "PIP_INDEX_URL" in env and not {"UV_INDEX_URL", "UV_DEFAULT_INDEX"} & set(env):
            env["UV_DEFAULT_INDEX"] = env["PIP_INDEX_URL"]  # uv reads its own variable, not pip's
        return env

    def _sandbox_spec(self, prepared: Prepared, tenant_id: str, install: bool, network: bool,
                      path: str, repo_dir: str = "") -> SandboxSpec:
        home = Path.home()
        config_files = set(self._user_config_files().values()) if install else set()
        hidden_dirs = [str(self.settings.home.resolve())]
        artifact_root = self.settings.artifact_root.resolve()
        if not _relative_under(artifact_root, self.settings.home):
            hidden_dirs.append(str(artifact_root))
        if not _relative_under(self.cache, self.settings.home):
            hidden_dirs.append(str(self.cache))  # other tenants' caches
        hidden_dirs += [str(home / d) for d in SECRET_DIRS if (home / d).is_dir()]
        hidden_files = [str(home / f) for f in SECRET_FILES
                        if (home / f).is_file() and str(home / f) not in config_files]
        dotenv = Path(".env").resolve()
        if dotenv.is_file():
            hidden_files.append(str(dotenv))
        # what the steps run must stay visible wherever the worker found it: JobForge's interpreter (and
        # the uv it ships), the provisioned toolchains, interpreters and every PATH entry that would vanish
        # behind a hidden directory or the sandbox's empty /tmp
        readonly: set[str] = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix)}
        readonly.add(str(Path(uv_binary()).resolve().parent))
        readonly.add(str(self.toolchains.root))
        for directory in path.split(":"):
            if not directory.startswith("/"):
                continue
            real = os.path.realpath(directory)
            if os.path.isdir(real) and (real.startswith("/tmp/") or any(
                    Path(real).is_relative_to(h) for h in hidden_dirs)):
                readonly.add(real)
        with contextlib.suppress(OSError):
            for link in (self.toolchains.root / "interpreters" / "bin").iterdir():
                readonly.add(str(Path(os.path.realpath(link)).parent.parent))
        readonly.discard("/")
        cache = self.tenant_cache(tenant_id)
        # the tenant's download caches: written by its installs, and by pre-commit and uv during its steps
        writable = [str(cache)]
        env_dir = prepared.plan.env_dir
        if env_dir:
            writable.insert(0, env_dir)
        readonly_list = sorted(r for r in readonly if not any(Path(r).is_relative_to(w) for w in writable))
        return SandboxSpec(repo=repo_dir or prepared.repo_dir, workspace=prepared.workspace, hidden_dirs=hidden_dirs,
                           hidden_files=hidden_files, readonly=readonly_list, writable=writable, network=network)

    def _missing_tool(self, spec: StepSpec, env: Mapping[str, str], cwd: Path,
                      sandbox: SandboxSpec | None) -> str:
        """Why a command of the step cannot start here ("" when each can)."""
        for argv in spec.commands():
            head = argv[0]
            if head.startswith("/"):
                found: str | None = head if os.access(head, os.X_OK) else None
            else:
                found = shutil.which(head, path=env.get("PATH", ""))
            if found is None:
                return f"{head} is not installed on this worker (not on the step's PATH)"
            real = os.path.realpath(found if os.path.isabs(found) else cwd / found)
            if sandbox is not None and not visible(real, sandbox):
                return f"{head} ({real}) is hidden inside the sandbox"
        return ""

    async def _execute(self, req: StepInput, spec: StepSpec, install: bool, note: str = "") -> StepResult:
        """Run a step's commands in turn (sandboxed when possible), store its log, say how it went."""
        prepared = req.prepared
        ws = Path(prepared.workspace)
        repo = Path(prepared.repo_dir)
        cache = self.tenant_cache(req.tenant_id)
        dirs = [ws / sub for sub in ("home", "logs", "steps", "dist")]
        dirs += [cache / sub for sub in ("pip", "npm", "uv", "pre-commit")]
        if not prepared.sandbox.enabled:
            dirs.append(self._tmp(prepared))
        if prepared.plan.env_dir:
            dirs.append(Path(prepared.plan.env_dir))
        await asyncio.to_thread(_fresh_dirs, remove=None, create=dirs)
        base = repo
        frozen: tuple[list[str], list[str]] = ([], [])
        if req.tree:  # a snapshot lane's step: in the snapshot, the run's installed packages read-only
            base = repo = Path(req.tree)
            frozen = await asyncio.to_thread(snapshot_guard, repo, Path(prepared.repo_dir))
        if spec.own_tree:
            repo = await asyncio.to_thread(step_tree, repo, ws / "trees" / spec.name.value)
        pidfile = ws / "steps" / f"{spec.name.value}.pid"
        await asyncio.to_thread(kill_stale, pidfile)
        env = self._env(prepared, req.tenant_id, spec, install)
        sandbox = prepared.sandbox.enabled
        bwrap = shutil.which("bwrap") if sandbox else None
        box = self._sandbox_spec(prepared, req.tenant_id, install, spec.network, env["PATH"],
                                 str(repo)) if bwrap else None
        if box is not None and frozen[0]:
            box = dataclasses.replace(box, frozen=frozen[0], scratch=frozen[1])
        log_path = ws / "logs" / f"{spec.name.value}.log"
        attempt = activity.info().attempt
        name = spec.name.value
        missing = await asyncio.to_thread(self._missing_tool, spec, env, repo, box)
        if missing:
            log.warning("step_toolchain_missing", step=name, run_id=req.run_id, tenant_id=req.tenant_id,
                        reason=missing)
            metrics.verify_step_finished(name, StepStatus.ERROR.value, 0.0)
            return StepResult(name=spec.name, status=StepStatus.ERROR, command=spec.display, origin=spec.origin,
                              reason=f"the step could not start: {missing}", attempt=attempt)
        log.info("step_started", step=name, run_id=req.run_id, tenant_id=req.tenant_id, attempt=attempt,
                 sandboxed=sandbox)
        results: list[ProcessResult] = []
        cancelled = False

        def tick(progress: Progress) -> None:
            activity.heartbeat({"step": name, "elapsed": round(progress.elapsed, 1), "bytes": progress.output_bytes,
                                "last_line": progress.last_line})

        timeout = prepared.timeout_seconds
        machine = retried = ""  # the line saying the machine, not the code, failed the check (transient_failure)
        with log_path.open("w", encoding="utf-8") as sink:
            sink.write(f"# jobforge verify step {name} (attempt {attempt})\n# cwd: {repo}\n# origin: {spec.origin}\n"
                       f"# sandbox: {prepared.sandbox.tool if sandbox else 'none (' + prepared.sandbox.reason + ')'}\n"
                       + (f"# {note}\n" if note else ""))
            try:
                for round_ in (1, 2):
                    start = sink.tell()
                    for argv in spec.commands():
                        sink.write(f"$ {shlex.join(argv)}\n")
                        sink.flush()
                        full = bwrap_argv(bwrap, argv, box) if bwrap and box is not None else argv
                        result = await run_process(full, cwd=repo, env=env, time_limit=timeout,
                                                   kill_grace=prepared.kill_grace_seconds, sink=sink, on_tick=tick,
                                                   pidfile=pidfile)
                        results.append(result)
                        sink.write(f"# exit {result.exit_code} after {result.duration:.2f} s\n")
                        timeout = max(1.0, timeout - result.duration)
                        if result.error:
                            sink.write(f"[jobforge: {result.error}]\n")
                        if result.exit_code != 0 or result.timed_out:
                            break
                    last_run = results[-1] if results else None
                    if install or last_run is None or last_run.exit_code == 0 or last_run.timed_out:
                        break
                    sink.flush()
                    machine = transient_failure(await asyncio.to_thread(_read_from, log_path, start))
                    if not machine or round_ == 2:
                        break
                    # the machine failed the check, not the code (a tool's own worker pool did not start in
                    # time on a loaded worker): once more, as a CI re-run would; a second time is an error
                    retried = machine
                    sink.write(f"[jobforge: {machine}: the machine failed this check, not the code; "
                               "running the step once more]\n")
                    if spec.own_tree:
                        repo = await asyncio.to_thread(step_tree, base, ws / "trees" / spec.name.value)
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
            if install:  # the environment could not be built in time: not the repository's verdict
                status = StepStatus.ERROR
                reason = f"install timed out after {prepared.timeout_seconds:g}s; its process group was killed"
        elif last.exit_code == 0:
            status, code = StepStatus.PASSED, 0
            reason = f"passed when run once more after {retried!r} (the machine failed it, not the code)" if (
                retried) else ""
        else:
            status, code = StepStatus.FAILED, last.exit_code
            reason = last.error or (f"killed by signal {last.signal}" if last.signal else f"exit code {code}")
            if install:
                text = await asyncio.to_thread(_read_text, log_path, 4 << 20)
                status, reason = install_failure(text or "", reason)
            else:
                text = await asyncio.to_thread(_read_text, log_path, 4 << 20) or ""
                shortfall = interpreter_shortfall(text, spec.python, prepared.plan.declared_python)
                if shortfall:
                    status, reason = StepStatus.ERROR, f"{reason}: {shortfall}"
                elif machine:
                    status = StepStatus.ERROR
                    reason = f"{reason}: twice {machine!r}: the machine failed this check, not the code"
        if last is not None and last.pipe_abandoned:
            reason = (reason + "; " if reason else "") + "a background process kept the output open"
        tail = last.tail if last is not None else []
        log.info("step_finished", step=name, run_id=req.run_id, tenant_id=req.tenant_id, status=status.value,
                 exit_code=code, duration=round(duration, 3))
        metrics.verify_step_finished(name, status.value, duration)
        return StepResult(name=spec.name, status=status, exit_code=code, duration_seconds=round(duration, 3),
                          command=spec.display, reason=reason, log=ref, tail=tail, attempt=attempt, origin=spec.origin)

    # -- prepare

    @activity.defn(name="verify.prepare")
    async def prepare(self, req: PrepareInput) -> Prepared:
        """Locate (or clone) the repository, copy it, plan its steps, provision their toolchains,
        fingerprint it and look the fingerprint up."""
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

    async def _provision(self, plan: Plan, host: detect.Host) -> Plan:
        """The plan with its toolchains provisioned and first on PATH; or with the reason they are not."""
        if not plan.tools:
            return plan
        python = getattr(sys, "_base_executable", sys.executable)
        try:
            provisioned = await self.toolchains.provision(
                plan.tools, python, lambda what: activity.heartbeat({"phase": "provision", "tool": what}))
        except ToolchainUnavailable as err:
            log.warning("toolchain_unavailable", tool=err.details.get("tool"), error=err.message)
            return plan.model_copy(update={"error": err.message})
        bins = [t.bin_dir for t in provisioned]
        notes = [f"{t.name} {t.version} ({t.why})" for t in provisioned if t.why]
        # first on PATH: a runner the repository's own environment also brings (a tox from its requirements)
        # must not shadow the one provisioned at the pinned version, with its plugins (tox-uv)
        return plan.model_copy(update={"provisioned": provisioned, "path_prefix": [*bins, *plan.path_prefix],
                                       "notes": [*plan.notes, *(f"toolchain: {n}" for n in notes)]})

    async def _prepare(self, req: PrepareInput) -> Prepared:
        inputs = req.inputs
        settings = self.settings
        ws = self.workspace(req.tenant_id, req.run_id)
        ws.mkdir(parents=True, exist_ok=True)
        await self._warmed()
        sandbox = probe_sandbox(settings.verify_sandbox)
        if settings.verify_sandbox == "required" and not sandbox.enabled:
            raise SandboxUnavailable(f"JOBFORGE_VERIFY_SANDBOX=required, but {sandbox.reason}")
        checkout: CheckoutSpec | None = None
        tree = ws / "tree"
        source_dir = ""
        if inputs.repo_path is not None:
            source = await asyncio.to_thread(check_repo_path, inputs.repo_path, settings.verify_allowed_roots)
            identity = str(source)
            source_dir = str(source)
        else:
            assert inputs.repo_url is not None
            commit = await self._clone(inputs.repo_url, inputs.ref, tree, ws)
            checkout = CheckoutSpec(url=inputs.repo_url, commit=commit)
            identity = inputs.repo_url
            source = tree
        activity.heartbeat({"phase": "detect"})
        facts = await asyncio.to_thread(read_facts, source)
        options = inputs.options
        host = await asyncio.to_thread(self.toolchains.host)
        await asyncio.to_thread(self.toolchains.interpreters_dir, host.interpreters)
        request = detect.Request(pack=inputs.pack, selected=tuple(options.steps) if options.steps is not None else None,
                                 install=options.install, timeout_minutes=options.timeout_minutes,
                                 env_dir=str(ws / "env"), dist_dir=str(ws / "dist"),
                                 cache_dir=str(self.tenant_cache(req.tenant_id)),
                                 precommit_config=str(ws / "pre-commit-config.yaml"))
        plan = detect.plan(facts, request, host)
        if plan.toolchain is Toolchain.PYTHON:
            plan = plan.model_copy(update={"path_prefix": [host.uv_bin_dir, *plan.path_prefix]})
        activity.heartbeat({"phase": "provision"})
        plan = await self._provision(plan, host)
        if checkout is None:
            activity.heartbeat({"phase": "copy"})
            await asyncio.to_thread(make_tree, source, tree, plan.env_dir, not options.install)
        await asyncio.to_thread(_write_files, plan.files, ws)
        lockfiles = await asyncio.to_thread(dependency_hashes, source, plan)
        uv_version = Path(host.uv_bin_dir).parent.name if host.uv_bin_dir else ""
        versions = base_versions(plan, host.node_version, uv_version, {p: v for v, p in host.interpreters},
                                 host.npm_version)
        install_key = "sha256:" + sha256_hex(canonical_json({
            "files": lockfiles, "commands": [normalise_command(a, str(ws)) for a in plan.install.commands()],
            "tools": versions,
        }))
        plan = plan.model_copy(update={"install_key": install_key})
        activity.heartbeat({"phase": "fingerprint"})
        code = await asyncio.to_thread(code_state, source)
        selected = [s.value for s in options.steps] if options.steps is not None else None
        parts = fingerprint_parts(code, lockfiles, plan, str(ws), inputs.pack.value, selected)
        stamp = await asyncio.to_thread(self._stamp, req.tenant_id, identity)
        if stamp.get("install_key") == install_key and isinstance(stamp.get("installed"), dict):
            versions = {**versions, **{str(k): str(v) for k, v in stamp["installed"].items()}}
        fingerprint = compose(parts, versions)
        prepared = Prepared(
            repo_dir=str(tree), workspace=str(ws), checkout=checkout, plan=plan, fingerprint=fingerprint,
            fingerprint_parts=parts, tool_versions=versions, sandbox=sandbox,
            heartbeat_timeout_seconds=settings.verify_heartbeat_timeout_seconds,
            kill_grace_seconds=settings.verify_kill_grace_seconds, timeout_seconds=plan.timeout_minutes * 60,
            source_dir=source_dir, install_needed=plan.install.runnable or bool(plan.error),
        )
        cached = None
        if not options.no_cache and not plan.error:
            hit = await self._cached_report(req, prepared)
            if hit is not None:  # answered at once: finalised here, no further activity
                cached = await self._finalize(FinalizeInput(tenant_id=req.tenant_id, run_id=req.run_id,
                                                            workflow_id=req.workflow_id, report=hit, workspace=str(ws)))
        log.info("verify_prepared", run_id=req.run_id, tenant_id=req.tenant_id, toolchain=plan.toolchain.value,
                 plan=plan.source, fingerprint=fingerprint, cached=cached is not None, sandboxed=sandbox.enabled,
                 error=plan.error or None)
        return prepared.model_copy(update={"cached": cached})

    def _discard(self, *paths: Path) -> None:
        """Move a finished run's directories aside at once and delete them in the background: a workspace
        holding environments takes seconds to delete on a busy machine, which the run's result need not wait
        for. What a stopped worker left in the trash is deleted by the next discard."""
        trash = self.base / "trash"
        trash.mkdir(parents=True, exist_ok=True)
        for path in paths:
            with contextlib.suppress(OSError):
                aside = trash / f"{path.name}-{os.getpid()}-{time.monotonic_ns()}"
                try:
                    path.rename(aside)
                except OSError:  # another filesystem (the short tmp): deleted here, in place
                    shutil.rmtree(path, ignore_errors=True)
        thread = threading.Thread(target=_empty, args=(trash,), name="verify-trash", daemon=True)
        thread.start()

    def _identity(self, prepared: Prepared) -> str:
        return prepared.checkout.url if prepared.checkout is not None else prepared.source_dir or prepared.repo_dir

    def _stamp(self, tenant_id: str, identity: str) -> dict[str, Any]:
        try:
            data = orjson.loads(self.stamp_file(tenant_id, identity).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    async def _cached_report(self, req: PrepareInput, prepared: Prepared) -> VerifyReport | None:
        entry = await self.store.get_verify_cache(req.tenant_id, prepared.fingerprint)
        if entry is None or entry.verdict != "passed":
            return None
        previous = VerifyReport.model_validate(entry.report)
        log.info("verify_cache_hit", run_id=req.run_id, tenant_id=req.tenant_id, fingerprint=prepared.fingerprint,
                 cached_from=entry.run_id)
        # the verdict's facts are its source run's, the sandbox it ran in included: a cached answer
        # never claims a sandbox its source run did not have
        return previous.model_copy(update={
            "cached": True, "cached_from_run_id": entry.run_id, "run_id": req.run_id, "tenant_id": req.tenant_id,
            "source": req.inputs.source, "manifest": None, "duration_seconds": 0.0,
            "artifacts": [a for a in previous.artifacts if a.kind == "log"],
        })

    # -- install

    @activity.defn(name="verify.install")
    async def install(self, req: StepInput) -> InstallResult:
        """Build the run's environments: the dependencies, hook environments and runner envs of its steps."""
        prepared = req.prepared
        plan = prepared.plan
        try:
            await self._ensure_tree(prepared)
        except JobForgeError as err:
            raise to_application_error(err) from None
        tree = Path(prepared.repo_dir)
        spec = plan.install
        if plan.error:
            result = StepResult(name=StepName.INSTALL, status=StepStatus.ERROR, command=spec.display,
                                origin=spec.origin, reason=f"toolchain unavailable: {plan.error}")
            return InstallResult(result=result, tool_versions=prepared.tool_versions)
        if not spec.runnable:
            result = StepResult(name=StepName.INSTALL, status=StepStatus.SKIPPED, reason=spec.reason)
            return InstallResult(result=result, tool_versions=prepared.tool_versions)
        dirs = envcache.env_dirs(plan, str(tree))
        keeps_node = envcache.keeps_node_modules(plan)
        check = functools.partial(npm_restored_mismatch, tree) if plan.warm_install is not None else None
        started = time.monotonic()
        restored = await self._heartbeating("restore", _workspace_locked, prepared.workspace, self.envs.restore,
                                            req.tenant_id, plan.install_key, dirs, prepared.workspace,
                                            str(tree) if keeps_node else "", check)
        run_spec = spec
        if restored.hit:  # the environments are complete: only what puts the run's own code in place runs
            commands = envcache.warm_commands(plan)
            run_spec = spec.model_copy(update={"argv": commands[0] if commands else [], "extra": commands[1:]})
        note = restored.reason
        if restored.hit and plan.warm_install is not None:
            note += (f"; it matches the lockfile, so `{shlex.join(spec.argv)}` (which would delete it) is skipped "
                     "and npm's own sync check and the root package's install scripts run instead")
        if run_spec.runnable:
            result = await self._execute(req, run_spec, install=True, note=note)
        else:
            result = StepResult(name=StepName.INSTALL, status=StepStatus.PASSED, exit_code=0, command=spec.display,
                                origin=spec.origin, attempt=activity.info().attempt)
        base = {k: v for k, v in prepared.tool_versions.items() if k not in ("packages", "node_modules")}
        installed = await asyncio.to_thread(installed_versions, plan, tree)
        if result.status is StepStatus.PASSED:
            stamp = self.stamp_file(req.tenant_id, self._identity(prepared))
            await asyncio.to_thread(stamp.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(stamp.write_bytes, orjson.dumps({
                "install_key": plan.install_key, "installed": installed, "run_id": req.run_id}))
            if not restored.hit:
                if keeps_node:
                    dirs = [*dirs, *await asyncio.to_thread(node_modules_dirs, tree)]
                await self._heartbeating("store", _workspace_locked, prepared.workspace, self.envs.store,
                                         req.tenant_id, plan.install_key, dirs, prepared.workspace)
        # the install's time is all of it: restoring and storing environments as well as its commands
        result = result.model_copy(update={
            "command": spec.display, "duration_seconds": round(time.monotonic() - started, 3),
            "reason": result.reason or (note if restored.hit else "")})
        return InstallResult(result=result, tool_versions={**base, **installed})

    async def _heartbeating(self, phase: str, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a thread, heartbeating every second while it runs (a large environment takes a while
        to copy). A thread cannot be stopped: when the activity is cancelled, it is waited for before the
        cancellation goes on, so a retried attempt never finds this one still writing its workspace."""
        task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        while True:
            activity.heartbeat({"phase": phase})
            try:
                done, _ = await asyncio.wait({task}, timeout=1.0)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)
                raise
            if done:
                return task.result()

    # -- steps

    @activity.defn(name="verify.run_step")
    async def run_step(self, req: StepInput) -> StepResult:
        """Run one check step (lint, typecheck, build or test) and store its log."""
        spec = req.prepared.plan.step(req.step)
        if not spec.runnable:
            return StepResult(name=req.step, status=StepStatus.SKIPPED, reason=spec.reason)
        try:
            await self._ensure_tree(req.prepared)
        except JobForgeError as err:
            raise to_application_error(err) from None
        note = ""
        if req.tree:
            if Path(req.tree) != snapshot_dir(req.prepared.workspace):
                raise to_application_error(RepoPathRefused(f"{req.tree} is not the run's snapshot"))
            if not await asyncio.to_thread(Path(req.tree).is_dir):  # a retry on a worker that did not make it
                await self._make_snapshot(req.tenant_id, req.run_id, req.prepared)
                note = "the snapshot was not on this worker: made again from the run's tree as it is now"
        return await self._execute(req, spec, install=False, note=note)

    # -- the snapshot of the snapshot lanes

    @activity.defn(name="verify.snapshot")
    async def snapshot(self, req: SnapshotInput) -> Snapshot:
        """Copy the run's tree as install left it, for the plan's snapshot lanes (its node_modules linked)."""
        try:
            await self._ensure_tree(req.prepared)
        except JobForgeError as err:
            raise to_application_error(err) from None
        return await self._make_snapshot(req.tenant_id, req.run_id, req.prepared)

    async def _make_snapshot(self, tenant_id: str, run_id: str, prepared: Prepared) -> Snapshot:
        started = time.monotonic()
        dest = snapshot_dir(prepared.workspace)
        files, linked = await self._heartbeating("snapshot", snapshot_tree, Path(prepared.repo_dir), dest)
        # where empty node_modules/.cache and .tmp are mounted for a sandboxed step of the snapshot (see _execute)
        await asyncio.to_thread(_scratch_mount_points, linked)
        seconds = round(time.monotonic() - started, 3)
        log.info("verify_snapshot_made", run_id=run_id, tenant_id=tenant_id, files=files, linked=len(linked),
                 seconds=seconds)
        return Snapshot(tree=str(dest), files=files, linked=linked, seconds=seconds)

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
                await asyncio.to_thread(self._discard, workspace, short_tmp(req.workspace))
        log.info("verify_finished", run_id=req.run_id, tenant_id=req.tenant_id, verdict=report.verdict.value,
                 cached=report.cached, manifest=info.status)
        return report.model_copy(update={"artifacts": artifacts, "manifest": info})
