"""Where a verify run may look: repository paths must resolve inside the allowed roots."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jobforge.errors import RepoPathRefused


def allowed_roots(roots: Iterable[Path]) -> list[Path]:
    """The roots, resolved (symlinks followed); roots that do not exist are dropped."""
    out: list[Path] = []
    for root in roots:
        try:
            resolved = Path(root).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if resolved.is_dir() and resolved not in out:
            out.append(resolved)
    return out


def check_repo_path(raw: str, roots: Iterable[Path]) -> Path:
    """The real directory ``raw`` names, or :class:`RepoPathRefused` saying why it may not be used.

    Refused: NUL bytes, relative paths, ``..`` components (even when they would land inside a
    root), paths that do not exist, that are not directories, and paths whose real location
    (every symlink followed) lies outside every allowed root.
    """
    if "\x00" in raw:
        raise RepoPathRefused("repo_path contains a NUL byte", reason="nul_byte")
    if not raw.strip():
        raise RepoPathRefused("repo_path is empty", reason="empty")
    path = Path(raw)
    if not path.is_absolute():
        raise RepoPathRefused(f"repo_path {raw!r} must be an absolute path", reason="relative")
    if ".." in path.parts:
        raise RepoPathRefused(f"repo_path {raw!r} contains '..' (path traversal is refused)", reason="traversal")
    resolved_roots = allowed_roots(roots)
    if not resolved_roots:
        raise RepoPathRefused("no allowed root exists: set JOBFORGE_VERIFY_ALLOWED_ROOTS on the worker",
                              reason="no_roots")
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise RepoPathRefused(f"repo_path {raw!r} does not exist", reason="missing") from None
    except RuntimeError:
        raise RepoPathRefused(f"repo_path {raw!r} is a symlink loop", reason="symlink_loop") from None
    except OSError as exc:
        raise RepoPathRefused(f"repo_path {raw!r} cannot be resolved: {exc.strerror}", reason="unresolvable") from None
    if not any(real.is_relative_to(root) for root in resolved_roots):
        raise RepoPathRefused(
            f"repo_path {raw!r} resolves outside the directories the workers may verify "
            f"({', '.join(map(str, resolved_roots))}; by default their working directory); to allow it, start "
            f"the workers with JOBFORGE_VERIFY_ALLOWED_ROOTS set (comma-separated directories), e.g. "
            f"`JOBFORGE_VERIFY_ALLOWED_ROOTS={real.parent} jobforge dev`", reason="outside_roots")
    if not real.is_dir():
        raise RepoPathRefused(f"repo_path {raw!r} is not a directory", reason="not_a_directory")
    return real


def file_url_path(url: str) -> str | None:
    """The local path of a ``file://`` URL (None for other schemes)."""
    if not url.startswith("file://"):
        return None
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise RepoPathRefused(f"file URL {url!r} names a remote host", reason="remote_file_url")
    return unquote(parts.path)
