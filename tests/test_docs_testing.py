"""docs/testing.md's test modules run as they are written, with the plugin's fixtures, so the
page cannot drift from the kit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def example_modules() -> list[str]:
    """Every ``python`` block on the page that defines a test."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    return [block for block in blocks if re.search(r"^def test_", block, flags=re.MULTILINE)]


def test_the_page_shows_a_complete_module_of_about_twenty_lines() -> None:
    first = example_modules()[0]
    assert "background=True" in first and "ghapp_worker" in first
    assert len([line for line in first.splitlines() if line.strip()]) <= 25


@pytest.mark.parametrize("index", range(len(example_modules())))
def test_the_pages_test_modules_pass(pytester: pytest.Pytester, index: int) -> None:
    pytester.makepyfile(**{f"test_docs_example_{index}": example_modules()[index]})
    # A subprocess: the module's worker and servers live and die there, with the plugin
    # loaded by its entry point as in a user's project.
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    tests = len(re.findall(r"^def test_", example_modules()[index], flags=re.MULTILINE))
    result.assert_outcomes(passed=tests)
