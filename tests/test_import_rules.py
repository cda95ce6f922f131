"""The custom import-linter contract (tools/import_rules.py) that `make lint` runs: a private
module is imported only from inside the package that holds it."""

from __future__ import annotations

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
