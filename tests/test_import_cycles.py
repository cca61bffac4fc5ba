"""The package's modules import one another without a cycle (house rule), counting imports inside functions too:
a deferred import is still a dependency, and a cycle of them is a tangle a reader has to hold in mind."""

from __future__ import annotations

import ast
from pathlib import Path

import geodite

PACKAGE = Path(geodite.__file__).parent


def module_name(path: Path, root: Path) -> str:
    """``root/pkg/sub/mod.py`` → ``pkg.sub.mod`` (a package's ``__init__.py``: the package)."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, known: set[str]) -> set[str]:
    """The ``known`` modules that ``path`` imports anywhere in it: ``import a.b``, ``from a.b import c`` (a.b.c
    when c is a module, else a.b), relative imports resolved against the module's package."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known and target != name}
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports (at module level or inside functions)."""
    root = package.parent
    paths = {module_name(path, root): path for path in sorted(package.rglob("*.py"))}
    return {name: imported_modules(path, root, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first = last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_deferred_and_relative_imports(tmp_path):
    """A cycle closed by an import inside a function, a relative import and a ``from package import module``
    is found; the same modules without the deferred import have none."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "first.py").write_text("def f():\n    from pkg.sub import second\n")
    (package / "sub" / "second.py").write_text("from . import third\n")
    (package / "sub" / "third.py").write_text("import pkg.first\nimport os\n")
    assert find_cycle(import_graph(package)) == ["pkg.first", "pkg.sub.second", "pkg.sub.third", "pkg.first"]
    (package / "first.py").write_text("def f():\n    return 1\n")
    assert find_cycle(import_graph(package)) is None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
