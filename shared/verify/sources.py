"""The project's own definitions of its checks, as plan steps (pure): pre-commit, tox, nox, hatch,
make and just.

Each finder answers the step it defines (with its origin), what ``install`` must prepare for it
(hook environments, tox envs, nox sessions: the steps themselves run without the network) and the
toolchains to provision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.verify import precommit, runners
from shared.verify.detect import RepoFacts, Request, spec
from shared.verify.models import StepName, StepSpec, ToolRequest

MAKEFILES = ("GNUmakefile", "makefile", "Makefile")
JUSTFILES = ("justfile", ".justfile", "Justfile")


@dataclass
class Defined:
    """What the project's own definitions contribute to a plan."""

    steps: dict[StepName, StepSpec] = field(default_factory=dict)
    #: commands ``install`` runs after the environment is built (hook envs, tox envs, nox sessions)
    prepare: list[list[str]] = field(default_factory=list)
    tools: dict[str, ToolRequest] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def tool(self, request: ToolRequest) -> None:
        self.tools.setdefault(request.name, request)


def precommit_steps(facts: RepoFacts, req: Request, out: Defined, typecheck_defined: bool,
                    hook_python: str = "") -> None:
    """lint (and typecheck, when nothing else defines it) from ``.pre-commit-config.yaml``; its Python hooks
    run on ``hook_python`` (``3.13``) unless the configuration names a version itself."""
    text = facts.files.get(precommit.CONFIG_FILE)
    if text is None:
        return
    config = req.precommit_config
    translation = precommit.translate(text, config, hook_python)
    out.files[config] = precommit.dump(translation.config)
    minimum = str(translation.config.get("minimum_pre_commit_version", "")).strip()
    out.tool(ToolRequest(kind="pypi", name="pre-commit", version=f">={minimum}" if minimum else "",
                         why=".pre-commit-config.yaml"))
    for hook, reason in translation.skipped.items():
        out.notes.append(f"pre-commit hook {hook} not run: {reason}")
    if translation.provisions:
        pins = ", ".join(sorted({p.split(" (", 1)[0] for p in translation.provisions.values()}))
        out.notes.append(f"pre-commit hooks run at their pinned revs from the registries: {pins}")
    if translation.python:
        out.notes.append(f"pre-commit's Python hooks run on Python {translation.python}"
                         + (" (the newest interpreter on this worker that requires-python admits, as pre-commit.ci "
                            "and setup-python's '3.x' run the newest release)" if translation.python == hook_python
                            else " (default_language_version)"))
    runnable = [h for h in translation.hooks if h not in translation.skipped]
    if not runnable:
        return
    # the version JobForge chose (the newest the worker has): a parse failure on it is the worker's shortfall
    chosen = translation.python if translation.python and translation.python == hook_python else ""
    typecheck_hooks = translation.typecheck_hooks
    run = ["pre-commit", "run", "--all-files", "--show-diff-on-failure", "--config", config]
    skip = list(translation.skipped)
    origin = precommit.CONFIG_FILE
    if typecheck_hooks and not typecheck_defined:
        commands = [["pre-commit", "run", hook, "--all-files", "--show-diff-on-failure", "--config", config]
                    for hook in typecheck_hooks]
        out.steps[StepName.TYPECHECK] = spec(StepName.TYPECHECK, commands,
                                             f"{origin} hook{'s' if len(typecheck_hooks) > 1 else ''} "
                                             + ", ".join(typecheck_hooks)).model_copy(
            update={"python": chosen})
        skip += typecheck_hooks
    if len(set(skip)) < len(set(translation.hooks) | set(translation.skipped)):
        env = {"SKIP": ",".join(dict.fromkeys(skip))} if skip else {}
        out.steps[StepName.LINT] = spec(StepName.LINT, [run], origin, env=env).model_copy(
            update={"own_tree": True, "python": chosen})
    out.prepare.append(["pre-commit", "install-hooks", "--config", config])


def _tox(facts: RepoFacts, pyproject: Mapping[str, Any], python_version: str, out: Defined) -> None:
    envs, where, requires = runners.tox_envs(facts.files, pyproject)
    if not envs:
        return
    chosen: dict[StepName, str] = {}
    for name in (StepName.LINT, StepName.TYPECHECK, StepName.BUILD):
        found = runners.pick(envs, runners.ALIASES[name])
        if found is not None:
            chosen[name] = found
    test = runners.tox_test_env(envs, python_version)
    if test is not None:
        chosen[StepName.TEST] = test
    for name, env in chosen.items():
        if name not in out.steps:
            out.steps[name] = spec(name, [["tox", "-e", env, "--skip-pkg-install"]], f"{where} env {env}")
    if chosen:
        out.tool(ToolRequest(kind="pypi", name="tox", version=requires, why=where))
        out.prepare.append(["tox", "-e", ",".join(dict.fromkeys(chosen.values())), "--notest"])


def _nox(facts: RepoFacts, python_version: str, out: Defined) -> None:
    text = facts.files.get("noxfile.py")
    if text is None:
        return
    sessions = runners.nox_sessions(text)
    chosen: dict[StepName, str] = {}
    for name in (StepName.LINT, StepName.TYPECHECK, StepName.BUILD, StepName.TEST):
        found = runners.nox_session_for(sessions, runners.ALIASES[name], python_version)
        if found is not None and name not in out.steps:
            chosen[name] = found
    # sessions without a venv_backend of their own get uv's environments (built from the warm uv cache in
    # seconds, where virtualenv + pip take minutes); a session that names its backend keeps it
    backend = ["--default-venv-backend", "uv"]
    for name, session in chosen.items():
        out.steps[name] = spec(name, [["nox", "--no-install", "--reuse-existing-virtualenvs", *backend, "-s",
                                       session]], f"noxfile.py session {session}")
    if chosen:
        out.tool(ToolRequest(kind="pypi", name="nox", version=">=2024.4.15", why="noxfile.py"))
        # an environment restored from the cache (activities.envcache) is brought up to date, not rebuilt
        out.prepare.append(["nox", "--install-only", "--reuse-existing-virtualenvs", *backend, "-s",
                            *dict.fromkeys(chosen.values())])


def _hatch(facts: RepoFacts, pyproject: Mapping[str, Any], req: Request, out: Defined, uv: str) -> None:
    scripts = runners.hatch_scripts(pyproject, facts.files)
    if not scripts:
        return
    chosen: dict[StepName, tuple[str, str]] = {}
    for name in (StepName.LINT, StepName.TYPECHECK, StepName.BUILD, StepName.TEST):
        if name in out.steps:
            continue
        for alias in runners.ALIASES[name]:
            hit = next(((e, s) for e, s in scripts if s.lower() == alias), None)
            if hit is None:
                hit = next(((e, s) for e, s in scripts if e.lower() == alias and s in ("check", "run", "all")), None)
            if hit is not None:
                chosen[name] = hit
                break
    for name, (env, script) in chosen.items():
        target = script if env == "default" else f"{env}:{script}"
        out.steps[name] = spec(name, [["hatch", "run", target]], f"hatch env {env} script {script}")
    if chosen:
        out.tool(ToolRequest(kind="pypi", name="hatch", why="[tool.hatch.envs]"))
        out.env["HATCH_DATA_DIR"] = f"{req.env_dir}-hatch"
        if uv:  # hatch's environments built by JobForge's uv instead of virtualenv + pip
            out.env["HATCH_ENV_TYPE_VIRTUAL_UV_PATH"] = uv
        for env in dict.fromkeys(e for e, _ in chosen.values()):
            out.prepare.append(["hatch", "env", "create", env])


def _targets(facts: RepoFacts, out: Defined, host_make: bool) -> None:
    makefile = next((m for m in MAKEFILES if m in facts.files), None)
    justfile = next((j for j in JUSTFILES if j in facts.files), None)
    make = runners.make_targets(facts.files[makefile]) if makefile else []
    just = runners.just_recipes(facts.files[justfile]) if justfile else []
    for name in (StepName.LINT, StepName.TYPECHECK, StepName.BUILD, StepName.TEST):
        if name in out.steps:
            continue
        target = runners.pick(make, runners.TARGET_ALIASES[name])
        if target is not None and makefile is not None:
            if host_make:
                out.steps[name] = spec(name, [["make", target]], f"{makefile} target {target}")
            else:
                out.notes.append(f"{makefile} defines {target}, but make is not installed on this worker")
            continue
        recipe = runners.pick(just, runners.TARGET_ALIASES[name])
        if recipe is not None and justfile is not None:
            out.steps[name] = spec(name, [["just", recipe]], f"{justfile} recipe {recipe}")
            out.tool(ToolRequest(kind="pypi", name="rust-just", why=justfile))


def python_defined(facts: RepoFacts, pyproject: Mapping[str, Any], req: Request, python_version: str,
                   host_make: bool, hook_python: str = "", uv: str = "") -> Defined:
    out = Defined()
    _tox(facts, pyproject, python_version, out)
    _nox(facts, python_version, out)
    _hatch(facts, pyproject, req, out, uv)
    _targets(facts, out, host_make)
    runner_lint = out.steps.pop(StepName.LINT, None)
    precommit_steps(facts, req, out, typecheck_defined=StepName.TYPECHECK in out.steps, hook_python=hook_python)
    if StepName.LINT not in out.steps and runner_lint is not None:
        out.steps[StepName.LINT] = runner_lint
    return out


def node_defined(facts: RepoFacts, req: Request, scripts: Mapping[StepName, StepSpec], host_make: bool,
                 hook_python: str = "") -> Defined:
    out = Defined()
    out.steps.update(scripts)
    _targets(facts, out, host_make)
    runner_lint = out.steps.pop(StepName.LINT, None)
    precommit_steps(facts, req, out, typecheck_defined=StepName.TYPECHECK in out.steps, hook_python=hook_python)
    if StepName.LINT not in out.steps and runner_lint is not None:
        out.steps[StepName.LINT] = runner_lint
    return out
