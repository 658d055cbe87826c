"""Structure of streambind.serve: no import circles between its modules."""

import ast
from pathlib import Path

import streambind.serve

PACKAGE = Path(streambind.serve.__file__).parent


def _imports(path: Path) -> set[str]:
    """streambind.serve modules imported anywhere in ``path`` (function bodies included;
    imports under TYPE_CHECKING never run and are left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if name.startswith("streambind.serve.") and (PACKAGE / f"{parts[2]}.py").is_file():
                found.add(parts[2])
    return found


def test_serve_modules_import_no_circle():
    graph = {p.stem: _imports(p) - {p.stem} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}

    def visit(node: str, path: tuple[str, ...]) -> None:
        for dep in graph.get(node, ()):
            assert dep not in path, "import circle: " + " -> ".join((*path, dep))
            visit(dep, (*path, dep))

    for module in graph:
        visit(module, (module,))
    # The circle this replaced: the app builders and the ingest deployment imported each other.
    assert "app" not in graph["ingest"]
