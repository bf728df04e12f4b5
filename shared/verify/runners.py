"""The task runners a repository defines its checks in: tox, nox, hatch, make and just (pure).

Each finder reads the runner's own file and answers, for a step, the environment / session /
script / target the project would run for it, so the verify pack runs ``tox -e lint`` where the
project's CI does, not a command JobForge made up.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from shared.verify.models import StepName

#: names a runner's environments, sessions, scripts or targets use for each step, best first
ALIASES: dict[StepName, tuple[str, ...]] = {
    StepName.LINT: ("lint", "linting", "lint-check", "style", "pre-commit", "precommit", "ruff", "flake8"),
    StepName.TYPECHECK: ("typecheck", "type-check", "type_check", "typing", "types", "type", "mypy", "pyright",
                         "check-types", "typecheck-all"),
    StepName.BUILD: ("build", "package", "packaging", "pkg", "dist"),
    StepName.TEST: ("test", "tests", "unit", "unittest", "unit-tests", "pytest"),
}
#: Makefile / justfile targets: the step's own name (and its usual spellings) only
TARGET_ALIASES: dict[StepName, tuple[str, ...]] = {
    StepName.LINT: ("lint",),
    StepName.TYPECHECK: ("typecheck", "type-check", "typing", "types", "mypy"),
    StepName.BUILD: ("build",),
    StepName.TEST: ("test", "tests"),
}


def _expand(text: str) -> list[str]:
    """tox's brace expansion: ``py{39,310}-django{42,50}`` -> every combination."""
    match = re.search(r"\{([^{}]*)\}", text)
    if match is None:
        return [text]
    head, tail = text[: match.start()], text[match.end():]
    options: list[str] = []
    for option in (o.strip() for o in match.group(1).split(",")):
        bounds = re.fullmatch(r"(\d+)-(\d+)", option)  # tox 4's ranges: py3{10-13}
        if bounds and int(bounds.group(1)) <= int(bounds.group(2)) <= int(bounds.group(1)) + 100:
            options += [str(n) for n in range(int(bounds.group(1)), int(bounds.group(2)) + 1)]
        else:
            options.append(option)
    return [expanded for option in options for expanded in _expand(head + option + tail)]


def _split_envlist(value: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if char in ",\n" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    names: list[str] = []
    for part in parts:
        part = part.split("#", 1)[0].strip()
        if part:
            names += _expand(part)
    return names


def _ini(text: str) -> configparser.RawConfigParser | None:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return parser


def tox_envs(files: Mapping[str, str], pyproject: Mapping[str, Any]) -> tuple[list[str], str, str]:
    """(env names, where defined, tox requirement spec) of a repository's tox configuration."""
    names: list[str] = []
    where = ""
    requires = ""
    texts: list[tuple[str, str, str]] = []  # (file, ini text, section prefix)
    if "tox.ini" in files:
        texts.append(("tox.ini", files["tox.ini"], ""))
    legacy = pyproject.get("tool", {}).get("tox", {}).get("legacy_tox_ini")
    if isinstance(legacy, str):
        texts.append(("pyproject.toml [tool.tox]", legacy, ""))
    if "setup.cfg" in files and re.search(r"^\[tox:tox\]", files["setup.cfg"], re.MULTILINE):
        texts.append(("setup.cfg [tox:tox]", files["setup.cfg"], "tox:"))
    for file, text, prefix in texts:
        parser = _ini(text)
        if parser is None:
            continue
        main = f"{prefix}tox" if prefix else "tox"
        if parser.has_section(main):
            names += _split_envlist(parser.get(main, "envlist", fallback="") or parser.get(main, "env_list",
                                                                                            fallback=""))
            requires = requires or _tox_requirement(parser.get(main, "requires", fallback=""),
                                                    parser.get(main, "minversion", fallback="")
                                                    or parser.get(main, "min_version", fallback=""))
        for section in parser.sections():
            if section.startswith("testenv:"):
                names += _expand(section.split(":", 1)[1].strip())
        where = where or file
    toml_sources: list[tuple[str, Mapping[str, Any]]] = []
    if "tox.toml" in files:
        with contextlib.suppress(tomllib.TOMLDecodeError):
            toml_sources.append(("tox.toml", tomllib.loads(files["tox.toml"])))
    native = pyproject.get("tool", {}).get("tox", {})
    if isinstance(native, dict) and ("env_list" in native or "env" in native):
        toml_sources.append(("pyproject.toml [tool.tox]", native))
    for file, data in toml_sources:
        env_list = data.get("env_list", [])
        if isinstance(env_list, list):
            names += [str(n) for n in env_list]
        envs = data.get("env", {})
        if isinstance(envs, dict):
            names += [str(n) for n in envs]
        req = data.get("requires", [])
        if isinstance(req, list):
            requires = requires or _tox_requirement("\n".join(map(str, req)), str(data.get("min_version", "")))
        where = where or file
    return list(dict.fromkeys(names)), where, requires


def _tox_requirement(requires: str, minversion: str) -> str:
    for line in requires.splitlines():
        match = re.match(r"^\s*tox\s*([<>=!~].*)$", line)
        if match:
            return match.group(1).strip()
    return f">={minversion.strip()}" if minversion.strip() else ""


def nox_sessions(noxfile: str) -> list[tuple[str, list[str]]]:
    """(session name, python versions) of each ``@nox.session`` in a noxfile (read, never run)."""
    try:
        tree = ast.parse(noxfile)
    except SyntaxError:
        return []
    module_strings: dict[str, list[str]] = {}
    for statement in tree.body:
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            module_strings[statement.targets[0].id] = _strings(statement.value, {})
    sessions: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            target = call.func if call is not None else deco
            if not (isinstance(target, ast.Attribute) and target.attr == "session") and not (
                    isinstance(target, ast.Name) and target.id == "session"):
                continue
            name = node.name
            pythons: list[str] = []
            for kw in call.keywords if call is not None else []:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    name = kw.value.value
                if kw.arg in ("python", "py"):
                    pythons = _strings(kw.value, module_strings)
            sessions.append((name, pythons))
    return sessions


def _strings(node: ast.expr, names: Mapping[str, list[str]]) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.List | ast.Tuple):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    if isinstance(node, ast.Name):
        return list(names.get(node.id, []))
    return []


def hatch_scripts(pyproject: Mapping[str, Any], files: Mapping[str, str]) -> list[tuple[str, str]]:
    """(env, script) pairs of hatch's ``[tool.hatch.envs.<env>.scripts]`` (also ``hatch.toml``)."""
    envs: Mapping[str, Any] = pyproject.get("tool", {}).get("hatch", {}).get("envs", {})
    if "hatch.toml" in files:
        with contextlib.suppress(tomllib.TOMLDecodeError):
            envs = {**envs, **tomllib.loads(files["hatch.toml"]).get("envs", {})}
    out: list[tuple[str, str]] = []
    for env, config in envs.items():
        if isinstance(config, dict) and isinstance(config.get("scripts"), dict):
            out += [(str(env), str(script)) for script in config["scripts"]]
    return out


def make_targets(text: str) -> list[str]:
    """Explicit targets of a Makefile (not pattern rules, not variable assignments)."""
    names: list[str] = []
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9_./-]*(?:\s+[A-Za-z0-9][A-Za-z0-9_./-]*)*)\s*:(?![=:])", line)
        if match and not line.startswith(("\t", " ")):
            names += match.group(1).split()
    return list(dict.fromkeys(n for n in names if not n.startswith(".")))


def just_recipes(text: str) -> list[str]:
    names: list[str] = []
    for line in text.splitlines():
        if line.startswith((" ", "\t", "#", "set ", "export ", "alias ", "import ", "mod ")):
            continue
        match = re.match(r"^@?([A-Za-z0-9_-]+)(?:\s+[^:=]*)?:(?!=)", line)
        if match:
            names.append(match.group(1))
    return list(dict.fromkeys(names))


def pick(names: Iterable[str], aliases: Iterable[str]) -> str | None:
    """The first alias that is one of ``names`` (case-insensitive, ``_`` = ``-``)."""
    table = {n.lower().replace("_", "-"): n for n in names}
    for alias in aliases:
        hit = table.get(alias.replace("_", "-"))
        if hit is not None:
            return hit
    return None


def tox_test_env(names: Iterable[str], python_version: str) -> str | None:
    """The tox env that runs the tests on ``python_version`` (``py311``, ``3.11``, ``py311-...``), or a
    generic one (``py``, ``test``)."""
    names = list(names)
    parts = python_version.split(".")
    short = f"py{parts[0]}{parts[1]}" if len(parts) >= 2 else ""
    dotted = f"{parts[0]}.{parts[1]}" if len(parts) >= 2 else ""
    for name in names:
        if name in (short, dotted, f"py{dotted}"):
            return name
    for name in names:
        factors = name.split("-")
        if (short and short in factors) or (dotted and dotted in factors):
            return name
    return pick(names, ("py", "py3", *ALIASES[StepName.TEST]))


def nox_session_for(sessions: Iterable[tuple[str, list[str]]], aliases: Iterable[str],
                    python_version: str) -> str | None:
    """``name`` or ``name-3.12`` for the first session with one of the aliases."""
    table = list(sessions)
    name = pick([s for s, _ in table], aliases)
    if name is None:
        return None
    pythons = next(p for s, p in table if s == name)
    if not pythons:
        return name
    dotted = ".".join(python_version.split(".")[:2])
    return f"{name}-{dotted}" if dotted in pythons else f"{name}-{pythons[-1]}"
