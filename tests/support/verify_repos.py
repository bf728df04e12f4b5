"""Fixture repositories for the verify pack, generated on the fly (Python, Node, explicit configs)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path

#: a GitHub-token-shaped value (not a real token) that must never reach a log artifact
FAKE_GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2
FAKE_AWS_KEY = "AKIA" + "Z7QW3ERTY5UIOPAS"


def write_files(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def git_init(repo: Path) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "HOME": str(repo), "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def explicit_repo(root: Path, name: str, steps: Mapping[str, str], extra: Mapping[str, str] | None = None,
                  order: list[list[str]] | None = None) -> Path:
    """A repository whose ``.jobforge/verify.toml`` names a shell command per step."""
    lines = [f"{step} = {toml_string(command)}" for step, command in steps.items()]
    if order is not None:
        lines.append(f"order = {json.dumps(order)}")
    return write_files(root / name, {".jobforge/verify.toml": "\n".join(lines) + "\n", **(extra or {})})


def node_repo(root: Path, name: str, scripts: Mapping[str, str], extra: Mapping[str, str] | None = None) -> Path:
    """A dependency-free Node repository with these package.json scripts."""
    package = {"name": name, "version": "1.0.0", "private": True, "scripts": dict(scripts)}
    return write_files(root / name, {"package.json": json.dumps(package, indent=2) + "\n", **(extra or {})})


#: the pyproject of the one-module ``toxed`` repository the tox tests build (setuptools, no dependencies)
TOXED_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "toxed"
version = "0.1.0"

[tool.setuptools]
py-modules = ["toxed"]
"""


PYTHON_PASSING = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "fixture-pkg"
        version = "0.1.0"
        requires-python = ">=3.11"

        [tool.setuptools]
        packages = ["fixture_pkg"]

        [tool.ruff]
        line-length = 100

        [tool.mypy]
        strict = true
        files = ["fixture_pkg"]
    """,
    "fixture_pkg/__init__.py": """
        def double(x: int) -> int:
            return 2 * x
    """,
    "tests/test_double.py": """
        from fixture_pkg import double


        def test_double() -> None:
            assert double(21) == 42
    """,
    ".gitignore": "build/\n*.egg-info/\n",
}


def python_repo(root: Path, name: str) -> Path:
    """A Python repository detected from pyproject.toml: ruff, mypy, build and pytest."""
    return write_files(root / name, PYTHON_PASSING)
