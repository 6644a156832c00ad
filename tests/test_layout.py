"""The layout's import rules (README, "Layout"), read from the source.

Every import of every module counts, also those inside functions and under
``TYPE_CHECKING``, relative ones and ``importlib.import_module("...")`` with a written
name: a lazy import that runs back up is still a dependency that runs back up. A new
top-level folder of Python (a package or not) fails here until it is given its rule, and
every top-level folder needs its paragraph in README's "Layout".
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What each package may import of ours (itself always). Third-party libraries are free,
# except Prefect (and its integrations, prefect_*) where NO_PREFECT says so.
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
# Calls that import the module their first argument names.
IMPORT_CALLS = frozenset({"import_module", "__import__", "run_module"})


def top_level_packages() -> set[str]:
    """Every top-level folder holding Python, with or without ``__init__.py`` (a folder
    without one still imports as a namespace package), and every top-level module."""
    found = {p.stem for p in REPO.glob("*.py")}
    for folder in top_level_folders():
        if folder != "tests" and next((REPO / folder).rglob("*.py"), None) is not None:
            found.add(folder)
    return found


def top_level_folders() -> set[str]:
    """The checkout's folders, leaving out hidden ones and what .gitignore names."""
    ignore = REPO / ".gitignore"
    ignored = (
        {line.strip().rstrip("/") for line in ignore.read_text().splitlines()}
        if ignore.exists()
        else set()
    )
    return {
        p.name
        for p in REPO.iterdir()
        if p.is_dir() and not p.name.startswith((".", "_")) and p.name not in ignored
    }


def modules(package: str) -> Iterator[Path]:
    single = REPO / f"{package}.py"
    if single.is_file():
        yield single
    yield from sorted((REPO / package).rglob("*.py"))


def _written_name(arg: ast.expr) -> str | None:
    """The module name written in ``import_module("...")`` (or an f-string's fixed start)."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:
        first = arg.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, top-level name) of every import in ``path``: absolute, relative (resolved
    against the module's own package; ``..`` above the top level shows as itself) and
    ``import_module`` with a written name; in line order."""
    return sorted(_imports(path))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(REPO).parent.parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                yield node.lineno, node.module.split(".")[0]
            elif node.level > 0:
                # Inside its own top-level package unless it climbs above it.
                if node.level - 1 >= len(package):
                    yield node.lineno, "." * node.level + (node.module or "")
                else:
                    yield node.lineno, package[0]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else None
            )
            written = _written_name(node.args[0]) if name in IMPORT_CALLS else None
            if written:
                yield node.lineno, written.split(".")[0]


def violations(package: str) -> list[str]:
    allowed = MAY_IMPORT[package] | {package}
    found = []
    for path in modules(package):
        where = path.relative_to(REPO)
        for line, name in imported(path):
            if name.startswith("."):
                found.append(f"{where}:{line} imports {name} (above the top-level package)")
                continue
            prefect = name == "prefect" or name.startswith("prefect_")
            if (name in OURS and name not in allowed) or (prefect and package in NO_PREFECT):
                found.append(f"{where}:{line} imports {name}")
    return found


def test_every_package_has_a_rule() -> None:
    assert top_level_packages() <= set(MAY_IMPORT), (
        "give the new package its import rule in tests/test_layout.py and README's Layout: "
        f"{sorted(top_level_packages() - set(MAY_IMPORT))}"
    )


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_no_import_runs_back_up(package: str) -> None:
    assert not violations(package), "\n".join(violations(package))


def readme_layout_folders() -> set[str]:
    """The folders README's "Layout" gives a paragraph: ``- **`name/`**``."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- \*\*`([a-z_]+)/`\*\*", section, flags=re.MULTILINE))


def test_readme_layout_has_a_paragraph_per_folder() -> None:
    described = readme_layout_folders()
    folders = top_level_folders()
    assert folders | set(MAY_IMPORT) <= described, (
        "README's Layout needs a paragraph (- **`name/`** — what lives there, what it may "
        f"import) for: {sorted((folders | set(MAY_IMPORT)) - described)}"
    )
    assert described <= folders, f"README's Layout describes missing folders: {described - folders}"


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


def test_the_rules_catch_hidden_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a written ``import_module``, a Prefect integration and a relative
    import above the top level are found; a relative import inside the package is not."""
    (tmp_path / "store" / "sub").mkdir(parents=True)
    (tmp_path / "store" / "__init__.py").write_text("")
    (tmp_path / "store" / "sub" / "__init__.py").write_text("")
    (tmp_path / "store" / "sub" / "bad.py").write_text(
        "import importlib\n"
        "from .. import db\n"
        "from ...flows import upgrade\n"
        "importlib.import_module('tasks.records')\n"
        "__import__(f'localnet.{1}')\n"
        "import prefect_dask\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert violations("store") == [
        "store/sub/bad.py:3 imports ...flows (above the top-level package)",
        "store/sub/bad.py:4 imports tasks",
        "store/sub/bad.py:5 imports localnet",
        "store/sub/bad.py:6 imports prefect_dask",
    ]


def test_a_new_folder_of_python_needs_a_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checker itself: a folder of Python without ``__init__.py`` counts as a package."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "x.py").write_text("import flows\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("")
    (tmp_path / "docs").mkdir()
    (tmp_path / ".gitignore").write_text("var/\n")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "y.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert top_level_packages() == {"tools"}
    assert top_level_folders() == {"tools", "tests", "docs"}
