"""The layout's import rules (README, "Layout"), read from the source.

Every import of every module counts, also those inside functions and under
``TYPE_CHECKING``: a lazy import that runs back up is still a dependency that runs back up.
A new top-level package fails here until it is given its rule.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What each package may import of ours (itself always). Third-party libraries are free,
# except Prefect where NO_PREFECT says so.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "programs": frozenset({"core"}),
    "store": frozenset({"core"}),
    "domain": frozenset({"core", "programs", "store"}),
    "blocks": frozenset({"core", "programs", "domain"}),
    "tasks": frozenset({"core", "programs", "store", "domain", "blocks"}),
    "flows": frozenset({"core", "programs", "store", "domain", "blocks", "tasks"}),
    "localnet": frozenset({"core", "programs"}),
    "runbooks": frozenset(
        {"core", "programs", "store", "domain", "blocks", "tasks", "flows", "localnet"}
    ),
    "benches": frozenset(
        {"core", "programs", "store", "domain", "blocks", "tasks", "flows", "localnet", "runbooks"}
    ),
}
# Wire formats, the schema and the rules of each runbook are plain Python.
NO_PREFECT = frozenset({"core", "programs", "store", "domain", "localnet"})
OURS = frozenset(MAY_IMPORT) | {"tests"}


def top_level_packages() -> set[str]:
    return {
        p.parent.name
        for p in REPO.glob("*/__init__.py")
        if not p.parent.name.startswith(".") and p.parent.name != "tests"
    }


def modules(package: str) -> Iterator[Path]:
    yield from sorted((REPO / package).rglob("*.py"))


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level name) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def violations(package: str) -> list[str]:
    allowed = MAY_IMPORT[package] | {package}
    found = []
    for path in modules(package):
        where = path.relative_to(REPO)
        for line, name in imported(path):
            if name in OURS and name not in allowed:
                found.append(f"{where}:{line} imports {name}")
            if name == "prefect" and package in NO_PREFECT:
                found.append(f"{where}:{line} imports prefect")
    return found


def test_every_package_has_a_rule() -> None:
    assert top_level_packages() <= set(MAY_IMPORT), (
        "give the new package its import rule in tests/test_layout.py and README's Layout: "
        f"{sorted(top_level_packages() - set(MAY_IMPORT))}"
    )


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_no_import_runs_back_up(package: str) -> None:
    assert not violations(package), "\n".join(violations(package))


def test_the_rules_catch_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: an import back up, hidden in a function, is found."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "bad.py").write_text(
        "def f():\n    from flows.upgrade import upgrade_program\n    import prefect\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert violations("core") == [
        "core/bad.py:2 imports flows",
        "core/bad.py:3 imports prefect",
    ]
