"""Which command verifies each step of a repository, and where that command comes from (pure).

The activity reads the few files that matter into :class:`RepoFacts` and what the worker has into
:class:`Host`; :func:`plan` decides. For each step, in order:

1. an explicit config (``.jobforge/verify.toml``, else ``[tool.jobforge.verify]`` in ``pyproject.toml``)
   decides the whole plan;
2. the project's own definitions: pre-commit hooks at their pinned revs (lint; a type-check hook
   is the typecheck step when nothing else defines one), then tox / nox / hatch environments or
   ``package.json`` scripts, then a Makefile / justfile target named like the step;
3. detection from the tools' configuration, with each tool at the version the repository's locks or
   pins give it.

Every step records its origin, so the report says why it ran what it ran; a step with nothing to
run gets a reason. Toolchains the plan needs (uv for Python environments, the declared package
manager at its version, pre-commit, tox, ...) are listed as :class:`ToolRequest` for the worker to
provision; it never assumes they are installed.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobforge.errors import VerifyConfigInvalid
from shared.verify.models import (
    CHECK_STEPS,
    PACK_STEPS,
    Pack,
    Plan,
    StepName,
    StepSpec,
    Toolchain,
    shell_display,
)

EXPLICIT_FILE = ".jobforge/verify.toml"
DEFAULT_TIMEOUT_MINUTES = 15.0

#: config files read whole (small text files at the repository root; locks are read for their pins)
CONFIG_FILES = (
    "pyproject.toml", "setup.cfg", "tox.ini", "tox.toml", "noxfile.py", "hatch.toml", "mypy.ini", ".mypy.ini",
    "pytest.ini", "ruff.toml", ".ruff.toml", ".flake8", "pyrightconfig.json", "package.json", EXPLICIT_FILE,
    ".pre-commit-config.yaml", "Makefile", "makefile", "GNUmakefile", "justfile", ".justfile", "Justfile",
    ".python-version", ".nvmrc", ".node-version", ".yarnrc.yml", "uv.lock", "poetry.lock", "pdm.lock",
    "Pipfile.lock", "PKG-INFO", "requirements.txt", "requirements-dev.txt", "requirements_dev.txt",
    "dev-requirements.txt", "requirements-test.txt", "requirements_test.txt", "test-requirements.txt",
    "requirements/dev.txt", "requirements/test.txt", "requirements/tests.txt", "requirements/lint.txt",
    "requirements/typing.txt",
)
#: read for their first lines only (lockfile versions)
HEAD_FILES = ("pnpm-lock.yaml", "yarn.lock")
#: files whose content decides what ``install`` puts in the environment
PYTHON_DEPENDENCY_FILES = (
    "pyproject.toml", "setup.py", "setup.cfg", "uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock",
    "requirements.txt", "requirements-dev.txt", "requirements_dev.txt", "dev-requirements.txt",
    "requirements-test.txt", "requirements_test.txt", "test-requirements.txt", "requirements/dev.txt",
    "requirements/test.txt", "requirements/tests.txt", "requirements/lint.txt", "requirements/typing.txt",
    ".pre-commit-config.yaml", "tox.ini", "noxfile.py", ".python-version",
)
NODE_LOCKFILES = ("pnpm-lock.yaml", "yarn.lock", "package-lock.json", "npm-shrinkwrap.json", "bun.lockb", "bun.lock")
NODE_DEPENDENCY_FILES = ("package.json", *NODE_LOCKFILES, ".yarnrc.yml", ".npmrc", ".nvmrc", ".node-version",
                         ".pre-commit-config.yaml")
#: paths whose mere presence matters
PROBED_PATHS = (
    "setup.py", "tests", "test", "src", "conftest.py", "tsconfig.json", "node_modules", "node_modules/.bin/tsc",
    ".venv/bin/python", ".yarnrc.yml", ".git", *NODE_LOCKFILES, *PYTHON_DEPENDENCY_FILES,
    "eslint.config.js", "eslint.config.mjs", "eslint.config.cjs", "eslint.config.ts", ".eslintrc", ".eslintrc.js",
    ".eslintrc.cjs", ".eslintrc.json", ".eslintrc.yml", ".eslintrc.yaml",
)


@dataclass(frozen=True)
class RepoFacts:
    """What detection needs to know about a repository, read by the activity."""

    #: relative path -> text, for the :data:`CONFIG_FILES` that exist (and the heads of :data:`HEAD_FILES`)
    files: Mapping[str, str] = field(default_factory=dict)
    #: the :data:`PROBED_PATHS` that exist
    present: frozenset[str] = frozenset()
    #: names directly in the repository root
    root_entries: frozenset[str] = frozenset()
    #: top-level directories holding an ``__init__.py`` (flat-layout packages)
    python_packages: tuple[str, ...] = ()
    #: paths (relative) of existing yarn releases named by ``.yarnrc.yml``'s yarnPath
    yarn_release: str = ""

    def has(self, path: str) -> bool:
        return path in self.present or path in self.files or path in self.root_entries


@dataclass(frozen=True)
class Host:
    """What the worker has: interpreters, node, and the toolchains JobForge itself brings."""

    #: (version, path) of every Python interpreter found on the worker
    interpreters: tuple[tuple[str, str], ...] = ()
    #: the version a repository gets when it does not ask for one ("3.11")
    python_version: str = ""
    #: the worker's own node and npm ("" when absent)
    node_version: str = ""
    npm_version: str = ""
    #: JobForge's uv (from its PyPI package): a directory holding only ``uv``
    uv_bin_dir: str = ""
    #: executables on the worker's PATH that plans may use as they are (make, git)
    available: frozenset[str] = frozenset()
    #: the machine's architecture as npm names it (x64, arm64)
    arch: str = "x64"


@dataclass(frozen=True)
class Request:
    pack: Pack = Pack.FULL
    selected: tuple[StepName, ...] | None = None
    install: bool = True
    timeout_minutes: float | None = None
    #: the run's Python environment directory (outside the repository)
    env_dir: str = ""
    #: where ``build`` writes its output (outside the repository)
    dist_dir: str = ""
    #: download caches and provisioned toolchains shared by runs
    cache_dir: str = ""
    #: where the run's rewritten pre-commit config is written
    precommit_config: str = ""


class ExplicitConfig(BaseModel):
    """``.jobforge/verify.toml`` or ``[tool.jobforge.verify]``: a command per step.

    A string runs through ``/bin/sh -c``; a list of strings is an argv; ``false`` turns a step off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    install: str | list[str] | bool | None = None
    lint: str | list[str] | bool | None = None
    typecheck: str | list[str] | bool | None = None
    build: str | list[str] | bool | None = None
    test: str | list[str] | bool | None = None
    order: list[list[StepName]] | None = None
    timeout_minutes: float | None = Field(default=None, gt=0, le=240)


def toml(facts: RepoFacts, name: str) -> dict[str, Any]:
    text = facts.files.get(name)
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VerifyConfigInvalid(f"{name} is not valid TOML: {exc}", file=name) from None


def section(text: str | None, name: str) -> bool:
    return text is not None and re.search(rf"^\[{re.escape(name)}\]\s*$", text, re.MULTILINE) is not None


def explicit_config(facts: RepoFacts) -> tuple[ExplicitConfig, str] | None:
    """The repository's explicit verify config and where it came from, if it has one."""
    raw: Any = None
    source = ""
    if EXPLICIT_FILE in facts.files:
        raw, source = toml(facts, EXPLICIT_FILE), EXPLICIT_FILE
    else:
        found = toml(facts, "pyproject.toml").get("tool", {}).get("jobforge", {}).get("verify")
        if found is not None:
            raw, source = found, "pyproject.toml [tool.jobforge.verify]"
    if raw is None:
        return None
    try:
        return ExplicitConfig.model_validate(raw), source
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise VerifyConfigInvalid(f"{source} is invalid: {problems}", file=source) from None


def spec(name: StepName, commands: list[list[str]], origin: str, *, env: Mapping[str, str] | None = None,
         network: bool = False) -> StepSpec:
    """A runnable step: its commands in turn, displayed exactly as they run."""
    env = dict(env or {})
    return StepSpec(name=name, argv=commands[0], extra=commands[1:], display=shell_display(commands, env),
                    origin=origin, env=env, network=network)


def none(name: StepName, reason: str) -> StepSpec:
    return StepSpec(name=name, reason=reason)


def select(name: StepName, req: Request, step: StepSpec) -> StepSpec:
    if name not in PACK_STEPS[req.pack]:
        return StepSpec(name=name, reason=f"not part of the {req.pack.value} pack")
    if req.selected is not None and name not in req.selected:
        return StepSpec(name=name, reason="not selected (options.steps)")
    return step


def stages(order: list[list[StepName]], steps: list[StepSpec]) -> list[list[StepName]]:
    runnable = {s.name for s in steps if s.runnable}
    out = [[name for name in group if name in runnable] for group in order]
    return [group for group in out if group]


def timeout(req: Request, configured: float | None) -> float:
    return req.timeout_minutes or configured or DEFAULT_TIMEOUT_MINUTES


def _command(value: str | list[str]) -> list[str]:
    return ["/bin/sh", "-c", value] if isinstance(value, str) else list(value)


# -- explicit ---------------------------------------------------------------------------------------


def _plan_explicit(facts: RepoFacts, req: Request, config: ExplicitConfig, source: str) -> Plan:
    steps: list[StepSpec] = []
    for name in CHECK_STEPS:
        value = getattr(config, name.value)
        if value is None or value is True:
            step = none(name, f"no {name.value} command in {source}")
        elif value is False:
            step = none(name, f"turned off in {source}")
        else:
            command = _command(value)
            step = StepSpec(name=name, argv=command, display=value if isinstance(value, str) else shlex.join(value),
                            origin=f"{source} {name.value}")
        steps.append(select(name, req, step))
    if not req.install:
        install = none(StepName.INSTALL, "options.install is off")
    elif isinstance(config.install, str | list):
        command = _command(config.install)
        install = StepSpec(name=StepName.INSTALL, argv=command, network=True, origin=f"{source} install",
                           display=config.install if isinstance(config.install, str) else shlex.join(config.install))
    else:
        install = none(StepName.INSTALL, f"no install command in {source}")
    order = config.order or [[StepName.LINT, StepName.TYPECHECK], [StepName.BUILD, StepName.TEST]]
    prefix = [p for p in (".venv/bin", "node_modules/.bin") if facts.has(p.rsplit("/", 1)[0])]
    return Plan(toolchain=Toolchain.EXPLICIT, source=source, install=install, steps=steps,
                stages=stages(order, steps), timeout_minutes=timeout(req, config.timeout_minutes),
                path_prefix=prefix)


# -- entry point ------------------------------------------------------------------------------------


def is_python(facts: RepoFacts) -> bool:
    markers = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "uv.lock", "poetry.lock", "Pipfile")
    return any(facts.has(m) for m in markers) or any(name.endswith(".py") for name in facts.root_entries)


def plan(facts: RepoFacts, req: Request, host: Host) -> Plan:
    """The steps that verify this repository, with a reason for each step that has nothing to run."""
    from shared.verify import node, python

    explicit = explicit_config(facts)
    if explicit is not None:
        return _plan_explicit(facts, req, *explicit)
    if is_python(facts) and (facts.has("pyproject.toml") or facts.has("setup.py") or not facts.has("package.json")):
        return python.plan(facts, req, host)
    if facts.has("package.json"):
        return node.plan(facts, req, host)
    reason = "no toolchain detected (no pyproject.toml, setup.py, requirements.txt or package.json)"
    steps = [none(name, reason) for name in CHECK_STEPS]
    return Plan(toolchain=Toolchain.NONE, source="nothing detected", install=none(StepName.INSTALL, reason),
                steps=steps, stages=[], timeout_minutes=timeout(req, None))


def dependency_files(plan_: Plan) -> tuple[str, ...]:
    """The files whose content keys the install cache and the fingerprint's lockfile part."""
    if plan_.toolchain is Toolchain.NODE:
        return NODE_DEPENDENCY_FILES
    if plan_.toolchain is Toolchain.PYTHON:
        return PYTHON_DEPENDENCY_FILES
    return tuple(dict.fromkeys((*PYTHON_DEPENDENCY_FILES, *NODE_DEPENDENCY_FILES)))
