"""An import-linter contract type for a rule its built-in contracts cannot state.

"No module imports another package's private module": ``ghapp_celery.store._sql`` may be
imported from inside ``ghapp_celery.store`` only (its sub-packages included); a root-level
``ghapp_celery._x`` belongs to the whole package. import-linter's wildcards replace whole
module names (``_*`` is refused), so a ``forbidden`` contract would have to list every private
module by hand and go stale as they are added; this contract derives them from the graph.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

__all__ = ["PrivateModulesContract", "owner_of_private"]


def owner_of_private(module: str) -> str | None:
    """The package whose private module ``module`` is (its first ``_name`` segment's parent),
    or None when no segment is private. ``__init__``-style dunder names are not private."""
    parts = module.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


class PrivateModulesContract(Contract):
    """Private modules (``_``-prefixed, at any depth) of ``containers`` are imported only by
    modules inside the package that holds them. ``ignore_imports`` lists accepted exceptions,
    as ``importer -> imported`` (each one a debt with its reason beside it)."""

    containers = fields.ListField(subfield=fields.StringField())
    ignore_imports = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        # Contract fields are declared as Field objects and hold values once populated.
        ignore_lines: list[str] = list(self.ignore_imports or [])  # type: ignore[arg-type]
        ignored = {tuple(part.strip() for part in line.split("->")) for line in ignore_lines}
        containers: list[str] = list(self.containers)  # type: ignore[call-overload]
        violations: list[tuple[str, str]] = []
        used_ignores = set()
        for importer in sorted(graph.modules):
            if not any(_inside(importer, c) for c in containers):
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                owner = owner_of_private(imported)
                if owner is None or not any(_inside(imported, c) for c in containers):
                    continue
                if _inside(importer, owner):
                    continue
                if (importer, imported) in ignored:
                    used_ignores.add((importer, imported))
                    continue
                violations.append((importer, imported))
        warnings = [f"Unused ignore: {a} -> {b}" for a, b in sorted(ignored - used_ignores)]
        return ContractCheck(
            kept=not violations, warnings=warnings, metadata={"violations": violations}
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported in check.metadata["violations"]:
            output.print_error(f"{importer} imports the private module {imported}", bold=False)
        output.new_line()
