"""The test kit's shape: its modules import one way, its private modules say so, and every name
``ghapp_celery.testing`` exported before it became a package still imports from it."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from itertools import pairwise
from pathlib import Path

import ghapp_celery.testing

PACKAGE = "ghapp_celery.testing"
ROOT = Path(ghapp_celery.testing.__file__).parent
#: The submodules a user may import by name; the rest are the kit's own.
PUBLIC_SUBMODULES = {"pytest_plugin"}


def module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports, anywhere in it (``TYPE_CHECKING`` blocks and
    function bodies too: a cycle there is still a cycle to a reader)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this package
                base = PACKAGE + (f".{base}" if base else "")
            # ``from pkg import mod`` imports a module too when ``mod`` is one.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(ROOT.glob("*.py"))
    modules = {module_name(p) for p in paths}  # the package itself is ``__init__``
    return {module_name(p): imported_modules(p, modules) for p in paths}


def test_the_kits_modules_import_one_way() -> None:
    graph = import_graph()
    assert len(graph) >= 10  # the walk found the package
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as cycle:  # pragma: no cover - the failure's message
        raise AssertionError(f"import cycle in {PACKAGE}: {cycle.args[1]}") from None
    # The layers the FakeGitHub docstring promises: types, then state, then the endpoint
    # groups, then the server.
    position = {name: n for n, name in enumerate(order)}
    layers = [
        ["_types"],
        ["_state"],
        ["_app", "_repos", "_checks", "_contents", "_deliveries", "_graphql"],
        ["_github"],
    ]
    for lower, upper in pairwise(layers):
        for below in lower:
            for above in upper:
                assert position[f"{PACKAGE}.{below}"] < position[f"{PACKAGE}.{above}"]
    for group in layers[2]:
        assert graph[f"{PACKAGE}.{group}"].isdisjoint(
            {f"{PACKAGE}.{g}" for g in layers[2] if g != group} | {f"{PACKAGE}._github"}
        ), f"{group} imports another endpoint group or the server"


def test_private_modules_are_named_private() -> None:
    for path in ROOT.glob("*.py"):
        if path.stem != "__init__" and path.stem not in PUBLIC_SUBMODULES:
            assert path.stem.startswith("_"), path.name


def test_the_names_exported_before_the_package_still_import() -> None:
    before = [
        "FakeClock",
        "FakeGitHub",
        "make_delivery",
        "make_private_key",
        "serve",
        "sign",
        "signed_request",
        "webhook_headers",
    ]
    for name in before:
        assert name in ghapp_celery.testing.__all__
        assert getattr(ghapp_celery.testing, name) is not None


def test_everything_exported_is_defined() -> None:
    missing = [n for n in ghapp_celery.testing.__all__ if not hasattr(ghapp_celery.testing, n)]
    assert missing == []


def test_no_private_fake_github_module_is_left_at_the_package_root() -> None:
    root = ROOT.parent
    assert not list(root.glob("_fake_github*.py"))
    assert not (root / "_server.py").exists()


def test_loading_the_pytest_plugin_imports_no_server_broker_or_database() -> None:
    # pytest imports the plugin in every run of every project with ghapp_celery installed.
    heavy = ["celery", "kombu", "sqlalchemy", "alembic", "uvicorn", "redis", "psycopg"]
    code = (
        "import sys, ghapp_celery.testing.pytest_plugin\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
