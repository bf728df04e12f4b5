"""The documentation site builds offline in strict mode, and loads nothing from other hosts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
