"""Structure of streambind.model: no import circles, one dtype table."""

import ast
from pathlib import Path

import torch

import streambind.model
from streambind.model.dtypes import DTYPES, dtype_name, resolve_dtype

PACKAGE = Path(streambind.model.__file__).parent


def _imports(path: Path) -> set[str]:
    """streambind.model modules imported anywhere in ``path`` (function bodies included,
    type-checking-only imports excluded: they never run)."""
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
            if name.startswith("streambind.model.") and (
                PACKAGE / (name.split(".")[2] + ".py")
            ).is_file():
                found.add(name.split(".")[2])
    return found


def test_model_modules_import_no_circle():
    graph = {p.stem: _imports(p) - {p.stem} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}

    def visit(node: str, path: tuple[str, ...]) -> None:
        for dep in graph.get(node, ()):
            assert dep not in path, "import circle: " + " -> ".join((*path, dep))
            visit(dep, (*path, dep))

    for module in graph:
        visit(module, (module,))
    # The circle this replaced: the model and the checkpoint loader imported each other.
    assert "checkpoint" not in graph["imagebind"]


def test_one_dtype_table():
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype(torch.float16) is torch.float16
    assert resolve_dtype(None) is None
    assert {dtype_name(v): k for k, v in DTYPES.items()} == {k: k for k in DTYPES}
    # Nothing else in the model package or the model bench defines its own table.
    for path in [*PACKAGE.glob("*.py"), PACKAGE.parent / "bench" / "model.py"]:
        if path.name != "dtypes.py":
            assert '"bf16": torch.bfloat16' not in path.read_text(encoding="utf-8"), path
