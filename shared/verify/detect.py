"""Toolchain detection: which command verifies each step of a repository (pure).

The activity reads the few files that matter into :class:`RepoFacts`; :func:`plan` decides.
An explicit config wins (``.jobforge/verify.toml``, else ``[tool.jobforge.verify]`` in
``pyproject.toml``); otherwise Python or Node is detected from the repository's own files.
A step with nothing to run gets a reason, so the report can say why it was skipped.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import VerifyConfigInvalid
from shared.verify.models import (
    CHECK_STEPS,
    PACK_STEPS,
    Pack,
    Plan,
    StepName,
    StepSpec,
    Toolchain,
)

EXPLICIT_FILE = ".jobforge/verify.toml"
DEFAULT_TIMEOUT_MINUTES = 15.0

#: config files read whole (small text files at the repository root)
CONFIG_FILES = (
    "pyproject.toml", "setup.cfg", "tox.ini", "mypy.ini", ".mypy.ini", "pytest.ini", "ruff.toml", ".ruff.toml",
    ".flake8", "pyrightconfig.json", "package.json", EXPLICIT_FILE,
)
#: files whose content decides what ``install`` puts in the environment
PYTHON_DEPENDENCY_FILES = (
    "pyproject.toml", "setup.py", "setup.cfg", "uv.lock", "poetry.lock", "Pipfile.lock",
    "requirements.txt", "requirements-dev.txt", "requirements_dev.txt", "dev-requirements.txt",
    "requirements-test.txt", "requirements_test.txt", "test-requirements.txt", "requirements/dev.txt",
    "requirements/test.txt", "requirements/tests.txt", "requirements/lint.txt", "requirements/typing.txt",
)
NODE_LOCKFILES = ("pnpm-lock.yaml", "yarn.lock", "package-lock.json", "npm-shrinkwrap.json", "bun.lockb")
NODE_DEPENDENCY_FILES = ("package.json", *NODE_LOCKFILES)
#: paths whose mere presence matters
PROBED_PATHS = (
    "setup.py", "tests", "test", "src", "conftest.py", "tsconfig.json", "node_modules", "node_modules/.bin/tsc",
    ".venv/bin/python", ".yarnrc.yml", *NODE_LOCKFILES, *PYTHON_DEPENDENCY_FILES,
)

_DEV_EXTRA = re.compile(r"^(dev|develop|development|test|tests|testing|lint|linting|typing|types|mypy|check|"
                        r"checks|ci|all|qa)$", re.IGNORECASE)
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_REQUIREMENTS = re.compile(r"^(requirements([-_.][A-Za-z0-9_-]+)?|[A-Za-z0-9_-]+[-_]requirements)\.txt$")
_NPM_PLACEHOLDER_TEST = 'echo "Error: no test specified" && exit 1'


@dataclass(frozen=True)
class RepoFacts:
    """What detection needs to know about a repository, read by the activity."""

    #: relative path -> text, for the :data:`CONFIG_FILES` that exist
    files: Mapping[str, str] = field(default_factory=dict)
    #: the :data:`PROBED_PATHS` that exist
    present: frozenset[str] = frozenset()
    #: names directly in the repository root
    root_entries: frozenset[str] = frozenset()
    #: top-level directories holding an ``__init__.py`` (flat-layout packages)
    python_packages: tuple[str, ...] = ()

    def has(self, path: str) -> bool:
        return path in self.present or path in self.files or path in self.root_entries


@dataclass(frozen=True)
class Host:
    """Where the plan will run: interpreters and the tools found on the worker's PATH."""

    #: interpreter that creates per-repo venvs
    python: str = "python3"
    #: interpreter whose pip installs into them (``pip --python``)
    pip_python: str = "python3"
    available: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Request:
    pack: Pack = Pack.FULL
    selected: tuple[StepName, ...] | None = None
    install: bool = True
    timeout_minutes: float | None = None
    #: the per-repo environment (Python venv) directory
    env_dir: str = ""
    #: where ``build`` writes its output (outside the repository)
    dist_dir: str = ""


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


def _toml(facts: RepoFacts, name: str) -> dict[str, Any]:
    text = facts.files.get(name)
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VerifyConfigInvalid(f"{name} is not valid TOML: {exc}", file=name) from None


def _section(text: str | None, name: str) -> bool:
    return text is not None and re.search(rf"^\[{re.escape(name)}\]\s*$", text, re.MULTILINE) is not None


def explicit_config(facts: RepoFacts) -> tuple[ExplicitConfig, str] | None:
    """The repository's explicit verify config and where it came from, if it has one."""
    raw: Any = None
    source = ""
    if EXPLICIT_FILE in facts.files:
        raw, source = _toml(facts, EXPLICIT_FILE), EXPLICIT_FILE
    else:
        section = _toml(facts, "pyproject.toml").get("tool", {}).get("jobforge", {}).get("verify")
        if section is not None:
            raw, source = section, "pyproject.toml [tool.jobforge.verify]"
    if raw is None:
        return None
    try:
        return ExplicitConfig.model_validate(raw), source
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise VerifyConfigInvalid(f"{source} is invalid: {problems}", file=source) from None


def _command(value: str | list[str]) -> tuple[list[str], str]:
    if isinstance(value, str):
        return ["/bin/sh", "-c", value], value
    return list(value), shlex.join(value)


def _select(name: StepName, req: Request, spec: StepSpec) -> StepSpec:
    if name not in PACK_STEPS[req.pack]:
        return StepSpec(name=name, reason=f"not part of the {req.pack.value} pack")
    if req.selected is not None and name not in req.selected:
        return StepSpec(name=name, reason="not selected (options.steps)")
    return spec


def _stages(order: list[list[StepName]], steps: list[StepSpec]) -> list[list[StepName]]:
    runnable = {s.name for s in steps if s.runnable}
    stages = [[name for name in group if name in runnable] for group in order]
    return [group for group in stages if group]


def _timeout(req: Request, configured: float | None) -> float:
    return req.timeout_minutes or configured or DEFAULT_TIMEOUT_MINUTES


# -- explicit ---------------------------------------------------------------------------------------


def _plan_explicit(facts: RepoFacts, req: Request, config: ExplicitConfig, source: str) -> Plan:
    steps: list[StepSpec] = []
    for name in CHECK_STEPS:
        value = getattr(config, name.value)
        if value is None or value is True:
            spec = StepSpec(name=name, reason=f"no {name.value} command in {source}")
        elif value is False:
            spec = StepSpec(name=name, reason=f"turned off in {source}")
        else:
            argv, display = _command(value)
            spec = StepSpec(name=name, argv=argv, display=display)
        steps.append(_select(name, req, spec))
    if not req.install:
        install = StepSpec(name=StepName.INSTALL, reason="options.install is off")
    elif isinstance(config.install, str | list):
        argv, display = _command(config.install)
        install = StepSpec(name=StepName.INSTALL, argv=argv, display=display, network=True)
    else:
        install = StepSpec(name=StepName.INSTALL, reason=f"no install command in {source}")
    order = config.order or [[StepName.LINT, StepName.TYPECHECK], [StepName.BUILD, StepName.TEST]]
    prefix = [p for p in (".venv/bin", "node_modules/.bin") if facts.has(p.rsplit("/", 1)[0])]
    return Plan(toolchain=Toolchain.EXPLICIT, source=source, install=install, steps=steps,
                stages=_stages(order, steps), timeout_minutes=_timeout(req, config.timeout_minutes),
                path_prefix=prefix)


# -- python -----------------------------------------------------------------------------------------


def is_python(facts: RepoFacts) -> bool:
    markers = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "uv.lock", "poetry.lock", "Pipfile")
    return any(facts.has(m) for m in markers) or any(name.endswith(".py") for name in facts.root_entries)


def _requirement_names(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    matches = [_REQ_NAME.match(value) for value in values if isinstance(value, str)]
    return [m.group(1).lower() for m in matches if m]


def requirement_files(facts: RepoFacts) -> list[str]:
    """requirements*.txt at the root (and the usual names under requirements/), documentation ones excepted."""
    root = [n for n in facts.root_entries if _REQUIREMENTS.match(n) and "doc" not in n.lower()]
    nested = [n for n in PYTHON_DEPENDENCY_FILES if n.startswith("requirements/") and facts.has(n)]
    return sorted(root) + nested


def _python_dev_requirements(pyproject: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(extras, dependency groups, poetry dev requirement names) that look like dev/test tooling."""
    project = pyproject.get("project", {})
    extras = sorted(k for k in project.get("optional-dependencies", {}) if _DEV_EXTRA.match(k))
    groups = sorted(k for k in pyproject.get("dependency-groups", {}) if _DEV_EXTRA.match(k))
    poetry = pyproject.get("tool", {}).get("poetry", {})
    poetry_names: list[str] = []
    sections = [poetry.get("dev-dependencies", {})]
    sections += [g.get("dependencies", {}) for k, g in poetry.get("group", {}).items()
                 if _DEV_EXTRA.match(k) and isinstance(g, dict)]
    for section in sections:
        if isinstance(section, dict):
            poetry_names += [name.lower() for name in section if name.lower() != "python"]
    return extras, groups, sorted(set(poetry_names))


def _all_python_requirements(pyproject: Mapping[str, Any]) -> set[str]:
    project = pyproject.get("project", {})
    names = set(_requirement_names(project.get("dependencies", [])))
    for values in project.get("optional-dependencies", {}).values():
        names.update(_requirement_names(values))
    for values in pyproject.get("dependency-groups", {}).values():
        names.update(_requirement_names(values))
    _, _, poetry = _python_dev_requirements(pyproject)
    names.update(poetry)
    return names


def _python_lint(facts: RepoFacts, pyproject: Mapping[str, Any], requirements: set[str]) -> StepSpec:
    tool = pyproject.get("tool", {})
    if "ruff" in tool or facts.has("ruff.toml") or facts.has(".ruff.toml") or "ruff" in requirements:
        return StepSpec(name=StepName.LINT, argv=["ruff", "check", "."], display="ruff check .")
    if (facts.has(".flake8") or _section(facts.files.get("setup.cfg"), "flake8")
            or _section(facts.files.get("tox.ini"), "flake8") or "flake8" in requirements):
        return StepSpec(name=StepName.LINT, argv=["flake8"], display="flake8")
    return StepSpec(name=StepName.LINT,
                    reason="no Python linter configured (no [tool.ruff], ruff.toml or flake8 configuration)")


def _mypy_has_targets(facts: RepoFacts, pyproject: Mapping[str, Any]) -> bool:
    section = pyproject.get("tool", {}).get("mypy", {})
    if any(key in section for key in ("files", "packages", "modules")):
        return True
    for name in ("mypy.ini", ".mypy.ini", "setup.cfg"):
        text = facts.files.get(name) or ""
        if re.search(r"^\s*files\s*=", text, re.MULTILINE) and "[mypy]" in text:
            return True
    return False


def _python_typecheck(facts: RepoFacts, pyproject: Mapping[str, Any]) -> StepSpec:
    tool = pyproject.get("tool", {})
    if ("mypy" in tool or facts.has("mypy.ini") or facts.has(".mypy.ini")
            or _section(facts.files.get("setup.cfg"), "mypy")):
        if _mypy_has_targets(facts, pyproject):
            targets: list[str] = []
        elif facts.has("src"):
            targets = ["src"]
        elif facts.python_packages:
            targets = list(facts.python_packages)
        else:
            targets = ["."]
        argv = ["mypy", *targets]
        return StepSpec(name=StepName.TYPECHECK, argv=argv, display=shlex.join(argv))
    if "pyright" in tool or facts.has("pyrightconfig.json"):
        return StepSpec(name=StepName.TYPECHECK, argv=["pyright"], display="pyright")
    return StepSpec(name=StepName.TYPECHECK,
                    reason="no type checker configured ([tool.mypy], mypy.ini, [tool.pyright] or pyrightconfig.json)")


def _python_build(facts: RepoFacts, pyproject: Mapping[str, Any], req: Request) -> StepSpec:
    if "build-system" in pyproject or facts.has("setup.py"):
        argv = ["python", "-m", "build", "--no-isolation", "--outdir", req.dist_dir or "dist", "."]
        return StepSpec(name=StepName.BUILD, argv=argv, display=shlex.join(argv))
    return StepSpec(name=StepName.BUILD, reason="no build configuration (no [build-system] in pyproject.toml, "
                                                "no setup.py)")


def _python_test(facts: RepoFacts, pyproject: Mapping[str, Any]) -> StepSpec:
    configured = ("pytest" in pyproject.get("tool", {}) or facts.has("pytest.ini")
                  or _section(facts.files.get("setup.cfg"), "tool:pytest")
                  or _section(facts.files.get("tox.ini"), "pytest"))
    test_files = any(re.match(r"^(test_.*|.*_test)\.py$", name) for name in facts.root_entries)
    if configured or facts.has("tests") or facts.has("test") or facts.has("conftest.py") or test_files:
        return StepSpec(name=StepName.TEST, argv=["python", "-m", "pytest"], display="python -m pytest")
    return StepSpec(name=StepName.TEST, reason="no tests found (no tests/ directory, conftest.py, test_*.py or "
                                               "pytest configuration)")


_STEP_TOOLS = {"ruff": "ruff", "flake8": "flake8", "mypy": "mypy", "pyright": "pyright"}


def _python_install(facts: RepoFacts, pyproject: Mapping[str, Any], steps: list[StepSpec], req: Request,
                    host: Host) -> tuple[StepSpec, list[str]]:
    notes: list[str] = []
    env = req.env_dir
    env_python = f"{env}/bin/python"
    tools: list[str] = []
    for spec in steps:
        if not spec.runnable:
            continue
        if spec.argv[0] in _STEP_TOOLS:
            tools.append(_STEP_TOOLS[spec.argv[0]])
        elif spec.name is StepName.TEST:
            tools.append("pytest")
        elif spec.name is StepName.BUILD:
            tools.append("build")
            tools += [r for r in pyproject.get("build-system", {}).get("requires", []) if isinstance(r, str)]
            if "build-system" not in pyproject:
                tools += ["setuptools", "wheel"]
    create = [host.python, "-m", "venv", "--clear", "--without-pip", env]
    if facts.has("uv.lock") and "uv" in host.available:
        sync = ["uv", "sync", "--frozen", "--all-extras", "--python", env_python]
        extra = [sync]
        if tools:
            extra.append(["uv", "pip", "install", "--python", env_python, *tools])
        display = "uv sync --frozen --all-extras"
        return StepSpec(name=StepName.INSTALL, argv=create, extra=extra, display=display, network=True), notes
    if facts.has("poetry.lock") and "poetry" in host.available:
        extra = [["poetry", "install", "--no-interaction", "--all-extras"]]
        if tools:
            extra.append([host.pip_python, "-m", "pip", "--python", env_python, "install", "--no-input", *tools])
        return StepSpec(name=StepName.INSTALL, argv=create, extra=extra, display="poetry install", network=True), notes
    if facts.has("uv.lock"):
        notes.append("uv.lock found but uv is not installed on the worker: installed with pip from pyproject.toml")
    if facts.has("poetry.lock"):
        notes.append("poetry.lock found but poetry is not installed on the worker: installed with pip")
    args: list[str] = []
    for name in requirement_files(facts):
        args += ["-r", name]
    extras, groups, poetry_dev = _python_dev_requirements(pyproject)
    if "project" in pyproject or "poetry" in pyproject.get("tool", {}) or facts.has("setup.py") or (
            "build-system" in pyproject):
        args += ["-e", f".[{','.join(extras)}]" if extras else "."]
    for group in groups:
        args += ["--group", group]
    args += poetry_dev
    args += tools
    if not args:
        return StepSpec(name=StepName.INSTALL, reason="nothing to install (no dependencies declared)"), notes
    pip = [host.pip_python, "-m", "pip", "--python", env_python, "install", "--no-input",
           "--disable-pip-version-check", *args]
    display = shlex.join(["python", "-m", "venv", env]) + " && " + shlex.join(["pip", "install", *args])
    return StepSpec(name=StepName.INSTALL, argv=create, extra=[pip], display=display, network=True), notes


def _plan_python(facts: RepoFacts, req: Request, host: Host) -> Plan:
    pyproject = _toml(facts, "pyproject.toml")
    requirements = _all_python_requirements(pyproject)
    raw_steps = [
        _python_lint(facts, pyproject, requirements),
        _python_typecheck(facts, pyproject),
        _python_build(facts, pyproject, req),
        _python_test(facts, pyproject),
    ]
    steps = [_select(spec.name, req, spec) for spec in raw_steps]
    notes: list[str] = []
    if req.install:  # tools for every configured step, whatever the pack: one environment serves all packs
        install, notes = _python_install(facts, pyproject, raw_steps, req, host)
        prefix = [f"{req.env_dir}/bin"]
        env_dir = req.env_dir
    else:
        install = StepSpec(name=StepName.INSTALL, reason="options.install is off: the repository's own environment "
                                                         "is used")
        prefix = [".venv/bin"] if facts.has(".venv/bin/python") else []
        env_dir = ""
    if facts.has("package.json"):
        notes.append("package.json is present too: only the Python toolchain was verified "
                     f"(choose the commands in {EXPLICIT_FILE})")
    order = [[StepName.LINT, StepName.TYPECHECK], [StepName.BUILD, StepName.TEST]]
    return Plan(toolchain=Toolchain.PYTHON, source="detected (python)", package_manager="pip", install=install,
                steps=steps, stages=_stages(order, steps), env_dir=env_dir, timeout_minutes=_timeout(req, None),
                path_prefix=prefix, notes=notes)


# -- node -------------------------------------------------------------------------------------------


def node_package_manager(facts: RepoFacts, package: Mapping[str, Any]) -> str:
    if facts.has("pnpm-lock.yaml"):
        return "pnpm"
    if facts.has("yarn.lock"):
        return "yarn"
    if facts.has("package-lock.json") or facts.has("npm-shrinkwrap.json"):
        return "npm"
    declared = package.get("packageManager")
    if isinstance(declared, str) and declared.split("@", 1)[0] in ("npm", "pnpm", "yarn"):
        return declared.split("@", 1)[0]
    return "npm"


def _node_install(facts: RepoFacts, package: Mapping[str, Any], manager: str) -> StepSpec:
    declared = [package.get(k) for k in ("dependencies", "devDependencies", "optionalDependencies")]
    if not any(isinstance(d, dict) and d for d in declared):
        return StepSpec(name=StepName.INSTALL, reason="package.json declares no dependencies")
    if manager == "pnpm":
        argv = ["pnpm", "install", "--frozen-lockfile"] if facts.has("pnpm-lock.yaml") else ["pnpm", "install"]
    elif manager == "yarn":
        frozen = "--immutable" if facts.has(".yarnrc.yml") else "--frozen-lockfile"
        argv = ["yarn", "install", frozen] if facts.has("yarn.lock") else ["yarn", "install"]
    elif facts.has("package-lock.json") or facts.has("npm-shrinkwrap.json"):
        argv = ["npm", "ci", "--no-audit", "--no-fund"]
    else:
        argv = ["npm", "install", "--no-audit", "--no-fund"]
    return StepSpec(name=StepName.INSTALL, argv=argv, display=shlex.join(argv), network=True)


def _plan_node(facts: RepoFacts, req: Request) -> Plan:
    try:
        package = json.loads(facts.files["package.json"])
    except json.JSONDecodeError as exc:
        raise VerifyConfigInvalid(f"package.json is not valid JSON: {exc}", file="package.json") from None
    if not isinstance(package, dict):
        raise VerifyConfigInvalid("package.json is not a JSON object", file="package.json")
    scripts = package.get("scripts") if isinstance(package.get("scripts"), dict) else {}
    assert isinstance(scripts, dict)
    manager = node_package_manager(facts, package)
    deps = {**(package.get("dependencies") or {}), **(package.get("devDependencies") or {})}

    def script(name: StepName, *aliases: str) -> StepSpec | None:
        for key in (name.value, *aliases):
            if isinstance(scripts.get(key), str) and scripts[key].strip():
                argv = [manager, "run", key]
                return StepSpec(name=name, argv=argv, display=shlex.join(argv))
        return None

    lint = script(StepName.LINT) or StepSpec(name=StepName.LINT, reason='package.json has no "lint" script')
    typecheck = script(StepName.TYPECHECK, "type-check")
    if typecheck is None:
        if not facts.has("tsconfig.json"):
            typecheck = StepSpec(name=StepName.TYPECHECK,
                                 reason='no "typecheck" script and no tsconfig.json')
        elif "typescript" in deps or facts.has("node_modules/.bin/tsc"):
            typecheck = StepSpec(name=StepName.TYPECHECK, argv=["tsc", "--noEmit"], display="tsc --noEmit")
        else:
            typecheck = StepSpec(name=StepName.TYPECHECK,
                                 reason="tsconfig.json is present but typescript is not a dependency")
    build = script(StepName.BUILD) or StepSpec(name=StepName.BUILD, reason='package.json has no "build" script')
    test_script = scripts.get("test")
    if isinstance(test_script, str) and test_script.strip() == _NPM_PLACEHOLDER_TEST:
        test = StepSpec(name=StepName.TEST, reason='the "test" script is npm init\'s placeholder')
    else:
        test = script(StepName.TEST) or StepSpec(name=StepName.TEST, reason='package.json has no "test" script')
    steps = [_select(spec.name, req, spec) for spec in (lint, typecheck, build, test)]
    install = (_node_install(facts, package, manager) if req.install
               else StepSpec(name=StepName.INSTALL, reason="options.install is off: node_modules is used as it is"))
    order = [[StepName.LINT, StepName.TYPECHECK], [StepName.BUILD], [StepName.TEST]]
    return Plan(toolchain=Toolchain.NODE, source=f"detected (node, {manager})", package_manager=manager,
                install=install, steps=steps, stages=_stages(order, steps), timeout_minutes=_timeout(req, None),
                path_prefix=["node_modules/.bin"])


# -- entry point ------------------------------------------------------------------------------------


def plan(facts: RepoFacts, req: Request, host: Host) -> Plan:
    """The steps that verify this repository, with a reason for each step that has nothing to run."""
    explicit = explicit_config(facts)
    if explicit is not None:
        return _plan_explicit(facts, req, *explicit)
    python = is_python(facts)
    if python and (facts.has("pyproject.toml") or facts.has("setup.py") or not facts.has("package.json")):
        return _plan_python(facts, req, host)
    if facts.has("package.json"):
        return _plan_node(facts, req)
    reason = "no toolchain detected (no pyproject.toml, setup.py, requirements.txt or package.json)"
    steps = [StepSpec(name=name, reason=reason) for name in CHECK_STEPS]
    return Plan(toolchain=Toolchain.NONE, source="nothing detected", install=StepSpec(name=StepName.INSTALL,
                reason=reason), steps=steps, stages=[], timeout_minutes=_timeout(req, None))


def dependency_files(plan_: Plan) -> tuple[str, ...]:
    """The files whose content keys the install cache and the fingerprint's lockfile part."""
    if plan_.toolchain is Toolchain.NODE:
        return NODE_DEPENDENCY_FILES
    if plan_.toolchain is Toolchain.PYTHON:
        return PYTHON_DEPENDENCY_FILES
    return (*PYTHON_DEPENDENCY_FILES, *NODE_DEPENDENCY_FILES)
