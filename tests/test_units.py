"""One place for constants: nanoseconds per second in streambind.units, dtype names in
streambind.model.dtypes; no module defines its own copy."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import streambind
from streambind import units
from streambind.model.dtypes import DTYPES

PACKAGE = Path(streambind.__file__).parent
TORCH_DTYPES = {"float32", "float16", "bfloat16", "float64", "half", "float"}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(p.relative_to(PACKAGE)), ast.parse(p.read_text(), str(p)))
            for p in sorted(PACKAGE.rglob("*.py"))]


def test_ns_per_s_is_defined_once():
    copies = []
    for name, tree in _modules():
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                value = node.value
                if isinstance(value, ast.Constant) and value.value in (1_000_000_000, 1e9):
                    copies.append(f"{name}:{node.lineno}")
    assert [c.split(":")[0] for c in copies] == ["units.py"], f"NS_PER_S copies: {copies}"
    from streambind.sim import records as sim_records
    from streambind.stream import records, window_types, windows

    assert units.NS_PER_S == 1_000_000_000
    for module in (records, window_types, windows, sim_records):  # re-exported, not copied
        assert module.NS_PER_S is units.NS_PER_S


def test_dtype_table_is_defined_once():
    tables = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Dict):
                continue
            values = [v for v in node.values if isinstance(v, ast.Attribute)
                      and isinstance(v.value, ast.Name) and v.value.id == "torch"
                      and v.attr in TORCH_DTYPES]
            if len(values) >= 2:
                tables.append(f"{name}:{node.lineno}")
    assert [t.split(":")[0] for t in tables] == ["model/dtypes.py"], tables
    assert DTYPES == {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
