"""The verify pack's environment cache: built environments kept between runs, keyed by the install key.

Layout under ``<verify cache>/envs``:

* ``<tenant>/<key>/`` an entry: one directory per environment (``env``, ``hatch``, ``tox``, ``nox``, and a
  Node install's ``node_modules`` directories as ``tree-<place in the tree>``) and ``meta.json``, written last,
  that names the workspace the environments were built in and, per directory, how many files it holds, their
  size, and a digest of every file's path, size and modification time and every symlink's target. An entry
  is only ever made complete: it is built under ``.tmp/`` and renamed into place, so a worker killed while
  building one leaves no entry, only a ``.tmp/`` directory that the next store deletes (its builder's lock
  is gone);
* ``<tenant>/<key>.lock`` the entry's lock: restoring holds it shared, replacing or evicting exclusive;
* ``.trash/`` entries on their way out.

Storing and restoring copy each directory (installed packages' files as hard links, see :func:`shareable`
and :func:`shareable_node`; everything else as copies), then restoring writes the run's workspace path
wherever the build's path stood in the copied files (scripts' shebangs, the editable project's ``.pth``,
tox's records, pnpm's ``.bin`` shims) and symlinks; an entry whose files do not add up to what ``meta.json``
says (half deleted, truncated, or written in place through a link by a run's step, which changes the file's
modification time) is a miss, deleted, and rebuilt by that run's full install. The cache is bounded by
``JOBFORGE_VERIFY_ENV_CACHE_MAX_MB``: after each store, the least recently used entries go until the rest
fit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from shared.verify.envcache import FORMAT, EntryInfo, EnvDir, entry_name, shares_files, to_evict, tree_dir

log = structlog.get_logger("jobforge.activities.envcache")

COPY_TIMEOUT = 600.0


@dataclass(frozen=True)
class Tally:
    """What a directory holds: regular files, their bytes, a digest of every file's path, size and modification
    time and every symlink's target, and the symlinks pointing into a given path."""

    files: int
    size: int
    links: tuple[str, ...] = ()
    digest: str = ""


def tally(root: Path, inside: str = "") -> Tally:
    """Count ``root``'s regular files and bytes and digest what it holds; list its symlinks whose target starts
    with ``inside``."""
    files = size = 0
    links: list[str] = []
    lines: list[str] = []
    skip = len(str(root)) + 1
    stack = [root]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink():
                    target = os.readlink(entry.path)
                    lines.append(f"{entry.path[skip:]}\0->{target}")
                    if inside and target.startswith(inside):
                        links.append(entry.path[skip:])
                elif entry.is_dir():
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    st = entry.stat(follow_symlinks=False)
                    files += 1
                    size += st.st_size
                    lines.append(f"{entry.path[skip:]}\0{st.st_size}\0{st.st_mtime_ns}")
    lines.sort()
    digest = hashlib.sha256("\n".join(lines).encode(errors="surrogateescape")).hexdigest()
    return Tally(files=files, size=size, links=tuple(sorted(links)), digest=digest)


@contextlib.contextmanager
def _flock(path: Path, mode: int, blocking: bool = True) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, mode | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shareable(relative: str) -> bool:
    """Whether a file of an environment may be a hard link shared with the cache: installed packages' own files
    (``site-packages/<package>/...`` and top-level modules), which installers replace and never write in
    place (uv already links them from its cache into every environment). Scripts, records, ``.pth`` files and
    whatever else lies outside packages are copied."""
    parts = relative.split("/")
    if "site-packages" not in parts:
        return False
    rest = parts[parts.index("site-packages") + 1:]
    if not rest or rest[0].endswith((".dist-info", ".egg-info", ".pth", ".egg-link")):
        return False
    return len(rest) > 1 or rest[0].endswith((".py", ".so", ".pyi"))


def shareable_node(relative: str) -> bool:
    """Whether a file of a ``node_modules`` directory (``relative`` to it) may be a hard link shared with the
    cache: a package's own files (``<package>/...``, ``@scope/<package>/...``, pnpm's
    ``.pnpm/<id>/node_modules/<package>/...``, which pnpm itself links from its store). Package managers replace
    such files and never write them in place. Copied: the managers' own records (``.modules.yaml``,
    ``.package-lock.json``, ``.yarn-state.yml``, ``.yarn-integrity``, ``.pnpm/lock.yaml``), ``.bin`` shims, and
    tools' caches (``.cache``, ``.vite``), which steps write."""
    parts = relative.split("/")
    inner = len(parts) - 1 - parts[::-1].index("node_modules") if "node_modules" in parts else -1
    rest = parts[inner + 1:]
    return len(rest) > 1 and not rest[0].startswith(".") and ".cache" not in rest


def _copy(src: Path, dst: Path, share: Callable[[str], bool] = shareable,
          own: frozenset[str] = frozenset()) -> list[Path]:
    """``src`` to ``dst`` (which must not exist): the files ``share`` says may be, hard-linked, the rest (and
    every file in ``own``) copied with their mode and times, symlinks as they are; the files copied."""
    copied: list[Path] = []
    dst.parent.mkdir(parents=True, exist_ok=True)
    root = str(src)
    dirs: list[tuple[str, str]] = []
    for current, names, files in os.walk(root):
        relative = os.path.relpath(current, root)
        target = str(dst) if relative == "." else os.path.join(dst, relative)
        os.mkdir(target)
        dirs.append((current, target))
        for name in [*names, *files]:
            source = os.path.join(current, name)
            if os.path.islink(source):
                os.symlink(os.readlink(source), os.path.join(target, name))
        names[:] = [n for n in names if not os.path.islink(os.path.join(current, n))]
        prefix = "" if relative == "." else relative + "/"
        for name in files:
            source = os.path.join(current, name)
            if os.path.islink(source):
                continue
            if share(prefix + name) and prefix + name not in own:
                try:
                    os.link(source, os.path.join(target, name))
                    continue
                except OSError:  # another filesystem, a link limit: a copy
                    pass
            shutil.copy2(source, os.path.join(target, name))
            copied.append(Path(target, name))
    for source, target in reversed(dirs):
        shutil.copystat(source, target)
    return copied


def _files_holding(root: Path, needle: str) -> list[Path]:
    """Regular files under ``root`` whose content holds ``needle``."""
    done = subprocess.run(["grep", "-rlZF", "--", needle, str(root)], capture_output=True, timeout=COPY_TIMEOUT,
                          check=False, stdin=subprocess.DEVNULL)
    if done.returncode not in (0, 1):
        raise OSError(f"grep in {root} failed: {done.stderr.decode(errors='replace').strip()[-300:]}")
    return [Path(p.decode()) for p in done.stdout.split(b"\0") if p]


def relocate(root: Path, old: str, new: str, links: Sequence[str] = (), files: Sequence[Path] | None = None) -> int:
    """Write ``new`` wherever ``old`` stands in ``root``'s files (or only in ``files``) and in its symlinks
    ``links``; the number of files changed. Files are replaced, never written in place. Where the two paths
    differ in length, binary files cannot be patched: compiled bytecode holding the old path is deleted
    (Python writes it again), other binary files are left as they are."""
    old_b, new_b = old.encode(), new.encode()
    changed = 0
    for path in _files_holding(root, old) if files is None else files:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old_b not in data:
            continue
        if len(old_b) != len(new_b) and b"\0" in data:
            if path.suffix == ".pyc":
                path.unlink()
                changed += 1
            continue
        tmp = path.with_name(f".{path.name}.jobforge-relocate")
        tmp.write_bytes(data.replace(old_b, new_b))
        shutil.copystat(path, tmp)
        tmp.replace(path)
        changed += 1
    for relative in links:
        link = root / relative
        target = os.readlink(link)
        if target.startswith(old):
            link.unlink()
            link.symlink_to(new + target[len(old):])
            changed += 1
    return changed


def _share(name: str) -> Callable[[str], bool]:
    """Which files of the entry directory ``name`` may be hard links: packages' own files."""
    return shareable_node if shares_files(name) else shareable


@dataclass(frozen=True)
class Restored:
    """How a restore went: ``hit`` when the run's environments now come from the entry."""

    hit: bool
    reason: str
    seconds: float = 0.0


class EnvCache:
    """Built environments of verify installs, per tenant and install key, bounded in size."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def entry(self, tenant_id: str, install_key: str) -> Path:
        return self.root / tenant_id / entry_name(install_key)

    def _lock(self, entry: Path) -> Path:
        return entry.with_name(entry.name + ".lock")

    @staticmethod
    def _meta(entry: Path) -> dict[str, Any] | None:
        try:
            data = orjson.loads((entry / "meta.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("dirs"), dict):
            return None
        return data

    # -- restore

    def restore(self, tenant_id: str, install_key: str, dirs: Sequence[EnvDir], workspace: str, tree: str = "",
                check: Callable[[], str] | None = None) -> Restored:
        """The run's environments (``dirs``, in the run at ``workspace``; with ``tree``, also the tree's
        directories the entry holds: a Node install's ``node_modules``) from the key's entry, or why not.
        ``check``, called once they are in place, says why they cannot serve ("" when they can): the entry is
        then a miss, deleted.

        On a miss nothing of the run is left half restored: its directories are removed again."""
        started = time.monotonic()
        if not self.enabled:
            return Restored(False, "the environment cache is off (JOBFORGE_VERIFY_ENV_CACHE_MAX_MB=0)")
        if not dirs and not tree:
            return Restored(False, "the install builds no environment")
        entry = self.entry(tenant_id, install_key)
        with _flock(self._lock(entry), fcntl.LOCK_SH):
            meta = self._meta(entry)
            if meta is None:
                return Restored(False, "no cached environment for this install key")
            recorded: dict[str, Any] = meta["dirs"]
            if tree:
                found = [tree_dir(name, tree) for name in sorted(recorded) if name not in {d.name for d in dirs}]
                dirs = [*dirs, *(d for d in found if d is not None)]
            if set(recorded) != {d.name for d in dirs} or not dirs:
                self._discard(entry, "its directories are not this install's")
                return Restored(False, "the cached environment was built differently; rebuilt")
            old = str(meta.get("workspace", ""))
            problem = ""
            tallies: dict[str, Tally] = {}
            for d in dirs:
                source = entry / d.name
                try:
                    counted = tally(source, old)
                except OSError as exc:
                    problem = f"{d.name}: {exc}"
                    break
                want = recorded[d.name]
                if [counted.files, counted.size] != [want.get("files"), want.get("size")]:
                    problem = (f"{d.name} holds {counted.files} files, {counted.size} bytes; "
                               f"{want.get('files')} files, {want.get('size')} bytes were stored")
                    break
                if counted.digest != want.get("digest"):
                    problem = f"{d.name}: a file was changed, replaced or relinked since it was stored"
                    break
                tallies[d.name] = counted
            if problem:
                self._discard(entry, problem)
                return Restored(False, f"the cached environment was damaged ({problem}); rebuilt")
            try:
                copied: dict[str, list[Path]] = {}
                for d in dirs:
                    target = Path(d.path)
                    if target.is_symlink() or target.is_file():
                        target.unlink()
                    elif target.exists():
                        shutil.rmtree(target)
                    own = frozenset(str(p) for p in recorded[d.name].get("own", []))
                    copied[d.name] = _copy(entry / d.name, target, _share(d.name), own)
                # the copied files only: packages' own files (linked) name the build's path in compiled
                # bytecode alone, where it is what tracebacks show, never what Python checks; in node_modules,
                # the files that held it when stored (``own``) are copies
                for d in dirs:
                    if old and old != workspace:
                        relocate(Path(d.path), old, workspace, tallies[d.name].links, copied[d.name])
                unfit = check() if check is not None else ""
            except (OSError, subprocess.TimeoutExpired) as exc:
                for d in dirs:
                    shutil.rmtree(d.path, ignore_errors=True)
                log.warning("env_cache_restore_failed", entry=entry.name, tenant_id=tenant_id, error=str(exc))
                return Restored(False, f"restoring the cached environment failed ({exc}); rebuilt")
            if unfit:
                for d in dirs:
                    shutil.rmtree(d.path, ignore_errors=True)
                self._discard(entry, unfit)
                return Restored(False, f"the cached environment does not fit this run ({unfit}); rebuilt")
        with contextlib.suppress(OSError):
            os.utime(entry)  # last used: what eviction goes by
        seconds = round(time.monotonic() - started, 3)
        log.info("env_cache_restored", entry=entry.name, tenant_id=tenant_id, seconds=seconds)
        what = ", ".join(d.path.rsplit("/", 1)[-1] if d.name.startswith("tree-") else d.name for d in dirs)
        return Restored(True, f"environment restored from the cache ({what}; install key {install_key[:19]}…)",
                        seconds)

    # -- store

    def store(self, tenant_id: str, install_key: str, dirs: Sequence[EnvDir], workspace: str) -> bool:
        """Keep a copy of the run's environments under the key (unless a complete entry is there); then
        evict down to the bound. False when nothing was stored."""
        if not self.enabled or not dirs:
            return False
        entry = self.entry(tenant_id, install_key)
        if self._meta(entry) is not None:
            with contextlib.suppress(OSError):
                os.utime(entry)
            return False
        self._sweep()
        tmp_root = self.root / ".tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        build = tmp_root / f"{tenant_id}-{entry.name}-{os.getpid()}-{time.monotonic_ns()}"
        started = time.monotonic()
        with _flock(build.with_name(build.name + ".lock"), fcntl.LOCK_EX):
            try:
                build.mkdir()
                recorded: dict[str, dict[str, Any]] = {}
                for d in dirs:
                    if not Path(d.path).is_dir():
                        raise OSError(f"{d.path} was not built")
                    # files an install script wrote the run's path into: copied (and relocated) on restore
                    own = sorted(os.path.relpath(p, d.path) for p in _files_holding(Path(d.path), workspace)) if (
                        shares_files(d.name)) else []
                    _copy(Path(d.path), build / d.name, _share(d.name), frozenset(own))
                    counted = tally(build / d.name)
                    recorded[d.name] = {"files": counted.files, "size": counted.size, "digest": counted.digest,
                                        **({"own": own} if own else {})}
                (build / "meta.json").write_bytes(orjson.dumps({
                    "format": FORMAT, "install_key": install_key, "workspace": workspace, "dirs": recorded,
                    "created": time.time()}))
                with _flock(self._lock(entry), fcntl.LOCK_EX):
                    if self._meta(entry) is not None:  # a run of the same key stored it meanwhile
                        shutil.rmtree(build, ignore_errors=True)
                        return False
                    if entry.exists():
                        self._discard(entry, "replaced")
                    build.rename(entry)
            except (OSError, subprocess.TimeoutExpired) as exc:
                shutil.rmtree(build, ignore_errors=True)
                log.warning("env_cache_store_failed", entry=entry.name, tenant_id=tenant_id, error=str(exc))
                return False
            finally:
                with contextlib.suppress(OSError):
                    build.with_name(build.name + ".lock").unlink()
        size = sum(v["size"] for v in recorded.values())
        log.info("env_cache_stored", entry=entry.name, tenant_id=tenant_id, bytes=size,
                 seconds=round(time.monotonic() - started, 3))
        self.evict(keep=entry)
        return True

    # -- upkeep

    def _discard(self, entry: Path, why: str) -> None:
        """Move ``entry`` aside and delete it (the caller holds its lock, or it is no entry yet)."""
        trash = self.root / ".trash"
        trash.mkdir(parents=True, exist_ok=True)
        aside = trash / f"{entry.parent.name}-{entry.name}-{os.getpid()}-{time.monotonic_ns()}"
        with contextlib.suppress(OSError):
            entry.rename(aside)
            log.info("env_cache_discarded", entry=entry.name, reason=why)
        shutil.rmtree(aside, ignore_errors=True)

    def _sweep(self) -> None:
        """Delete what killed builders left in ``.tmp/`` (a build whose lock nobody holds) and ``.trash/``."""
        tmp_root = self.root / ".tmp"
        with contextlib.suppress(OSError):
            for lock in tmp_root.glob("*.lock"):
                with _flock(lock, fcntl.LOCK_EX, blocking=False) as free:
                    if free:
                        shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
                        lock.unlink(missing_ok=True)
            for build in tmp_root.iterdir():
                if build.is_dir() and not build.with_name(build.name + ".lock").exists():
                    shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(self.root / ".trash", ignore_errors=True)

    def entries(self) -> list[tuple[Path, EntryInfo]]:
        out: list[tuple[Path, EntryInfo]] = []
        with contextlib.suppress(OSError):
            for tenant in self.root.iterdir():
                if tenant.name.startswith(".") or not tenant.is_dir():
                    continue
                for entry in tenant.iterdir():
                    meta = self._meta(entry) if entry.is_dir() else None
                    if meta is None:
                        continue
                    size = sum(int(v.get("size", 0)) for v in meta["dirs"].values())
                    out.append((entry, EntryInfo(name=str(entry.relative_to(self.root)), size=size,
                                                 last_used=entry.stat().st_mtime)))
        return out

    def evict(self, keep: Path | None = None) -> list[str]:
        """Delete least recently used entries until the cache fits its bound; an entry being restored is
        skipped (its lock is held)."""
        found = self.entries()
        paths = {info.name: path for path, info in found}
        keep_name = str(keep.relative_to(self.root)) if keep is not None else ""
        evicted: list[str] = []
        for name in to_evict([info for _, info in found], self.max_bytes, keep_name):
            entry = paths[name]
            with _flock(self._lock(entry), fcntl.LOCK_EX, blocking=False) as free:
                if free:
                    self._discard(entry, "evicted: the cache is over JOBFORGE_VERIFY_ENV_CACHE_MAX_MB")
                    evicted.append(name)
        return evicted
