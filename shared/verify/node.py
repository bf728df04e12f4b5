"""The plan of a Node repository (pure): the package manager it declares, at that version, installs
into the run's copy; its checks are its own scripts (or targets, or hooks), else detected."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jobforge.errors import VerifyConfigInvalid
from shared.verify import detect, pins, sources
from shared.verify.detect import Host, RepoFacts, Request, none, select, spec
from shared.verify.models import Lane, Plan, StepName, StepSpec, Toolchain, ToolRequest

NPM_PLACEHOLDER_TEST = 'echo "Error: no test specified" && exit 1'
SCRIPT_ALIASES: dict[StepName, tuple[str, ...]] = {
    StepName.LINT: ("lint", "lint:check", "lint:ci"),
    StepName.TYPECHECK: ("typecheck", "type-check", "typecheck:all", "types", "check-types", "types:check",
                         "check:types", "lint:types", "test:types", "tsc"),
    StepName.BUILD: ("build",),
    StepName.TEST: ("test",),
}
#: the npm package that provides each package manager
MANAGER_PACKAGES = {"pnpm": "pnpm", "yarn": "yarn", "yarn-berry": "@yarnpkg/cli-dist", "npm": "npm"}


def package_manager(facts: RepoFacts, package: Mapping[str, Any]) -> pins.PackageManager:
    """The manager and version the repository declares: ``packageManager`` first, then its lockfile."""
    yarnrc = facts.files.get(".yarnrc.yml", "")
    berry_lock = "__metadata:" in facts.files.get("yarn.lock", "")
    declared = pins.parse_package_manager(package.get("packageManager"))
    if declared is not None:
        name, version, integrity = declared
        berry = name == "yarn" and not version.startswith("1.")
        return pins.PackageManager(name, version, "package.json packageManager", integrity, berry)
    if facts.has("pnpm-lock.yaml"):
        head = facts.files.get("pnpm-lock.yaml", "")
        return pins.PackageManager("pnpm", pins.pnpm_for_lockfile(head), "pnpm-lock.yaml lockfileVersion")
    if facts.has("bun.lockb") or facts.has("bun.lock"):
        return pins.PackageManager("bun", "", "bun.lock")
    if facts.has("yarn.lock") or facts.has(".yarnrc.yml"):
        if berry_lock or facts.has(".yarnrc.yml"):
            version = pins.yarn_path_version(yarnrc)
            if version:
                return pins.PackageManager("yarn", version, ".yarnrc.yml yarnPath", berry=True)
            return pins.PackageManager("yarn", pins.yarn_berry_for_lockfile(facts.files.get("yarn.lock", "")),
                                       "yarn.lock __metadata", berry=True)
        return pins.PackageManager("yarn", "1", "yarn.lock (yarn classic)")
    return pins.PackageManager("npm", "", "package-lock.json" if facts.has("package-lock.json") else "default")


def manager_tool(manager: pins.PackageManager, host: Host, yarn_release: str = "") -> ToolRequest | None:
    """What to provision for the manager (None: the worker's own npm serves).

    A yarn 2+ repository that ships its release (``yarnPath``) runs that release whatever yarn starts it:
    any yarn 2+ from the registry serves as the launcher (the declared version may be one the registry
    never had, such as a release candidate)."""
    if manager.berry and yarn_release:
        why = f"launcher of the repository's own {yarn_release} ({manager.why}: yarn {manager.version})"
        return ToolRequest(kind="npm", name=MANAGER_PACKAGES["yarn-berry"], version=">=2", why=why)
    if manager.name == "npm":
        if not manager.version or (host.npm_version and host.npm_version == manager.version):
            return None
        return ToolRequest(kind="npm", name="npm", version=manager.version, why=manager.why,
                           integrity=manager.integrity)
    if manager.name == "bun":
        return ToolRequest(kind="npm", name=f"@oven/bun-linux-{host.arch}", version=manager.version, why=manager.why,
                           integrity=manager.integrity)
    package = MANAGER_PACKAGES["yarn-berry" if manager.berry else manager.name]
    return ToolRequest(kind="npm", name=package, version=manager.version, why=manager.why,
                       integrity=manager.integrity if package == manager.name else "")


def node_tool(facts: RepoFacts, package: Mapping[str, Any], host: Host) -> tuple[ToolRequest | None, str]:
    """The Node to provision when the repository asks for one the worker's node does not satisfy."""
    import nodesemver  # type: ignore[import-untyped]  # node-semver ships no type information; loaded when used

    wanted, where = pins.node_version_request(facts.files, package)
    if not wanted:
        return None, ""
    try:
        satisfied = bool(host.node_version) and nodesemver.satisfies(host.node_version, wanted, loose=True)
    except (ValueError, TypeError):
        return None, f"{where} {wanted!r} is not a version range: the worker's node is used"
    if satisfied:
        return None, ""
    return ToolRequest(kind="npm", name=f"node-linux-{host.arch}", version=wanted, why=where), ""


def install_command(facts: RepoFacts, manager: pins.PackageManager) -> list[str]:
    if manager.name == "pnpm":
        return ["pnpm", "install", "--frozen-lockfile"] if facts.has("pnpm-lock.yaml") else ["pnpm", "install"]
    if manager.name == "yarn":
        if manager.berry:
            return ["yarn", "install", "--immutable"] if facts.has("yarn.lock") else ["yarn", "install"]
        return ["yarn", "install", "--frozen-lockfile"] if facts.has("yarn.lock") else ["yarn", "install"]
    if manager.name == "bun":
        return ["bun", "install", "--frozen-lockfile"] if facts.has("bun.lockb") or facts.has("bun.lock") else [
            "bun", "install"]
    if facts.has("package-lock.json") or facts.has("npm-shrinkwrap.json"):
        return ["npm", "ci"]
    return ["npm", "install", "--no-package-lock"]


#: the root package's scripts ``npm ci`` (like ``npm install``) runs after installing, in this order
NPM_INSTALL_SCRIPTS = ("preinstall", "install", "postinstall", "prepublish", "preprepare", "prepare", "postprepare")


def npm_warm_install(package: Mapping[str, Any]) -> list[list[str]]:
    """What replaces ``npm ci`` when ``node_modules`` was restored from the environment cache and matches the
    lockfile: ``npm ci --dry-run --ignore-scripts``, npm's own check that package.json and the lockfile are in
    sync (what ``npm ci`` refuses to install otherwise; the dry run neither deletes nor writes anything), then
    the root package's install scripts that ``npm ci`` runs after installing, each on its own as ``npm ci`` runs
    them (``--ignore-scripts`` keeps ``npm run`` from adding their pre- and post-scripts a second time)."""
    raw = package.get("scripts")
    scripts = raw if isinstance(raw, dict) else {}
    present = [s for s in NPM_INSTALL_SCRIPTS if isinstance(scripts.get(s), str) and scripts[s].strip()]
    return [["npm", "ci", "--dry-run", "--ignore-scripts"], *(["npm", "run", "--ignore-scripts", s] for s in present)]


def npm_tree_mismatch(lockfile: Mapping[str, Any], hidden: Mapping[str, Any]) -> str:
    """Why an installed ``node_modules`` (its hidden lockfile, ``node_modules/.package-lock.json``) is not what
    ``npm ci`` installs from ``lockfile`` ("" when it is): a locked package missing (unless optional: another
    platform's), at another version or with other contents (integrity), or a package the lockfile does not
    lock."""
    locked = lockfile.get("packages")
    installed = hidden.get("packages")
    if not isinstance(locked, dict) or not isinstance(installed, dict):
        return "no packages section (a lockfile older than lockfileVersion 2, or no hidden lockfile)"
    for path, entry in locked.items():
        if "node_modules/" not in f"{path}" or not isinstance(entry, dict):
            continue
        got = installed.get(path)
        if not isinstance(got, dict):
            if entry.get("optional") or entry.get("devOptional"):
                continue
            return f"{path} is locked but not installed"
        for key in ("version", "link", "integrity"):
            if key == "integrity" and not (entry.get(key) and got.get(key)):
                continue  # a linked or git package has none
            if entry.get(key) != got.get(key):
                return f"{path}: {key} {got.get(key)!r} installed, {entry.get(key)!r} locked"
    extra = [p for p in installed if "node_modules/" in f"{p}" and p not in locked]
    if extra:
        return f"{extra[0]} is installed but not locked"
    return ""


def manager_env(manager: pins.PackageManager, cache: str) -> dict[str, str]:
    """Where each manager keeps its downloads (shared by runs), and no version switching of its own."""
    env = {"npm_config_cache": f"{cache}/npm"}
    if manager.name == "pnpm":
        env.update({"npm_config_store_dir": f"{cache}/pnpm-store", "npm_config_manage_package_manager_versions":
                    "false", "npm_config_package_manager_strict": "false"})
    elif manager.name == "yarn" and manager.berry:
        env.update({"YARN_GLOBAL_FOLDER": f"{cache}/yarn-berry", "YARN_ENABLE_TELEMETRY": "0",
                    "YARN_ENABLE_GLOBAL_CACHE": "true"})
    elif manager.name == "yarn":
        env["YARN_CACHE_FOLDER"] = f"{cache}/yarn"
    elif manager.name == "bun":
        env["BUN_INSTALL_CACHE_DIR"] = f"{cache}/bun"
    env["COREPACK_ENABLE_STRICT"] = "0"
    return env


def _scripts(package: Mapping[str, Any], manager: pins.PackageManager) -> dict[StepName, StepSpec]:
    raw = package.get("scripts")
    scripts = raw if isinstance(raw, dict) else {}
    out: dict[StepName, StepSpec] = {}
    for name, aliases in SCRIPT_ALIASES.items():
        for key in aliases:
            value = scripts.get(key)
            if not isinstance(value, str) or not value.strip():
                continue
            if name is StepName.TEST and value.strip() == NPM_PLACEHOLDER_TEST:
                break
            out[name] = spec(name, [[manager.name, "run", key]], f"package.json scripts.{key}")
            break
    return out


def plan(facts: RepoFacts, req: Request, host: Host) -> Plan:
    try:
        package = json.loads(facts.files["package.json"])
    except json.JSONDecodeError as exc:
        raise VerifyConfigInvalid(f"package.json is not valid JSON: {exc}", file="package.json") from None
    if not isinstance(package, dict):
        raise VerifyConfigInvalid("package.json is not a JSON object", file="package.json")
    manager = package_manager(facts, package)
    deps = {**(package.get("dependencies") or {}), **(package.get("devDependencies") or {})}
    defined = sources.node_defined(facts, req, _scripts(package, manager), "make" in host.available,
                                   hook_python=pins.newest_interpreter(host.interpreters, ""))
    scripts = package.get("scripts") if isinstance(package.get("scripts"), dict) else {}
    detected: dict[StepName, StepSpec] = {}
    # yarn 2+ may install without node_modules (Plug'n'Play): a dependency's executable runs through yarn
    run_bin = ["yarn"] if manager.name == "yarn" and manager.berry else []
    eslint_config = any(facts.has(n) for n in detect.PROBED_PATHS if n.startswith((".eslintrc", "eslint.config")))
    if eslint_config and "eslint" in deps:
        detected[StepName.LINT] = spec(StepName.LINT, [[*run_bin, "eslint", "."]],
                                       "detected: eslint config and dependency")
    else:
        detected[StepName.LINT] = none(StepName.LINT, 'package.json has no "lint" script')
    if not facts.has("tsconfig.json"):
        detected[StepName.TYPECHECK] = none(StepName.TYPECHECK, 'no "typecheck" script and no tsconfig.json')
    elif "typescript" in deps or facts.has("node_modules/.bin/tsc"):
        detected[StepName.TYPECHECK] = spec(StepName.TYPECHECK, [[*run_bin, "tsc", "--noEmit"]],
                                            "detected: tsconfig.json and typescript")
    else:
        detected[StepName.TYPECHECK] = none(StepName.TYPECHECK,
                                            "tsconfig.json is present but typescript is not a dependency")
    detected[StepName.BUILD] = none(StepName.BUILD, 'package.json has no "build" script')
    test_script = scripts.get("test") if isinstance(scripts, dict) else None
    if isinstance(test_script, str) and test_script.strip() == NPM_PLACEHOLDER_TEST:
        detected[StepName.TEST] = none(StepName.TEST, 'the "test" script is npm init\'s placeholder')
    else:
        detected[StepName.TEST] = none(StepName.TEST, 'package.json has no "test" script')
    steps = [select(name, req, defined.steps.get(name) or detected[name]) for name in detected]
    tools: list[ToolRequest] = list(defined.tools.values())
    notes = list(defined.notes)
    node, node_note = node_tool(facts, package, host)
    if node is not None:
        tools.append(node)
    if node_note:
        notes.append(node_note)
    tool = manager_tool(manager, host, facts.yarn_release)
    if tool is not None:
        tools.append(tool)
    env = manager_env(manager, req.cache_dir) if req.cache_dir else {}
    declared = [package.get(k) for k in ("dependencies", "devDependencies", "optionalDependencies")]
    # yarn 2+ runs no script before an install has written its state, dependencies or not
    needs_install = manager.berry or any(isinstance(d, dict) and d for d in declared)
    warm_install: list[list[str]] | None = None
    if not req.install:
        install = none(StepName.INSTALL, "options.install is off: node_modules is used as it is")
    elif not needs_install and not defined.prepare:
        install = none(StepName.INSTALL, "package.json declares no dependencies")
    else:
        commands = [install_command(facts, manager), *defined.prepare] if needs_install else list(defined.prepare)
        origin = f"{manager.name}{' ' + manager.version if manager.version else ''} ({manager.why})"
        install = spec(StepName.INSTALL, commands, origin, network=True)
        if commands and commands[0] == ["npm", "ci"]:
            instead = npm_warm_install(package)
            warm_install = [*instead, *commands[1:]]
            notes.append("install: when node_modules is restored from the environment cache and matches the "
                         "lockfile, `npm ci` (which deletes node_modules) is skipped; instead: "
                         + " && ".join(" ".join(a) for a in instead))
    order = [[StepName.LINT, StepName.TYPECHECK], [StepName.BUILD], [StepName.TEST]]
    stages = detect.stages(order, steps)
    label = f"{manager.name}{'@' + manager.version if manager.version else ''}"
    return Plan(toolchain=Toolchain.NODE, source=f"node ({label}): " + _source(steps), package_manager=label,
                install=install, steps=steps, stages=stages, lanes=lanes(stages),
                timeout_minutes=detect.timeout(req, None), path_prefix=["node_modules/.bin"], notes=notes,
                tools=tools, env=env, files=defined.files, warm_install=warm_install)


#: the checks that only read the tree install left: in ``stages`` they run before build, which writes into it
READ_ONLY_CHECKS = (StepName.LINT, StepName.TYPECHECK)


def lanes(stages: list[list[StepName]]) -> list[Lane]:
    """lint ∥ typecheck in a snapshot of the tree as install left it (the tree they see running first), beside
    build → test in the run's tree (test may need what build wrote): two lanes when each has a step, else none
    (the stages run in turn)."""
    checks = [kept for group in stages if (kept := [n for n in group if n in READ_ONLY_CHECKS])]
    rest = [kept for group in stages if (kept := [n for n in group if n not in READ_ONLY_CHECKS])]
    if not checks or not rest:
        return []
    return [Lane(stages=checks, snapshot=True), Lane(stages=rest)]


def _source(steps: list[StepSpec]) -> str:
    origins = [s.origin for s in steps if s.runnable]
    return ", ".join(dict.fromkeys(o.split(" ", 1)[0] for o in origins)) or "nothing to run"
