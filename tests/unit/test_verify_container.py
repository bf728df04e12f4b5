"""How a worker tells it runs in a container, which decides what a refused sandbox's reason advises."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activities.verify import in_container, snapshot_guard, snapshot_tree, step_tree

HOST_MOUNTINFO = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n22 27 0:21 / /proc rw - proc proc rw\n"
OVERLAY_MOUNTINFO = ("512 480 0:64 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/l1\n"
                     "513 512 0:67 / /proc rw - proc proc rw\n")


def _root(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(("files", "environ", "expected"), [
    ({"proc/1/cgroup": "0::/\n", "proc/1/mountinfo": HOST_MOUNTINFO}, {}, False),
    ({}, {}, False),
    ({".dockerenv": ""}, {}, True),
    ({"run/.containerenv": ""}, {}, True),
    ({}, {"container": "podman"}, True),
    ({"proc/1/cgroup": "0::/\n", "proc/1/mountinfo": HOST_MOUNTINFO}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, True),
    ({"proc/1/cgroup": "12:pids:/kubepods/burstable/pod1/abc\n"}, {}, True),
    ({"proc/1/cgroup": "0::/\n", "proc/1/mountinfo": OVERLAY_MOUNTINFO}, {}, True),
])
def test_container_markers(tmp_path: Path, files: dict[str, str], environ: dict[str, str], expected: bool) -> None:
    """docker's and podman's marker files, the container variable, a pod's service variable, a runtime in
    PID 1's cgroup (v1) or an overlay root filesystem (cgroup v2 shows none) each mean a container; a
    plain host has none of them."""
    assert in_container(_root(tmp_path, files), environ) is expected


def test_a_steps_own_tree_links_the_runs_environments(tmp_path: Path) -> None:
    """A step's own copy of the run's tree copies the code but links tox's and nox's environments and
    node_modules (built by install, hundreds of megabytes), so the copy takes no time with them."""
    tree = tmp_path / "tree"
    for name in ("src/app.py", ".tox/py311/bin/python", ".nox/lint/bin/python", "node_modules/x/index.js",
                 "docs/.tox-notes.txt"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
    copy = step_tree(tree, tmp_path / "trees" / "lint")
    assert (copy / "src/app.py").read_text() == "src/app.py" and not (copy / "src").is_symlink()
    for shared in (".tox", ".nox", "node_modules"):
        assert (copy / shared).is_symlink() and (copy / shared).resolve() == (tree / shared).resolve()
    assert (copy / "docs/.tox-notes.txt").is_file()


def test_a_snapshot_copies_the_sources_and_links_what_install_put_there(tmp_path: Path) -> None:
    """A snapshot of the run's tree copies its files (times kept) and its symbolic links as links, and links every
    node_modules (a workspace package's too), the git objects and yarn's cache instead of copying them; a snapshot
    cut short before is replaced, and a step in it sees those directories frozen with node_modules' scratch
    directories (.cache, .tmp) its own."""
    tree = tmp_path / "tree"
    for name in ("src/a.ts", "package.json", "packages/p/index.ts", "packages/p/node_modules/q/index.js",
                 "node_modules/x/index.js", "node_modules/x/node_modules/y/index.js", ".git/HEAD", ".git/objects/ab/cd",
                 ".yarn/cache/z.zip", ".yarn/releases/yarn.cjs"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
    os.utime(tree / "src/a.ts", (1_000_000, 1_000_000))
    (tree / "link.ts").symlink_to("src/a.ts")
    (tree / "node_modules/.cache").mkdir()
    (tree / "packages/p/node_modules/.tmp").mkdir()
    dest = tmp_path / "snapshot"
    (tmp_path / "snapshot.partial" / "junk").mkdir(parents=True)
    files, linked = snapshot_tree(tree, dest)
    assert not (tmp_path / "snapshot.partial").exists()
    assert (dest / "src/a.ts").read_text() == "src/a.ts" and not (dest / "src").is_symlink()
    assert (dest / "src/a.ts").stat().st_mtime == 1_000_000
    assert os.readlink(dest / "link.ts") == "src/a.ts"
    assert (dest / ".git/HEAD").is_file() and (dest / ".yarn/releases/yarn.cjs").is_file()
    expected = [tree / "node_modules", tree / "packages/p/node_modules", tree / ".git/objects", tree / ".yarn/cache"]
    assert sorted(linked) == sorted(str(p) for p in expected)
    for path in expected:
        copy = dest / path.relative_to(tree)
        assert copy.is_symlink() and copy.resolve() == path.resolve()
    assert files == 6  # package.json, src/a.ts, link.ts, packages/p/index.ts, .git/HEAD, .yarn/releases/yarn.cjs
    frozen, scratch = snapshot_guard(dest, tree)
    assert frozen == sorted(str(p) for p in expected if p.name != "objects")
    # the scratch directories there are to mount over (the snapshot activity makes them all)
    assert scratch == [str(tree / "node_modules/.cache"), str(tree / "packages/p/node_modules/.tmp")]
    (dest / "src/a.ts").write_text("fixed")
    assert snapshot_tree(tree, dest)[0] == 6 and (dest / "src/a.ts").read_text() == "src/a.ts"
