"""Modules talk through public names: no module imports another module's ``_private`` name."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aimemory"


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {alias.name}")
    assert not offenders, "\n".join(offenders)


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: its functions, classes and globals, its classes' fields, and
    the attributes its methods set on ``self`` or ``cls``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


#: private names of other libraries used on purpose, each with its guard
THIRD_PARTY_PRIVATE = {
    # oneDNN weight packing, as torch's own CPU compiler uses it; nn/bert_cpu.packing_works() probes
    # it once per process and falls back to plain bf16 layers where it is missing or disagrees
    "torch.ops.mkldnn._reorder_linear_weight",
    "torch.ops.mkldnn._linear_pointwise",
}


def test_no_module_reaches_into_another_modules_private_attributes():
    """``store._lock`` or ``table._table`` outside the module that defines them is a seam torn open:
    the owner cannot change its insides without breaking a stranger. Reading or writing a private
    attribute on anything but ``self``/``cls`` is allowed only for names the same module defines."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own = _own_private_names(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr not in own and ast.unparse(node) not in THIRD_PARTY_PRIVATE:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, "\n".join(sorted(offenders))
