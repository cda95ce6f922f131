"""The docs site builds with ``mkdocs build --strict`` and its API reference renders GitHubApp.

``--strict`` already fails on a broken link or a docstring griffe cannot parse; this also
checks that the reference is not silently empty (a ``:::`` block that selects no member renders
a bare heading and still passes --strict). Needs the ``docs`` extra: skipped locally without
it, failed in CI, where ``.ci/run`` installs it through ``make docs`` before the tests.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _require_docs_extra() -> None:
    missing = [name for name in DOCS_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        message = f"{', '.join(missing)} not installed; `make docs` installs the docs extra"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


# The build renders about 1,100 objects; on a loaded 2-core machine it took up to 35 s.
@pytest.mark.timeout(300)
def test_docs_build_strictly_with_the_api_reference(tmp_path: Path) -> None:
    _require_docs_extra()
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"]
    build = subprocess.run(
        [*command, "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr

    reference = (site / "reference" / "ghapp_celery" / "index.html").read_text(encoding="utf-8")
    assert 'id="ghapp_celery.GitHubApp"' in reference
    assert 'id="ghapp_celery.GitHubApp.on"' in reference
    # Only the public surface: no private module or name (a leading single underscore).
    pages = "".join(path.read_text(encoding="utf-8") for path in site.glob("reference/*/*.html"))
    assert re.findall(r'id="ghapp_celery\.(?:\w+\.)*_(?!_)[^"]*"', pages) == []
    for page in ("architecture", "adr/0001-store-source-of-truth", "reference/testing"):
        assert (site / page / "index.html").is_file(), page
