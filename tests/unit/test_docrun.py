"""The doc runner: a page's shell blocks run as one session, and a broken command fails it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.docrun import Block, DocrunError, Outcome, Session, parse, stack_command

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def run(tmp_path: Path, page: str, **kwargs: float) -> list[tuple[int, Outcome]]:
    blocks = parse(page, "page.md")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    report = Session(blocks, work, ENV).run(**kwargs)
    return [(r.block.line, r.outcome) for r in report.results]


def test_blocks_and_directives_are_read_with_their_lines() -> None:
    """Fences of every language are found (in list items too); directives attach to the next block."""
    page = ("# t\n\n```sh\necho a\n```\n\n<!-- docrun: skip shows a placeholder -->\n\n```bash\necho <id>\n```\n"
            "1. item\n\n   ```python\n   print(1)\n   ```\n"
            "<!-- docrun: known-failure issue 7 -->\n<!-- docrun: expect ^ok$ -->\n<!-- docrun: timeout 5 -->\n"
            "~~~shell\necho ok\n~~~\n")
    blocks = parse(page, "p.md")
    assert [(b.line, b.lang) for b in blocks] == [(3, "sh"), (9, "bash"), (14, "python"), (20, "shell")]
    assert blocks[1].skip == "shows a placeholder" and not blocks[1].runnable
    assert blocks[2].text == "print(1)\n" and not blocks[2].runnable
    assert (blocks[3].known_failure, blocks[3].expect, blocks[3].timeout) == ("issue 7", ("^ok$",), 5.0)


@pytest.mark.parametrize(("page", "problem"), [
    ("<!-- docrun: skipp x -->\n```sh\ntrue\n```\n", "unknown docrun directive"),
    ("<!-- docrun: skip -->\n```sh\ntrue\n```\n", "needs a reason"),
    ("<!-- docrun: skip x -->\ntext\n```sh\ntrue\n```\n", "right before a fenced block"),
    ("```sh\ntrue\n```\n<!-- docrun: skip x -->\n", "has no block"),
    ("<!-- docrun: expect ( -->\n```sh\ntrue\n```\n", "not a regular expression"),
    ("<!-- docrun: skip x -->\n```python\npass\n```\n", "never run"),
    ("<!-- docrun: stack -->\n```sh\njobforge dev\necho more\n```\n", "exactly one command"),
    ("<!-- docrun: stack -->\n```sh\nmake run\n```\n", "must run `jobforge dev`"),
])
def test_a_page_marked_wrong_is_refused(page: str, problem: str) -> None:
    """A directive that could hide a block by mistake (typo, no reason, misplaced) is an error, not a pass."""
    with pytest.raises(DocrunError, match=problem):
        parse(page)


def test_a_stack_block_keeps_its_own_arguments() -> None:
    """The `jobforge dev` line of a stack block runs with its own flags and environment; comments go."""
    block = Block("p.md", 1, "sh", "X=1 .venv/bin/jobforge dev --workers 2 \\\n  --headless   # until Ctrl-C\n",
                  stack=True)
    assert stack_command(block) == ["X=1", ".venv/bin/jobforge", "dev", "--workers", "2", "--headless"]


def test_one_session_carries_variables_and_stops_at_the_first_failing_command(tmp_path: Path) -> None:
    """Variables and cd carry over; a failing command fails its block, and the blocks after it do not run."""
    page = ("```sh\nX=$(echo hello)\nmkdir -p sub && cd sub\n```\n"
            "<!-- docrun: expect ^hello in sub$ -->\n```sh\necho \"$X in $(basename \"$PWD\")\"\n```\n"
            "```sh\nfalse\necho not reached > reached\n```\n"
            "```sh\necho never\n```\n")
    assert run(tmp_path, page) == [(1, Outcome.PASSED), (6, Outcome.PASSED), (9, Outcome.FAILED),
                                   (13, Outcome.NOT_RUN)]
    assert not (tmp_path / "work" / "sub" / "reached").exists()


def test_a_failing_pipeline_or_unmatched_output_fails_the_block(tmp_path: Path) -> None:
    """pipefail holds, and an `expect` that the output does not match fails a block that exited 0."""
    assert run(tmp_path, "```sh\nfalse | cat\n```\n") == [(1, Outcome.FAILED)]
    assert run(tmp_path, "<!-- docrun: expect fire -->\n```sh\necho skip\n```\n") == [(2, Outcome.FAILED)]


def test_known_failures_are_reported_both_ways(tmp_path: Path) -> None:
    """A known failure that fails lets the session go on; one that passes fails the run (remove the mark)."""
    page = ("<!-- docrun: known-failure issue 1 -->\n```sh\nfalse\n```\n"
            "```sh\necho after\n```\n"
            "<!-- docrun: known-failure issue 2 -->\n```sh\ntrue\n```\n")
    assert run(tmp_path, page) == [(2, Outcome.KNOWN_FAILURE), (5, Outcome.PASSED), (9, Outcome.UNEXPECTED_PASS)]


def test_blocks_read_no_stdin_and_a_hung_block_is_stopped(tmp_path: Path) -> None:
    """A command reading stdin gets EOF (not the runner's script); a block over its timeout fails the session."""
    assert run(tmp_path, "```sh\ncat\n```\n") == [(1, Outcome.PASSED)]
    page = "<!-- docrun: timeout 0.5 -->\n```sh\nsleep 30\n```\n```sh\ntrue\n```\n"
    assert run(tmp_path, page) == [(2, Outcome.FAILED), (5, Outcome.NOT_RUN)]


def test_a_python_block_marked_run_runs_in_the_session(tmp_path: Path) -> None:
    """A `run` python block sees the session's exported variables and directory, and fails the session like a
    shell block; python blocks without the mark are prose, and the mark is refused on other languages."""
    page = ("```sh\nexport GREETING=hi\nmkdir -p d && cd d\n```\n"
            "<!-- docrun: run -->\n<!-- docrun: expect ^hi d$ -->\n```python\nimport os, pathlib\n"
            "print(os.environ['GREETING'], pathlib.Path.cwd().name)\n```\n"
            "```python\nthis is not python\n```\n"
            "<!-- docrun: run -->\n```python\nraise SystemExit(3)\n```\n")
    assert run(tmp_path, page) == [(1, Outcome.PASSED), (7, Outcome.PASSED), (15, Outcome.FAILED)]
    with pytest.raises(DocrunError, match="is for python blocks"):
        parse("<!-- docrun: run -->\n```json\n{}\n```\n")


def test_a_block_marked_file_is_written_where_it_says_for_the_blocks_after_it(tmp_path: Path) -> None:
    """A `file` block (any language) lands at its path, folders made, text as written (no expansion); the
    blocks after it use it; the mark needs a path and is refused together with `run`."""
    page = ("```sh\nmkdir -p app && cd app\n```\n"
            "<!-- docrun: file pkg/mod.py -->\n```python\nVALUE = '$HOME `x`'\n```\n"
            "<!-- docrun: expect ^VALUE = '\\$HOME `x`'$ -->\n```sh\ncat pkg/mod.py\n```\n")
    assert run(tmp_path, page) == [(1, Outcome.PASSED), (5, Outcome.PASSED), (9, Outcome.PASSED)]
    assert (tmp_path / "work" / "app" / "pkg" / "mod.py").read_text() == "VALUE = '$HOME `x`'\n"
    with pytest.raises(DocrunError, match="needs a path"):
        parse("<!-- docrun: file -->\n```python\npass\n```\n")
    with pytest.raises(DocrunError, match="written, not run"):
        parse("<!-- docrun: file a.py -->\n<!-- docrun: run -->\n```python\npass\n```\n")


def test_the_session_points_temporal_at_its_stack_and_can_activate_the_venv(tmp_path: Path) -> None:
    """TEMPORAL_ADDRESS names the session's own Temporal port; `activate` puts this venv's bin first on PATH."""
    page = ('<!-- docrun: expect ^127.0.0.1:[0-9]+ .*jobforge$ -->\n```sh\n'
            'echo "$TEMPORAL_ADDRESS $(command -v jobforge)"\n```\n')
    work = tmp_path / "work"
    work.mkdir()
    session = Session(parse(page), work, ENV, activate=True)
    report = session.run()
    assert [r.outcome for r in report.results] == [Outcome.PASSED], report.explain()
    assert report.results[0].stdout.startswith(f"127.0.0.1:{session.ports['temporal']} {sys.prefix}/bin/")


def test_a_python_block_that_aborts_in_temporals_known_way_at_exit_passes_on_its_output(tmp_path: Path) -> None:
    """The Temporal SDK's abort while the interpreter finalizes (temporalio/sdk-python#300) after the program
    printed what the page expects counts as a pass; without that output, or any other abort, the block fails."""
    fatal = ("import os, sys\nprint('healthy: True', flush=True)\n"
             "sys.stderr.write('Fatal Python error: PyGILState_Release: thread state 0x1 must be current when "
             "releasing\\nPython runtime state: finalizing (tstate=0x2)\\n')\nsys.stderr.flush()\nos.abort()\n")
    passed = (f"<!-- docrun: run -->\n<!-- docrun: expect healthy: True -->\n```python\n{fatal}```\n"
              "```sh\necho after\n```\n")
    assert run(tmp_path, passed) == [(3, Outcome.PASSED), (10, Outcome.PASSED)]
    unexpected = f"<!-- docrun: run -->\n<!-- docrun: expect healthy: False -->\n```python\n{fatal}```\n"
    assert run(tmp_path, unexpected) == [(3, Outcome.FAILED)]
    other = "<!-- docrun: run -->\n```python\nimport os\nprint('done', flush=True)\nos.abort()\n```\n"
    assert run(tmp_path, other) == [(2, Outcome.FAILED)]
