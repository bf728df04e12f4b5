"""The first commands a new user types, without a stack: where the CLI looked, and a rotated key's sealed secret."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from jobforge.sealed import seal
from tests.support.procs import BIN, env_with, jobforge

pytestmark = pytest.mark.e2e

SECRET = "jfk_0123456789ab_" + "k" * 43


def test_no_stack_names_where_the_cli_looked(tmp_path: Path) -> None:
    """With no stack, `status` and a store command exit 2 naming the state file they read and the unset
    variables; a state file left by a dead stack is named as such."""
    env = env_with({})
    for args in (("status",), ("runs", "list", "--tenant", "acme"), ("status", "--api-url")):
        answer = jobforge(*args, env=env, cwd=tmp_path)
        assert answer.returncode == 2, answer.stderr
        assert "stack_not_found" in answer.stderr and str(tmp_path / ".jobforge" / "state.json") in answer.stderr
        assert "JOBFORGE_DATABASE_URL and JOBFORGE_TEMPORAL_ADDRESS are not set" in answer.stderr
        assert answer.stdout == ""
    home = tmp_path / "elsewhere"
    home.mkdir()
    (home / "state.json").write_text(json.dumps({"pid": 2**22 + 7, "temporal_address": "127.0.0.1:1",
                                                 "ui_url": "", "database_url": "postgresql://x", "home": str(home)}))
    stale = jobforge("status", env=env_with({"JOBFORGE_HOME": str(home)}), cwd=tmp_path)
    assert stale.returncode == 2 and str(home / "state.json") in stale.stderr
    assert f"left from a stack that is gone (pid {2**22 + 7})" in stale.stderr, stale.stderr


def test_a_keypair_opens_the_sealed_secret_in_every_form(tmp_path: Path) -> None:
    """`keys keypair` writes a private key only its owner reads and prints the public key; `keys open-sealed`
    prints the secret from the bare box, a result file or stdin, and refuses another key's box."""
    env = env_with({})
    made = jobforge("keys", "keypair", "--private-key", "recipient.pem", env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    public = made.stdout.strip()
    pem = tmp_path / "recipient.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600 and pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    again = jobforge("keys", "keypair", "--private-key", "recipient.pem", env=env, cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr and pem.read_bytes().startswith(b"-----BEGIN")

    box = seal(SECRET.encode(), public)
    (tmp_path / "rotated.json").write_text(json.dumps({"run": {}, "result": {"sealed_secret": box}}))
    for source in (box, "@rotated.json"):
        opened = jobforge("keys", "open-sealed", source, "--private-key", "recipient.pem", env=env, cwd=tmp_path)
        assert (opened.returncode, opened.stdout) == (0, SECRET + "\n"), opened.stderr
    piped = subprocess.run([str(BIN / "jobforge"), "keys", "open-sealed", "-", "--private-key", str(pem)], env=env,
                           input=box, capture_output=True, text=True, timeout=60, check=False)
    assert (piped.returncode, piped.stdout) == (0, SECRET + "\n"), piped.stderr

    assert jobforge("keys", "keypair", "--private-key", "other.pem", env=env, cwd=tmp_path).returncode == 0
    wrong = jobforge("keys", "open-sealed", box, "--private-key", "other.pem", env=env, cwd=tmp_path)
    assert wrong.returncode == 2 and "sealed_secret_invalid" in wrong.stderr and SECRET not in wrong.stdout
    neither = jobforge("keys", "open-sealed", "--private-key", "other.pem", env=env, cwd=tmp_path)
    assert neither.returncode == 2 and "--run" in neither.stderr
