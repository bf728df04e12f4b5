"""Pure rules of the verify pack: allowed paths, fingerprints, verdicts, step environments, sandbox lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobforge.errors import RepoPathRefused
from shared.verify.environment import StepPaths, step_env
from shared.verify.fingerprint import CodeState, compose, files_digest, fingerprint_parts, ignored, normalise_command
from shared.verify.models import (
    Plan,
    StepName,
    StepResult,
    StepSpec,
    StepStatus,
    Toolchain,
    Verdict,
    VerifyInputs,
)
from shared.verify.paths import check_repo_path, file_url_path
from shared.verify.pins import declared_python, newest_interpreter
from shared.verify.sandbox import SandboxSpec, bwrap_argv
from shared.verify.verdict import interpreter_shortfall, transient_failure, unrun_steps, verdict

# -- paths ------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    (root / "repo").mkdir(parents=True)
    (root / "file.txt").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "inner-link").symlink_to(root / "repo")
    (root / "loop").symlink_to(root / "loop")
    return {"root": root, "outside": outside}


def test_paths_inside_the_root_resolve(tree: dict[str, Path]) -> None:
    """A directory inside the root, also through a symlink that stays inside, resolves to its real path."""
    root = tree["root"]
    assert check_repo_path(str(root / "repo"), [root]) == (root / "repo").resolve()
    assert check_repo_path(str(root / "inner-link"), [root]) == (root / "repo").resolve()


@pytest.mark.parametrize(("name", "reason"), [
    ("escape", "outside_roots"), ("file.txt", "not_a_directory"), ("missing", "missing"), ("loop", "symlink_loop"),
])
def test_bad_paths_are_refused(tree: dict[str, Path], name: str, reason: str) -> None:
    """Escaping symlinks, files, missing paths and symlink loops are refused, each with its reason."""
    with pytest.raises(RepoPathRefused) as info:
        check_repo_path(str(tree["root"] / name), [tree["root"]])
    assert info.value.details["reason"] == reason


def test_traversal_nul_relative_and_rootless_are_refused(tree: dict[str, Path]) -> None:
    """'..' (even landing inside), NUL bytes, relative paths and an empty root list are refused up front."""
    root = tree["root"]
    for raw, reason in ((f"{root}/repo/../repo", "traversal"), (f"{root}/repo\x00", "nul_byte"),
                        ("repo", "relative"), ("  ", "empty")):
        with pytest.raises(RepoPathRefused) as info:
            check_repo_path(raw, [root])
        assert info.value.details["reason"] == reason
    with pytest.raises(RepoPathRefused) as info:
        check_repo_path(str(root / "repo"), [root / "does-not-exist"])
    assert info.value.details["reason"] == "no_roots"


def test_prefix_siblings_are_not_inside(tmp_path: Path) -> None:
    """/x/root-evil is not inside /x/root (is_relative_to, never startswith)."""
    (tmp_path / "root").mkdir()
    (tmp_path / "root-evil").mkdir()
    with pytest.raises(RepoPathRefused):
        check_repo_path(str(tmp_path / "root-evil"), [tmp_path / "root"])


def test_file_urls() -> None:
    """file:// URLs name local paths; a remote host in one is refused; other schemes are not local."""
    assert file_url_path("file:///srv/repos/a%20b") == "/srv/repos/a b"
    assert file_url_path("https://example.invalid/x.git") is None
    with pytest.raises(RepoPathRefused):
        file_url_path("file://evil.example/etc")


def test_inputs_model_rules() -> None:
    """Exactly one source; ref only with a URL; URLs must look like git URLs; refs like refs."""
    assert VerifyInputs.model_validate({"repo_url": "file:///r", "ref": "v1.2"}).source == "file:///r@v1.2"
    bad_inputs: list[dict[str, object]] = [
        {}, {"repo_path": "/a", "repo_url": "file:///b"}, {"repo_path": "/a", "ref": "main"},
        {"repo_url": "--upload-pack=x"}, {"repo_url": "ext::sh -c id"}, {"repo_url": "file:///r", "ref": "a..b"},
        {"repo_url": "file:///r", "ref": "-x"}, {"repo_path": "/a\x00"},
        {"repo_path": "/a", "options": {"steps": ["install"]}},
    ]
    for bad in bad_inputs:
        with pytest.raises(ValueError):
            VerifyInputs.model_validate(bad)


# -- fingerprint ------------------------------------------------------------------------------------

PLAN = Plan(toolchain=Toolchain.PYTHON, source="detected (python)",
            install=StepSpec(name=StepName.INSTALL, argv=["pip", "install", "-r", "/ws/run1/req.txt"]),
            steps=[StepSpec(name=StepName.LINT, argv=["ruff", "check", "."], display="ruff check ."),
                   StepSpec(name=StepName.BUILD, argv=["python", "-m", "build", "--outdir", "/ws/run1/dist"])],
            stages=[[StepName.LINT], [StepName.BUILD]])
CODE = CodeState(kind="git", tree="abc", diff="sha256:d", untracked="sha256:u")


def test_fingerprint_is_stable_across_runs_and_sensitive_to_what_matters() -> None:
    """The workspace path does not change it; code, lockfiles, commands, pack and tools do."""
    parts = fingerprint_parts(CODE, {"uv.lock": "sha256:1"}, PLAN, "/ws/run1", "full", None)
    plan2 = PLAN.model_copy(update={"install": StepSpec(name=StepName.INSTALL,
                                                        argv=["pip", "install", "-r", "/ws/run2/req.txt"]),
                                    "steps": [PLAN.steps[0], StepSpec(name=StepName.BUILD, argv=[
                                        "python", "-m", "build", "--outdir", "/ws/run2/dist"])]})
    same = fingerprint_parts(CODE, {"uv.lock": "sha256:1"}, plan2, "/ws/run2", "full", None)
    tools = {"exe:ruff": "/x/ruff:1:2"}
    base = compose(parts, tools)
    assert base == compose(same, tools) and base.startswith("sha256:")
    variants = [
        fingerprint_parts(CodeState(kind="git", tree="abd", diff="sha256:d", untracked="sha256:u"),
                          {"uv.lock": "sha256:1"}, PLAN, "/ws/run1", "full", None),
        fingerprint_parts(CODE, {"uv.lock": "sha256:2"}, PLAN, "/ws/run1", "full", None),
        fingerprint_parts(CODE, {"uv.lock": "sha256:1"}, PLAN, "/ws/run1", "fast", None),
        fingerprint_parts(CODE, {"uv.lock": "sha256:1"}, PLAN, "/ws/run1", "full", ["lint"]),
    ]
    assert len({base, *(compose(v, tools) for v in variants), compose(parts, {"exe:ruff": "/x/ruff:1:3"})}) == 6


def test_fingerprint_helpers() -> None:
    """File digests ignore order; caches and build outputs are not code; workspace paths are normalised."""
    assert files_digest([("a", "1"), ("b", "2")]) == files_digest([("b", "2"), ("a", "1")])
    assert ignored("node_modules/x/y.js") and ignored("pkg.egg-info/PKG-INFO") and ignored("a/__pycache__/m.pyc")
    assert not ignored("src/build_tools.py")
    assert normalise_command(["--outdir", "/ws/r1/dist"], "/ws/r1") == "--outdir\x1f$WORKSPACE/dist"


# -- verdict ----------------------------------------------------------------------------------------


def result(name: StepName, status: StepStatus) -> StepResult:
    return StepResult(name=name, status=status)


def test_verdict() -> None:
    """Any failure, timeout or cancellation fails; at least one passed check passes; all-skipped verifies nothing."""
    passed = [result(StepName.INSTALL, StepStatus.SKIPPED), result(StepName.LINT, StepStatus.PASSED),
              result(StepName.TEST, StepStatus.SKIPPED)]
    assert verdict(passed) is Verdict.PASSED
    for bad in (StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.CANCELLED):
        assert verdict([*passed, result(StepName.BUILD, bad)]) is Verdict.FAILED
    assert verdict([result(StepName.INSTALL, StepStatus.PASSED), result(StepName.LINT, StepStatus.SKIPPED)]) \
        is Verdict.NOTHING_TO_VERIFY
    assert [r.name for r in unrun_steps(PLAN, [StepName.LINT], "install failed")] == [StepName.BUILD]


# -- environment and sandbox ------------------------------------------------------------------------


def test_step_environment_is_an_allowlist() -> None:
    """Only allowlisted variables pass; registry settings reach install alone; PATH gets the env first."""
    host = {"PATH": "/usr/bin", "LANG": "en_US.UTF-8", "JOBFORGE_DATABASE_URL": "postgresql://u:pw@h/db",
            "AWS_SECRET_ACCESS_KEY": "s", "PIP_INDEX_URL": "https://mirror/simple", "GITHUB_TOKEN": "t"}
    paths = StepPaths(home="/ws/home", tmp="/ws/tmp", path_prefix=("/env/bin",), venv="/env",
                      pip_cache="/c/pip", npm_cache="/c/npm", config_files={"npm": "/root/.npmrc"})
    check = step_env(host, paths, install=False)
    assert check["PATH"] == "/env/bin:/usr/bin" and check["HOME"] == "/ws/home" and check["VIRTUAL_ENV"] == "/env"
    assert not {"JOBFORGE_DATABASE_URL", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "PIP_INDEX_URL"} & set(check)
    assert check["npm_config_cache"] == "/c/npm" and check["CI"] == "true"
    assert "TERM" not in check and "NO_COLOR" not in check  # never forced: colour libraries' tests read them
    assert step_env({**host, "TERM": "xterm-256color"}, paths, install=False)["TERM"] == "xterm-256color"
    assert step_env(host, paths, install=False, extra={"SKIP": "mypy"})["SKIP"] == "mypy"
    install = step_env(host, paths, install=True)
    assert install["PIP_INDEX_URL"] == "https://mirror/simple" and install["PIP_CACHE_DIR"] == "/c/pip"
    assert install["NPM_CONFIG_USERCONFIG"] == "/root/.npmrc" and install["npm_config_cache"] == "/c/npm"
    assert not {"JOBFORGE_DATABASE_URL", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"} & set(install)
    assert step_env({}, paths, install=False)["PATH"].endswith("/usr/bin:/bin")


def test_bwrap_command_line() -> None:
    """Root read-only, repo and workspace writable, JobForge's home hidden then re-exposed, no network but install."""
    spec = SandboxSpec(repo="/src/repo", workspace="/jf/verify/runs/t/r", hidden_dirs=["/jf"],
                       hidden_files=["/root/.netrc"], readonly=["/jf/verify/envs/t/k"])
    argv = bwrap_argv("/usr/bin/bwrap", ["ruff", "check", "."], spec)
    text = " ".join(argv)
    assert argv[0] == "/usr/bin/bwrap" and argv[-4:] == ["--", "ruff", "check", "."]
    assert "--unshare-net" in argv and "--die-with-parent" in argv and "--unshare-pid" in argv
    assert text.index("--ro-bind / /") < text.index("--tmpfs /jf") < text.index("--ro-bind /jf/verify/envs/t/k")
    assert text.index("--tmpfs /jf") < text.index("--bind /jf/verify/runs/t/r /jf/verify/runs/t/r")
    assert "--ro-bind /dev/null /root/.netrc" in text and "--chdir /src/repo" in text
    online = bwrap_argv("bwrap", ["pip"], SandboxSpec(repo="/r", workspace="/w", network=True, writable=["/e"]))
    assert "--unshare-net" not in online and "--bind /e /e" in " ".join(online)
    hidden_repo = bwrap_argv("bwrap", ["x"], SandboxSpec(repo="/jf/other/repo", workspace="/w", hidden_dirs=["/jf"]))
    assert " ".join(hidden_repo).count("--bind /jf/other/repo /jf/other/repo") == 2


def test_bwrap_freezes_a_snapshot_steps_node_modules_over_the_writable_workspace() -> None:
    """The frozen directories are bound read-only after the workspace's writable bind, and their scratch
    directories (node_modules/.cache) mounted empty and writable after that."""
    spec = SandboxSpec(repo="/w/snapshot", workspace="/w", frozen=["/w/tree/node_modules"],
                       scratch=["/w/tree/node_modules/.cache"])
    text = " ".join(bwrap_argv("bwrap", ["eslint", "."], spec))
    assert text.index("--bind /w /w") < text.index("--ro-bind /w/tree/node_modules /w/tree/node_modules") < (
        text.index("--tmpfs /w/tree/node_modules/.cache")) < text.index("--chdir /w/snapshot")


def test_env_allowlist_never_leaks_the_real_environment() -> None:
    """Whatever the worker's environment holds, a check step sees only allowlisted names plus its own."""
    env = step_env(dict(os.environ, JOBFORGE_X="1"), StepPaths(home="/h", tmp="/t"), install=False)
    allowed = {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "TMPDIR", "CI", "TERM", "NO_COLOR", "FORCE_COLOR",
               "COLORTERM", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK", "npm_config_update_notifier",
               "npm_config_fund", "npm_config_audit", "npm_config_cache", "UV_PYTHON_DOWNLOADS", "UV_NO_PROGRESS"}
    assert set(env) <= allowed


@pytest.mark.parametrize(("output", "status"), [
    ("YN0001: │ RequestError: self-signed certificate in certificate chain", "error"),
    ("Fatal Error: unable to access 'https://github.com/yarnpkg/berry.git/': Could not resolve host: github.com",
     "error"),
    ("ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with \"frozen-lockfile\"", "failed"),
    ("  No solution found when resolving dependencies:", "failed"),
    ("error: something nobody has seen before", "error"),
])
def test_a_failed_install_is_the_repository_s_failure_only_when_its_declarations_are(output: str,
                                                                                     status: str) -> None:
    """A stale lock or an unsatisfiable requirement fails the repository; an unreachable host, a TLS failure or
    anything unrecognised is an error of the worker's (the verdict ``error``, exit 2), with the line that says so."""
    from shared.verify.verdict import install_failure

    got, reason = install_failure(f"resolving...\n{output}\ndone\n", "exit code 1")
    assert got.value == status and reason.startswith("exit code 1")
    if status == "failed" or "error: something" not in output:
        assert output.split("  ")[0][:30] in reason


# -- interpreters -----------------------------------------------------------------------------------


def test_newest_interpreter_and_declared_python() -> None:
    """The newest interpreter requires-python admits; the newest Python a repository declares (classifiers,
    tox envs, nox sessions; free-threaded and bare ``py3`` envs name no version)."""
    have = [("3.13.0", "/a"), ("3.12.1", "/b"), ("3.11.7", "/c")]
    assert newest_interpreter(have, ">=3.10") == "3.13"
    assert newest_interpreter(have, ">=3.10,<3.13") == "3.12"
    assert newest_interpreter(have, ">=3.14") == ""
    assert newest_interpreter(have, "not a specifier") == "3.13"
    classifiers = ["Programming Language :: Python :: 3", "Programming Language :: Python :: 3.12",
                   "Programming Language :: Python :: 3.9"]
    assert declared_python(classifiers, []) == "3.12"
    assert declared_python([], ["lint", "py310", "py315-django", "py314t", "py3"]) == "3.15"
    assert declared_python([], ["3.13", "pypy3"]) == "3.13"
    assert declared_python(["Framework :: Django"], ["docs"]) == ""


def test_a_parse_failure_on_an_older_interpreter_is_the_workers_shortfall() -> None:
    """A failed check whose output says the code did not parse, on an interpreter older than the newest Python
    the repository declares, is an error naming the missing interpreter; any other failure is the repository's."""
    output = "debug statements (python)...Failed\ntests/new.py - Could not parse ast\n\n\tinvalid syntax\n"
    reason = interpreter_shortfall(output, "3.11", "3.12")
    assert "Python 3.11" in reason and "declares Python 3.12" in reason and "Could not parse ast" in reason
    assert interpreter_shortfall(output, "3.12", "3.12") == ""  # the declared version itself: the code is wrong
    assert interpreter_shortfall("src/a.py:1:1: F401 `os` imported but unused", "3.11", "3.14") == ""
    assert interpreter_shortfall(output, "", "3.14") == interpreter_shortfall(output, "3.11", "") == ""


def test_a_tool_pool_that_did_not_start_is_the_machines_failure() -> None:
    """mypy's worker pool missing its start-up window is named as the machine's failure; a type error is not."""
    out = "Success: 3\nFailed to establish connection with worker: No status file found\nmypy: exit 2\n"
    assert transient_failure(out) == "Failed to establish connection with worker: No status file found"
    assert transient_failure('src/a.py:3: error: Incompatible return value type (got "str", expected "int")') == ""
