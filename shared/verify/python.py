"""The plan of a Python repository (pure): its environment built by uv (or Poetry for a Poetry lock)
in the run's own directory, its checks from its own definitions or detected with pinned tools."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared.verify import detect, pins, runners, sources
from shared.verify.detect import Host, RepoFacts, Request, none, select, spec
from shared.verify.models import Plan, StepName, StepSpec, Toolchain, ToolRequest, shell_display

_DEV = re.compile(r"^(dev|develop|development|test|tests|testing|lint|linting|typing|types|mypy|check|checks|ci|all|"
                  r"qa|style|typecheck|type-check)$", re.IGNORECASE)
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_REQUIREMENTS = re.compile(r"^(requirements([-_.][A-Za-z0-9_-]+)?|[A-Za-z0-9_-]+[-_]requirements)\.txt$")
#: packages detection-based steps run, and the package that provides each executable
STEP_TOOLS = {"ruff": "ruff", "flake8": "flake8", "mypy": "mypy", "pyright": "pyright", "pytest": "pytest",
              "build": "build", "black": "black"}


def requirement_names(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    matches = [_REQ_NAME.match(value) for value in values if isinstance(value, str)]
    return [pins.normalise(m.group(1)) for m in matches if m]


def requirement_files(facts: RepoFacts) -> list[str]:
    """requirements*.txt at the root (and the usual names under requirements/), documentation ones excepted."""
    root = [n for n in facts.root_entries if _REQUIREMENTS.match(n) and "doc" not in n.lower()]
    nested = [n for n in detect.PYTHON_DEPENDENCY_FILES if n.startswith("requirements/") and facts.has(n)]
    return sorted(root) + nested


def dev_selection(pyproject: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(extras, dependency groups, poetry groups) that look like dev/test tooling."""
    project = pyproject.get("project", {})
    extras = sorted(k for k in project.get("optional-dependencies", {}) if _DEV.match(k))
    groups = sorted(k for k in pyproject.get("dependency-groups", {}) if _DEV.match(k))
    poetry = pyproject.get("tool", {}).get("poetry", {})
    poetry_groups = sorted(k for k, g in poetry.get("group", {}).items() if _DEV.match(k) and isinstance(g, dict))
    return extras, groups, poetry_groups


def declared_names(facts: RepoFacts, pyproject: Mapping[str, Any]) -> set[str]:
    """Every package the repository declares anywhere (dependencies, extras, groups, requirement files)."""
    project = pyproject.get("project", {})
    names = set(requirement_names(project.get("dependencies", [])))
    for values in project.get("optional-dependencies", {}).values():
        names.update(requirement_names(values))
    for values in pyproject.get("dependency-groups", {}).values():
        names.update(requirement_names(values))
    poetry = pyproject.get("tool", {}).get("poetry", {})
    for table in (poetry.get("dependencies", {}), poetry.get("dev-dependencies", {}),
                  *(g.get("dependencies", {}) for g in poetry.get("group", {}).values() if isinstance(g, dict))):
        if isinstance(table, dict):
            names.update(pins.normalise(n) for n in table if n.lower() != "python")
    for name in requirement_files(facts):
        for line in facts.files.get(name, "").splitlines():
            match = _REQ_NAME.match(line)
            if match and not line.lstrip().startswith(("-", "#")):
                names.add(pins.normalise(match.group(1)))
    return names


# -- detection --------------------------------------------------------------------------------------


def _pin_note(tool: str, found: Mapping[str, pins.Pin], declared: set[str]) -> str:
    pin = found.get(tool)
    if pin is not None:
        return f"{tool} {pin.version} pinned in {pin.where}"
    if tool in declared:
        return f"{tool} as the repository declares it"
    return f"{tool} not pinned by the repository: latest"


def _detect_lint(facts: RepoFacts, pyproject: Mapping[str, Any], declared: set[str],
                 found: Mapping[str, pins.Pin]) -> StepSpec:
    tool = pyproject.get("tool", {})
    ruff_conf = "ruff" in tool or facts.has("ruff.toml") or facts.has(".ruff.toml")
    if ruff_conf or "ruff" in declared:
        commands = [["ruff", "check", "."]]
        ruff_format = (isinstance(tool.get("ruff"), dict) and "format" in tool["ruff"]) or detect.section(
            facts.files.get("ruff.toml") or facts.files.get(".ruff.toml"), "format")
        if ruff_format:
            commands.append(["ruff", "format", "--check", "."])
        return spec(StepName.LINT, commands, "detected: " + _pin_note("ruff", found, declared))
    if (facts.has(".flake8") or detect.section(facts.files.get("setup.cfg"), "flake8")
            or detect.section(facts.files.get("tox.ini"), "flake8") or "flake8" in declared):
        return spec(StepName.LINT, [["flake8"]], "detected: " + _pin_note("flake8", found, declared))
    return none(StepName.LINT, "no Python linter configured (no pre-commit config, [tool.ruff], ruff.toml or "
                               "flake8 configuration, no lint env, session or target)")


def _mypy_has_targets(facts: RepoFacts, pyproject: Mapping[str, Any]) -> bool:
    table = pyproject.get("tool", {}).get("mypy", {})
    if any(key in table for key in ("files", "packages", "modules")):
        return True
    for name in ("mypy.ini", ".mypy.ini", "setup.cfg"):
        text = facts.files.get(name) or ""
        if re.search(r"^\s*files\s*=", text, re.MULTILINE) and "[mypy]" in text:
            return True
    return False


def _detect_typecheck(facts: RepoFacts, pyproject: Mapping[str, Any], declared: set[str],
                      found: Mapping[str, pins.Pin]) -> StepSpec:
    tool = pyproject.get("tool", {})
    commands: list[list[str]] = []
    notes: list[str] = []
    if ("mypy" in tool or facts.has("mypy.ini") or facts.has(".mypy.ini")
            or detect.section(facts.files.get("setup.cfg"), "mypy")):
        if _mypy_has_targets(facts, pyproject):
            targets: list[str] = []
        elif facts.has("src"):
            targets = ["src"]
        elif facts.python_packages:
            targets = list(facts.python_packages)
        else:
            targets = ["."]
        commands.append(["mypy", *targets])
        notes.append(_pin_note("mypy", found, declared))
    if "pyright" in tool or facts.has("pyrightconfig.json"):
        commands.append(["pyright"])
        notes.append(_pin_note("pyright", found, declared))
    if not commands:
        return none(StepName.TYPECHECK, "no type checker configured ([tool.mypy], mypy.ini, [tool.pyright] or "
                                        "pyrightconfig.json; no typecheck env, session, hook or target)")
    return spec(StepName.TYPECHECK, commands, "detected: " + "; ".join(notes))


def _detect_build(facts: RepoFacts, pyproject: Mapping[str, Any], req: Request) -> StepSpec:
    if "build-system" in pyproject or facts.has("setup.py"):
        argv = ["python", "-m", "build", "--no-isolation", "--outdir", req.dist_dir or "dist", "."]
        return spec(StepName.BUILD, [argv], "detected: [build-system] in pyproject.toml"
                    if "build-system" in pyproject else "detected: setup.py")
    return none(StepName.BUILD, "no build configuration (no [build-system] in pyproject.toml, no setup.py)")


def _detect_test(facts: RepoFacts, pyproject: Mapping[str, Any], declared: set[str],
                 found: Mapping[str, pins.Pin]) -> StepSpec:
    configured = ("pytest" in pyproject.get("tool", {}) or facts.has("pytest.ini")
                  or detect.section(facts.files.get("setup.cfg"), "tool:pytest")
                  or detect.section(facts.files.get("tox.ini"), "pytest"))
    test_files = any(re.match(r"^(test_.*|.*_test)\.py$", name) for name in facts.root_entries)
    if configured or facts.has("tests") or facts.has("test") or facts.has("conftest.py") or test_files:
        return spec(StepName.TEST, [["python", "-m", "pytest"]], "detected: " + _pin_note("pytest", found, declared))
    return none(StepName.TEST, "no tests found (no tests/ directory, conftest.py, test_*.py or pytest configuration)")


# -- install ----------------------------------------------------------------------------------------


def _step_packages(steps: list[StepSpec], pyproject: Mapping[str, Any]) -> list[str]:
    """Packages that detection-based steps need in the environment."""
    needed: list[str] = []
    for step in steps:
        if not step.runnable or not step.origin.startswith("detected"):
            continue
        for argv in step.commands():
            head = argv[2] if argv[:2] == ["python", "-m"] else argv[0]
            if head in STEP_TOOLS:
                needed.append(STEP_TOOLS[head])
            if step.name is StepName.BUILD:
                needed += [r for r in pyproject.get("build-system", {}).get("requires", []) if isinstance(r, str)]
                if "build-system" not in pyproject:
                    needed += ["setuptools", "wheel"]
    return list(dict.fromkeys(needed))


def _tool_requirements(packages: list[str], declared: set[str], locked: Mapping[str, str],
                       found: Mapping[str, pins.Pin]) -> list[str]:
    """What ``uv pip install`` adds for the steps: nothing the lock or the declarations already bring;
    pinned tools at their pin."""
    out: list[str] = []
    for requirement in packages:
        match = _REQ_NAME.match(requirement)
        name = pins.normalise(match.group(1)) if match else requirement
        if name in locked or (not locked and name in declared):
            continue
        pin = found.get(name)
        out.append(f"{name}=={pin.version}" if pin is not None and requirement == name else requirement)
    return out


def _install(facts: RepoFacts, pyproject: Mapping[str, Any], req: Request, interpreter: str,
             steps: list[StepSpec], declared: set[str], found: Mapping[str, pins.Pin],
             defined: sources.Defined) -> tuple[StepSpec, list[ToolRequest], list[str], dict[str, str]]:
    env_python = f"{req.env_dir}/bin/python"
    extras, groups, poetry_groups = dev_selection(pyproject)
    tools: list[ToolRequest] = []
    notes: list[str] = []
    env: dict[str, str] = {}
    commands: list[list[str]]
    locked: dict[str, str] = {}
    if facts.has("uv.lock"):
        locked = pins.uv_lock_versions(facts.files.get("uv.lock", ""))
        sync = ["uv", "sync", "--locked", "--all-extras"]
        for group in groups:
            sync += ["--group", group]
        commands = [["uv", "venv", "--clear", "--python", interpreter, req.env_dir], [*sync, "--python", interpreter]]
        origin = "uv.lock (uv sync)"
    elif facts.has("poetry.lock") and "poetry" in pyproject.get("tool", {}):
        locked = pins.poetry_lock_versions(facts.files.get("poetry.lock", ""))
        version = pins.poetry_version(facts.files.get("poetry.lock", ""))
        tools.append(ToolRequest(kind="pypi", name="poetry", version=f"=={version}" if version else "",
                                 why=f"poetry.lock (written by Poetry {version})" if version else "poetry.lock"))
        install = ["poetry", "install", "--no-interaction", "--all-extras"]
        if poetry_groups:
            install += ["--with", ",".join(poetry_groups)]
        commands = [["uv", "venv", "--seed", "--clear", "--python", interpreter, req.env_dir], install]
        env["POETRY_VIRTUALENVS_CREATE"] = "false"
        origin = "poetry.lock (poetry install)"
    else:
        args: list[str] = []
        for name in requirement_files(facts):
            args += ["-r", name]
        if "project" in pyproject or "poetry" in pyproject.get("tool", {}) or facts.has("setup.py") or (
                "build-system" in pyproject):
            args += ["-e", f".[{','.join(extras)}]" if extras else "."]
        for group in groups:
            args += ["--group", group]
        commands = [["uv", "venv", "--clear", "--python", interpreter, req.env_dir]]
        if args:
            commands.append(["uv", "pip", "install", "--python", env_python, *args])
        origin = "pyproject.toml / requirements (uv pip install)"
        notes += [f"{lock} is not read: dependencies come from pyproject.toml and requirement files"
                  for lock in ("pdm.lock", "Pipfile.lock") if facts.has(lock)]
    extra = _tool_requirements(_step_packages(steps, pyproject), declared, locked, found)
    if extra:
        commands.append(["uv", "pip", "install", "--python", env_python, *extra])
    commands += defined.prepare
    step = StepSpec(name=StepName.INSTALL, argv=commands[0], extra=commands[1:], network=True, origin=origin,
                    env=env, display=shell_display(commands, env))
    return step, tools, notes, env


def plan(facts: RepoFacts, req: Request, host: Host) -> Plan:
    pyproject = detect.toml(facts, "pyproject.toml")
    found = pins.tool_pins(facts.files)
    declared = declared_names(facts, pyproject)
    requires = str(pyproject.get("project", {}).get("requires-python", "")
                   or pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {}).get("python", ""))
    requires = _poetry_to_pep440(requires)
    pinned = pins.python_version_file(facts.files.get(".python-version", ""))
    version, interpreter, python_note = pins.choose_interpreter(host.interpreters, requires, pinned,
                                                                host.python_version)
    hooks_on = pins.newest_interpreter(host.interpreters, requires)
    uv = f"{host.uv_bin_dir}/uv" if host.uv_bin_dir else ""
    defined = sources.python_defined(facts, pyproject, req, version or host.python_version, "make" in host.available,
                                     hook_python=hooks_on, uv=uv)
    detected = {
        StepName.LINT: _detect_lint(facts, pyproject, declared, found),
        StepName.TYPECHECK: _detect_typecheck(facts, pyproject, declared, found),
        StepName.BUILD: _detect_build(facts, pyproject, req),
        StepName.TEST: _detect_test(facts, pyproject, declared, found),
    }
    raw = [defined.steps.get(name) or detected[name] for name in detected]
    steps = [select(s.name, req, s) for s in raw]
    notes = list(defined.notes)
    error = ""
    if python_note:
        notes.append(python_note)
    tools = list(defined.tools.values())
    env = {"UV_PROJECT_ENVIRONMENT": req.env_dir, **defined.env}
    if req.install:
        if not interpreter:
            error = python_note
            install = none(StepName.INSTALL, python_note)
        else:
            install, install_tools, install_notes, _ = _install(facts, pyproject, req, interpreter, raw, declared,
                                                                found, defined)
            tools += install_tools
            notes += install_notes
        prefix = [f"{req.env_dir}/bin"]
        env_dir = req.env_dir
    else:
        install = none(StepName.INSTALL, "options.install is off: the repository's own environment is used")
        prefix = [".venv/bin"] if facts.has(".venv/bin/python") else []
        env_dir = ""
        env = dict(defined.env)
    if facts.has("PKG-INFO") and not facts.has(".git"):
        match = re.search(r"^Version:\s*(\S+)", facts.files.get("PKG-INFO", ""), re.MULTILINE)
        if match:  # an sdist: setuptools-scm and friends read the version they were released with
            env["SETUPTOOLS_SCM_PRETEND_VERSION"] = match.group(1)
    if facts.has("package.json"):
        notes.append("package.json is present too: only the Python toolchain was verified "
                     f"(choose the commands in {detect.EXPLICIT_FILE})")
    if version:
        notes.append(f"Python {version} ({interpreter})" + (f" for requires-python {requires!r}" if requires else ""))
    # the tests start at once beside the checks that read the code (in CI each is a job of its own), so the two
    # long steps (type checker, tests) overlap; the build, which writes its metadata (egg-info) into the
    # tree, comes after the checks that read the tree
    order = [[StepName.LINT, StepName.TYPECHECK, StepName.TEST], [StepName.BUILD]]
    workers = mypy_workers(facts, pyproject)
    typecheck = next(s for s in steps if s.name is StepName.TYPECHECK)
    if workers > 1 and typecheck.runnable:
        # mypy's own worker pool gives each worker a few seconds to start: beside another CPU-bound step on a
        # small worker it can miss that, failing a check that passes in CI, where each job has its runner
        order = [[StepName.LINT, StepName.TEST], [StepName.TYPECHECK], [StepName.BUILD]]
        notes.append(f"typecheck runs alone: mypy starts {workers} worker processes of its own (num_workers)")
    envs, _, _ = runners.tox_envs(facts.files, pyproject)
    sessions = [p for _, pythons in runners.nox_sessions(facts.files.get("noxfile.py", "")) for p in pythons]
    classifiers = pyproject.get("project", {}).get("classifiers", [])
    newest = pins.declared_python(classifiers if isinstance(classifiers, list) else [], [*envs, *sessions])
    return Plan(toolchain=Toolchain.PYTHON, source=_source(steps), package_manager="uv", install=install, steps=steps,
                stages=detect.stages(order, steps), env_dir=env_dir, timeout_minutes=detect.timeout(req, None),
                path_prefix=prefix, notes=notes, tools=tools, interpreter=interpreter, env=env, error=error,
                files=defined.files, declared_python=newest)


def mypy_workers(facts: RepoFacts, pyproject: Mapping[str, Any]) -> int:
    """The ``num_workers`` the repository configures mypy with (0 when it does not)."""
    value: object = pyproject.get("tool", {}).get("mypy", {}).get("num_workers")
    if value is None:
        for name in ("mypy.ini", ".mypy.ini", "setup.cfg"):
            text = facts.files.get(name) or ""
            section = re.search(r"^\[mypy\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
            found = re.search(r"^\s*num_workers\s*=\s*(\d+)", section.group(1), re.MULTILINE) if section else None
            if found:
                value = found.group(1)
                break
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        return 0


def _source(steps: list[StepSpec]) -> str:
    origins = [s.origin for s in steps if s.runnable]
    own = [o for o in origins if not o.startswith("detected")]
    if not own:
        return "detected (python)"
    return "python: " + ", ".join(dict.fromkeys(o.split(" ", 1)[0] for o in own)) + (
        " + detection" if len(own) < len(origins) else "")


def _poetry_to_pep440(spec_: str) -> str:
    """Poetry's ``^3.9`` / ``~3.9`` as PEP 440 (``>=3.9,<4``); PEP 440 passes through."""
    parts = [p.strip() for p in spec_.split(",") if p.strip()]
    out: list[str] = []
    for part in parts:
        if part.startswith("^"):
            version = part[1:]
            major = version.split(".")[0]
            out += [f">={version}", f"<{int(major) + 1}" if major.isdigit() else ""]
        elif part.startswith("~") and not part.startswith("~="):
            version = part[1:]
            bits = version.split(".")
            upper = f"{bits[0]}.{int(bits[1]) + 1}" if len(bits) > 1 and bits[1].isdigit() else ""
            out += [f">={version}", f"<{upper}" if upper else ""]
        elif re.match(r"^\d", part):
            out.append(f"=={part}")
        else:
            out.append(part)
    return ",".join(p for p in out if p and p != "*")

