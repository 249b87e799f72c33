"""The layer picture of docs/design.md, checked by walking every import (module level and inside
functions) of every project module: nothing imports a layer above its own, the core imports no
torch or onnxruntime, and the runtime imports no torch. The deviations the design page still
lists are named here one by one, so a new one fails and a fixed one must be struck off."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "data", "model", "export", "serve", "evaluation", "bench", "soak", "web", "tools")
# bottom to top; a module may import its own layer and those below
LAYERS = {"core": 0, "data": 1, "model": 2, "export": 3, "runtime": 4, "serve": 5,
          "evaluation": 6, "bench": 6, "soak": 6, "web": 6, "tools": 6}
RUNTIME_MODULES = {"export.runtime"}  # the ONNX Runtime reader still lives in export/
# (importer, imported) pairs docs/design.md lists under "Where today's code deviates"
KNOWN_DEVIATIONS = {
    ("export.simplify", "export.runtime"),
    ("export.onnx_step", "export.runtime"),
    ("export.generate_graph", "export.runtime"),
    ("export.verify", "export.runtime"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    if module in RUNTIME_MODULES or any(module.startswith(m + ".") for m in RUNTIME_MODULES):
        return LAYERS["runtime"]
    return LAYERS[module.split(".")[0]]


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            # `from core import integrity` imports the module core.integrity
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if (ROOT / base.replace(".", "/") / f"{alias.name}.py").is_file())
    return found


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
            if "node_modules" not in p.parts}


def project_imports() -> list[tuple[str, str]]:
    mods = project_modules()
    pairs = []
    for name, path in mods.items():
        for imported in imports(path):
            if imported.split(".")[0] in PACKAGES:
                # the deepest project module the name refers to
                target = imported
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                pairs.append((name, target))
    return pairs


def test_no_module_imports_a_layer_above_its_own():
    upward = {(a, b) for a, b in project_imports() if layer(b) > layer(a)}
    assert upward - KNOWN_DEVIATIONS == set(), "imports of a higher layer (docs/design.md)"
    assert KNOWN_DEVIATIONS - upward == set(), "fixed: strike these off KNOWN_DEVIATIONS and docs/design.md"


@pytest.mark.parametrize("package, forbidden", [("core", ("torch", "onnxruntime", "onnx", "numpy")),
                                                ("export.runtime", ("torch",))])
def test_the_core_and_the_runtime_import_no_heavy_runtime(package, forbidden):
    for name, path in project_modules().items():
        if name == package or name.startswith(package + "."):
            heavy = {m for m in imports(path) if m.split(".")[0] in forbidden}
            assert not heavy, f"{name} imports {sorted(heavy)}"


def test_the_walker_sees_imports_inside_functions_and_from_packages(tmp_path):
    """The checks above are only as good as the walker: it must see a lazy import and a module
    imported by `from package import module`."""
    found = imports(ROOT / "model" / "checkpoint.py")
    assert "torch" in found and "core.atomic" in found
    assert "model.torchscript" in imports(ROOT / "model" / "names.py")  # imported inside a function
    assert "core.manifest" in imports(ROOT / "export" / "runtime.py")  # from core import ... manifest
