"""The custom import-linter contract (tools/import_rules.py) that `make lint` runs: a private
module is imported only from inside the package that holds it."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

from tools.import_rules import PrivateModulesContract, owner_of_private


def contract(ignore: list[str] | None = None) -> PrivateModulesContract:
    options: dict[str, list[str]] = {"containers": ["pkg"]}
    if ignore is not None:
        options["ignore_imports"] = ignore
    return PrivateModulesContract(name="private", session_options={}, contract_options=options)


def graph(*imports: tuple[str, str]) -> grimp.ImportGraph:
    built = grimp.ImportGraph()
    for importer, imported in imports:
        built.add_import(importer=importer, imported=imported)
    return built


def test_the_owner_of_a_private_module() -> None:
    assert owner_of_private("pkg.store._sql") == "pkg.store"
    assert owner_of_private("pkg._fake") == "pkg"
    assert owner_of_private("pkg.store._sql.inner") == "pkg.store"
    assert owner_of_private("pkg.store.__init__") is None
    assert owner_of_private("pkg.store.repository") is None


def test_a_private_module_is_free_inside_its_package_only() -> None:
    inside = graph(("pkg.store.repository", "pkg.store._sql"), ("pkg.store._a", "pkg.store._b"))
    assert contract().check(inside, verbose=False).kept
    # A root-level private module belongs to the whole package; a deeper one to its package,
    # sub-packages included (store.migrations may use store._sql).
    allowed = graph(
        ("pkg.store.repository", "pkg._x"), ("pkg.store.migrations.env", "pkg.store._sql")
    )
    assert contract().check(allowed, verbose=False).kept
    across = graph(
        ("pkg.intake.status", "pkg.store._sql"), ("pkg.store.repository", "pkg.github._t")
    )
    check = contract().check(across, verbose=False)
    assert not check.kept
    assert check.metadata["violations"] == [
        ("pkg.intake.status", "pkg.store._sql"),
        ("pkg.store.repository", "pkg.github._t"),
    ]


def test_an_ignored_import_is_kept_and_an_unused_ignore_is_reported() -> None:
    across = graph(("pkg.oauth.flow", "pkg.github._transport"))
    check = contract(["pkg.oauth.flow -> pkg.github._transport", "pkg.a -> pkg.b._c"]).check(
        across, verbose=False
    )
    assert check.kept
    assert check.warnings == ["Unused ignore: pkg.a -> pkg.b._c"]


# White-box tests of internals no user reaches (they check the store's own statements, query
# plans and schema check, the SQLite cursor fast path, the lazy-part helper and the client's
# connection sharding). Everything a user would need comes from ghapp_celery.testing and the
# other public modules; a new private import in a test fails below until it is added here.
WHITE_BOX = {
    "ghapp_celery._lazy": {"tests/test_lazy_parts.py"},
    "ghapp_celery.github._client_transport": {"tests/test_client.py"},
    "ghapp_celery.store._runs": {"tests/test_store.py", "tests/test_store_plans.py"},
    "ghapp_celery.store._schema": {"tests/test_store_schema.py"},
    "ghapp_celery.store._sql": {"tests/test_store.py", "tests/test_store_plans.py"},
    "ghapp_celery.store._sqlite_fast": {"tests/test_store.py"},
}


def _private_imports(path: Path) -> set[str]:
    """The private ghapp_celery modules ``path`` imports (``import``, ``from x import _y``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            if name.startswith("ghapp_celery.") and owner_of_private(name) is not None:
                parts = name.split(".")
                # Cut at the first private segment: that is the private module imported.
                cut = next(i for i, p in enumerate(parts) if p.startswith("_") and i > 0)
                found.add(".".join(parts[: cut + 1]))
    return found


def test_tests_import_private_modules_only_for_white_box_tests() -> None:
    root = Path(__file__).resolve().parent.parent
    seen: dict[str, set[str]] = {}
    for folder in ("tests", "benchmarks", "examples"):
        for path in sorted((root / folder).rglob("*.py")):
            if ".cache" in path.parts:  # benchmarks' git-ignored copies of other versions
                continue
            for module in _private_imports(path):
                seen.setdefault(module, set()).add(str(path.relative_to(root)))
    assert seen == WHITE_BOX
