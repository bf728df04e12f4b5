"""The bubblewrap command line a sandboxed step runs under (pure).

The whole filesystem is mounted read-only; the repository and the run's workspace are writable (but for the
``frozen`` directories of a step in a snapshot: the installed packages the steps beside it use);
JobForge's home (database files, other tenants' artifacts, the stack's state) and the usual secret
stores of the worker user's home are hidden behind empty mounts; the network is cut off except for
``install``; the step gets its own PID, IPC and UTS namespaces and dies with the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

#: relative to the worker user's home: hidden from every step
SECRET_DIRS = (".ssh", ".aws", ".gnupg", ".docker", ".kube", ".config/gcloud", ".azure", ".config/gh")
SECRET_FILES = (".netrc", ".git-credentials", ".pypirc", ".npmrc", ".config/pip/pip.conf", ".pip/pip.conf")


@dataclass(frozen=True)
class SandboxSpec:
    repo: str
    workspace: str
    #: hidden behind an empty tmpfs (JobForge's home, secret directories)
    hidden_dirs: Sequence[str] = ()
    #: replaced by /dev/null
    hidden_files: Sequence[str] = ()
    #: bound read-only again after hiding (the per-repo environment, for the checks)
    readonly: Sequence[str] = ()
    #: bound writable after hiding (environment and caches, for install)
    writable: Sequence[str] = field(default_factory=tuple)
    network: bool = False
    #: bound read-only over everything above (the run's node_modules, for a step running in a snapshot of the tree
    #: beside the steps that use them)
    frozen: Sequence[str] = ()
    #: empty writable directories over (inside) the frozen ones: their ``node_modules/.cache`` and ``.tmp``
    scratch: Sequence[str] = ()


def _inside(path: str, parent: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(parent))


def visible(path: str, spec: SandboxSpec) -> bool:
    """Whether ``path`` (absolute, symlinks resolved) can be seen inside the sandbox ``spec`` describes."""
    for bound in (spec.repo, spec.workspace, *spec.readonly, *spec.writable):
        if _inside(path, bound):
            return True
    if _inside(path, "/tmp"):
        return False
    return not (any(_inside(path, hidden) for hidden in spec.hidden_dirs) or path in spec.hidden_files)


#: what bubblewrap prints when the kernel or a container's security profile refuses user namespaces
_USERNS_REFUSED = ("No permissions to create", "setting up uid map", "Creating new namespace failed",
                   "Operation not permitted", "unshare", "CAP_SYS_ADMIN", "user namespace")


def probe_failure_reason(stderr: str, in_container: bool) -> str:
    """Why steps run unsandboxed, from bubblewrap's own words, saying what to allow."""
    first = (stderr.strip().splitlines() or ["no message"])[0][:200]
    if any(marker.lower() in stderr.lower() for marker in _USERNS_REFUSED):
        if in_container:
            return (f"bubblewrap cannot create user namespaces in this container ({first}): its security profile "
                    "refuses them; allow them for the worker (docs/operations.md, 'Sandboxing verify steps')")
        return (f"bubblewrap cannot create user namespaces on this host ({first}); enable unprivileged user "
                "namespaces (kernel.unprivileged_userns_clone=1, or an AppArmor profile for bwrap)")
    return f"bubblewrap does not work here: {first}"


def bwrap_argv(bwrap: str, argv: Sequence[str], spec: SandboxSpec) -> list[str]:
    """``argv`` wrapped in bubblewrap according to ``spec``."""
    out = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not spec.network:
        out.append("--unshare-net")
    out += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    out += ["--bind", spec.repo, spec.repo]
    for path in spec.hidden_dirs:
        out += ["--tmpfs", path]
    for path in spec.hidden_files:
        out += ["--ro-bind", "/dev/null", path]
    for path in spec.readonly:
        out += ["--ro-bind", path, path]
    for path in (*spec.writable, spec.workspace):
        out += ["--bind", path, path]
    if any(_inside(spec.repo, hidden) for hidden in spec.hidden_dirs) and not _inside(spec.repo, spec.workspace):
        out += ["--bind", spec.repo, spec.repo]
    for path in spec.frozen:
        out += ["--ro-bind", path, path]
    for path in spec.scratch:
        out += ["--tmpfs", path]
    out += ["--chdir", spec.repo, "--", *argv]
    return out
