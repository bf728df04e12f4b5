"""The documentation site builds offline in strict mode, and loads nothing from other hosts."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.procs import ROOT

#: hosts a built page may name in a <script src> or <link href> (none: the site is self-contained)
_EXTERNAL_ASSET = re.compile(r"""<(?:script|link)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as `make docs` builds it (strict), into a directory of this test's own."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true",
           # the build must not need the network: any attempt to reach a proxy or host fails fast
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}", pytrace=False)
    return out


def test_the_strict_build_passes_and_writes_every_page(site: Path) -> None:
    """Every page of the nav is built, the generated reference pages included."""
    for page in ("index.html", "architecture/index.html", "security/index.html", "reference/index.html"):
        assert (site / page).is_file(), page


def test_no_page_loads_an_asset_from_another_host(site: Path) -> None:
    """No Google Fonts, no CDN: a page works offline and tells no third party who read it."""
    offenders = [str(page.relative_to(site)) for page in site.rglob("*.html")
                 if _EXTERNAL_ASSET.search(page.read_text())]
    assert not offenders


def test_the_configuration_fails_on_any_broken_link_or_reference() -> None:
    """Strict mode is on and every link, anchor and nav problem is a warning (so an error under --strict)."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)  # every value as text
    assert config["strict"] == "true"
    assert config["theme"]["font"] == "false"
    assert {config["validation"]["links"][k] for k in ("not_found", "anchors", "absolute_links")} == {"warn"}
    assert config["validation"]["nav"]["not_found"] == "warn"
    assert "--strict" in (ROOT / "Makefile").read_text().split("\ndocs:", 1)[1].split("\n\n", 1)[0]


def _page(site: Path, name: str) -> str:
    # <wbr> marks where a long name may wrap; it is not part of the text
    return html.unescape((site / "reference" / name / "index.html").read_text().replace("<wbr>", ""))


def _commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, f"{path} {name}")


def test_the_cli_reference_has_every_command_and_option(site: Path) -> None:
    """Every command of the three programs, and every option of each, is on the generated CLI page."""
    import typer.main

    from workers.api import cli as api_cli
    from workers.cli import app
    from workers.worker import app as worker_app

    page = _page(site, "cli")
    # each command's section: from its heading to the next heading
    sections = {m[1]: m[2] for m in re.finditer(r"<h[1-6][^>]*><code>([^<]+)</code>(.*?)(?=<h[1-6]|\Z)", page,
                                                 re.DOTALL)}
    missing = []
    for program, typer_app in (("jobforge", app), ("jobforge-worker", worker_app), ("jobforge-api", api_cli)):
        for path, command in _commands(typer.main.get_command(typer_app), program):
            section = sections.get(path)
            if section is None:
                missing.append(path)
                continue
            missing += [f"{path} {opt}" for param in command.params for opt in getattr(param, "opts", [])
                        if opt.startswith("-") and not re.search(rf"{re.escape(opt)}\b", section)]
    assert "jobforge triggers create" in sections and missing == []


def test_the_error_settings_and_metrics_references_are_complete(site: Path) -> None:
    """Every registered error code (with its HTTP status), setting, flag and metric is on its generated page."""
    from jobforge.errors import ERRORS_BY_CODE
    from shared import metrics
    from shared.flags import Flag
    from shared.settings import specs

    errors = _page(site, "errors")
    for code, cls in ERRORS_BY_CODE.items():
        status = cls.status
        assert re.search(rf"<code>{code}</code></td>\s*<td>{status}</td>", errors), code
    settings = _page(site, "settings")
    for name in (spec.name for spec in specs()):
        assert f"JOBFORGE_{name.upper()}" in settings, name
    assert all(flag.value in settings for flag in Flag)
    served = _page(site, "metrics")
    names = [v for k, v in vars(metrics).items() if k.isupper() and isinstance(v, str) and v.startswith("jobforge_")]
    assert names and all(name in served for name in names)


def test_the_http_reference_has_every_operation_of_the_openapi_document(site: Path) -> None:
    """Each path and method of the API's OpenAPI document has a section, and the document is published."""
    document = json.loads((site / "reference" / "openapi.json").read_text())
    page = _page(site, "http-api")
    operations = [f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops]
    assert "POST /v1/jobs" in operations
    assert [op for op in operations if op not in page] == []


def test_the_sdk_reference_renders_the_clients_docstrings(site: Path) -> None:
    """mkdocstrings rendered both transports of the SDK from their docstrings."""
    from shared.client import OperatorClient

    page = _page(site, "sdk")
    words = (OperatorClient.request_job.__doc__ or "").split("``")[0].strip()  # up to the first literal
    assert words and "JobForgeClient" in page and "request_job" in page and words in page


def test_every_tutorial_and_how_to_is_run_and_every_code_block_in_it_runs() -> None:
    """Each tutorial and how-to page is on the e2e runner's list, and each of its shell and python blocks is
    run (or written as a file) by the doc runner, or carries a skip mark with its reason."""
    from tests.support.docpages import DOCS, HOW_TOS, TUTORIALS
    from tests.support.docrun import parse

    pages = sorted(str(p.relative_to(DOCS)) for folder in ("tutorials", "how-to")
                   for p in (DOCS / folder).glob("*.md") if p.name != "index.md")
    assert sorted((*TUTORIALS, *HOW_TOS)) == pages
    unrun = [block.where for page in pages for block in parse((DOCS / page).read_text(), page)
             if block.lang in ("sh", "bash", "shell", "console", "python", "py") and not block.runs]
    assert unrun == []


def _guide_blocks() -> Iterator[tuple[str, Any]]:
    from tests.support.docpages import DOCS, HOW_TOS, TUTORIALS
    from tests.support.docrun import parse

    for page in (*TUTORIALS, *HOW_TOS):
        for block in parse((DOCS / page).read_text(), page):
            yield page, block


def test_every_variable_the_guides_name_is_a_setting_or_a_flag() -> None:
    """A JOBFORGE_* name in a tutorial or how-to (run or not) is a field of Settings or a feature flag."""
    from shared.flags import Flag
    from shared.settings import specs
    from tests.support.docpages import DOCS, HOW_TOS, TUTORIALS

    known = {f"JOBFORGE_{spec.name.upper()}" for spec in specs()} | {flag.value for flag in Flag}
    named = {(page, name) for page in (*TUTORIALS, *HOW_TOS)
             for name in re.findall(r"\b(?:JOBFORGE|REPLAY|VERIFY)_[A-Z_]*[A-Z]\b", (DOCS / page).read_text())}
    assert named and sorted(n for n in named if n[1] not in known) == []


def test_the_commands_of_blocks_that_are_not_run_exist_as_written() -> None:
    """In a skipped block, every `jobforge ...` line names an existing command with existing options, and every
    `docker compose` line names services of docker-compose.yml: what cannot run here is still checked."""
    import shlex

    import typer.main

    from workers.cli import app

    root = typer.main.get_command(app)
    services = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])
    problems: list[str] = []
    skipped = [(page, block) for page, block in _guide_blocks() if block.skip is not None]
    for page, block in skipped:
        for line in block.text.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "jobforge" in words:
                command, args = root, words[words.index("jobforge") + 1:]
                while args and args[0] in getattr(command, "commands", {}):
                    command, args = command.commands[args[0]], args[1:]
                options = {opt for param in command.params for opt in getattr(param, "opts", [])}
                problems += [f"{page}: {line}: {arg}" for arg in args
                             if arg.startswith("--") and arg.split("=")[0] not in options]
                if command is root:
                    problems.append(f"{page}: {line}: no such command")
            if words[:2] == ["docker", "compose"]:
                sub = words[2] if len(words) > 2 else ""
                scaled = [w.split("=")[0] for i, w in enumerate(words) if words[i - 1] == "--scale"]
                plain = [w for i, w in enumerate(words[3:], start=3) if not w.startswith("-")
                         and words[i - 1] not in ("--scale", "-f", "--file")]
                # `exec`/`run` take one service then its command; `up`, `logs`, ... take services
                named = plain[:1] if sub in ("exec", "run") else plain if sub in ("up", "logs", "restart", "stop",
                                                                                   "start", "ps", "pull") else []
                problems += [f"{page}: {line}: no service {name}" for name in [*scaled, *named]
                             if name not in services]
    assert skipped and problems == []
