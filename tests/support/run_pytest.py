"""Run pytest so that the exit status reflects the tests, not interpreter teardown.

A short Python process using the Temporal SDK sometimes dies at exit with
``Fatal Python error: PyGILState_Release`` (sdk-python issue #300) after every test has passed.
We run pytest in a child process with a JUnit report; if the child dies by a signal after writing a
report that shows no failure and no error, the run counts as passed. Any other status is returned.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path


def report_clean(path: Path) -> bool:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return False
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    return tests > 0 and bad == 0


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        code = subprocess.call([sys.executable, "-m", "pytest", f"--junitxml={report}", *sys.argv[1:]])
        if (code < 0 or code >= 128) and report_clean(report):
            print(f"pytest exited with status {code} after a clean run (interpreter teardown); counted as passed",
                  file=sys.stderr)
            return 0
        return code


if __name__ == "__main__":
    sys.exit(main())
