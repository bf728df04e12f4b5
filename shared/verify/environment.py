"""The environment a verify step runs with: an allowlist, never the worker's own (pure).

Nothing of the worker's environment reaches a repository's scripts unless it is named here: no
``JOBFORGE_*`` setting, no database URL, no cloud credentials. The install step alone also gets the
package registries' configuration (index URLs, proxies, CA bundles), because it alone needs them.
Like a CI service, every step gets ``CI=true``; the terminal settings (``TERM``, ``NO_COLOR``,
``FORCE_COLOR``) are the worker's own, never forced, since colour libraries' own tests read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: copied from the worker's environment for every step
BASE_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "NO_COLOR", "FORCE_COLOR", "COLORTERM")
#: copied for ``install`` only: how to reach the package registries
INSTALL_ALLOWLIST = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT",
    "PIP_CONSTRAINT", "PIP_CONFIG_FILE", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX",
    "npm_config_registry",
    "NPM_CONFIG_REGISTRY", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class StepPaths:
    """Directories a step's environment points at."""

    home: str
    tmp: str
    #: prepended to PATH (absolute)
    path_prefix: tuple[str, ...] = ()
    #: the per-repo virtualenv, if the toolchain uses one
    venv: str = ""
    #: install only: shared download caches
    pip_cache: str = ""
    npm_cache: str = ""
    #: install only: registry config files found in the worker user's home (pip.conf, .npmrc)
    config_files: Mapping[str, str] = field(default_factory=dict)
    #: appended to PATH (absolute): interpreters that tox / nox may look for by name
    path_suffix: tuple[str, ...] = ()
    #: the shared uv cache and pre-commit home
    uv_cache: str = ""
    pre_commit_home: str = ""


def step_env(host_env: Mapping[str, str], paths: StepPaths, *, install: bool,
             extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment of one step; ``extra`` (the plan's and the step's variables) comes last."""
    allow: Iterable[str] = (*BASE_ALLOWLIST, *INSTALL_ALLOWLIST) if install else BASE_ALLOWLIST
    env = {name: host_env[name] for name in allow if name in host_env}
    host_path = env.get("PATH") or DEFAULT_PATH
    env["PATH"] = ":".join([*paths.path_prefix, host_path, *paths.path_suffix])
    env.setdefault("LANG", "C.UTF-8")
    env.update({
        "HOME": paths.home, "TMPDIR": paths.tmp, "CI": "true",
        "PYTHONUNBUFFERED": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "npm_config_update_notifier": "false",
        "npm_config_fund": "false", "npm_config_audit": "false",
        "npm_config_cache": paths.npm_cache if paths.npm_cache else f"{paths.home}/.npm",
        "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1",
    })
    if paths.uv_cache:
        env["UV_CACHE_DIR"] = paths.uv_cache
    if paths.pre_commit_home:
        env["PRE_COMMIT_HOME"] = paths.pre_commit_home
    if paths.venv:
        env["VIRTUAL_ENV"] = paths.venv
    if install:
        if paths.pip_cache:
            env["PIP_CACHE_DIR"] = paths.pip_cache
        if "pip" in paths.config_files and "PIP_CONFIG_FILE" not in env:
            env["PIP_CONFIG_FILE"] = paths.config_files["pip"]
        if "npm" in paths.config_files:
            env["NPM_CONFIG_USERCONFIG"] = paths.config_files["npm"]
    env.update(extra or {})
    return env
