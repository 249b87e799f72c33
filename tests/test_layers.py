"""The layer picture of docs/design.md, checked by walking every import (module level and inside
functions) of every project module: nothing imports a layer above its own, the core imports no
torch or onnxruntime, and the runtime imports no torch, not even through the modules it imports.
The only exceptions are the command aliases below, each allowed its one target."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "data", "model", "export", "runtime", "serve", "evaluation", "bench", "soak", "web", "tools",
            "deploy")
# bottom to top; a module may import its own layer and those below
LAYERS = {"core": 0, "data": 1, "model": 2, "export": 3, "runtime": 4, "serve": 5,
          "evaluation": 6, "bench": 6, "soak": 6, "web": 6, "tools": 6, "deploy": 6}
# Old names kept so that documented commands and imports go on working (people have them in
# scripts): module -> (the layer it is classed in, the one module above that layer it may import).
# export.runtime re-exports the runtime and, in main() only, runs tools.generate; serve.client is
# the client library and, in main() only, runs tools.generate; export.verify is tools.verify;
# serve.gpu_check runs tools.gpu_check (a benchmark, hence a tool) in main() only.
COMMAND_ALIASES = {
    "export.runtime": ("runtime", "tools.generate"),
    "serve.client": ("serve", "tools.generate"),
    "export.verify": ("tools", "tools.verify"),
    "model.generate": ("model", "tools.generate"),
    "serve.gpu_check": ("serve", "tools.gpu_check"),
}
KNOWN_DEVIATIONS: set[tuple[str, str]] = set()  # (importer, imported) pairs docs/design.md lists


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    if module in COMMAND_ALIASES:
        return LAYERS[COMMAND_ALIASES[module][0]]
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
    aliases = {(alias, target) for alias, (_, target) in COMMAND_ALIASES.items()}
    upward = {(a, b) for a, b in project_imports() if layer(b) > layer(a)}
    assert upward - KNOWN_DEVIATIONS - aliases == set(), "imports of a higher layer (docs/design.md)"
    assert KNOWN_DEVIATIONS - upward == set(), "fixed: strike these off KNOWN_DEVIATIONS and docs/design.md"


def package_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """A cycle of the directed graph `edges` as [a, b, ..., a], or None."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    return next((c for c in (visit(n, []) for n in sorted(graph)) if c), None)


def test_no_import_cycle_between_packages_of_one_layer():
    """Packages of one layer may import each other, but one way only: the tools layer's shared
    pieces (tables, machine stamp, result pages, limits) live in tools/, so evaluation, bench and
    soak never need each other both ways."""
    edges = {(a.split(".")[0], b.split(".")[0]) for a, b in project_imports()}
    same_layer = {(a, b) for a, b in edges if a != b and LAYERS[a] == LAYERS[b]}
    assert package_cycle(same_layer) is None, f"packages of one layer import each other: {package_cycle(same_layer)}"
    assert package_cycle({("bench", "tools"), ("evaluation", "bench"), ("bench", "evaluation")}) == \
        ["bench", "evaluation", "bench"]  # the finder itself
    assert package_cycle({("bench", "tools"), ("evaluation", "bench"), ("soak", "tools")}) is None


def test_an_alias_that_is_also_a_library_runs_its_command_only_in_main():
    """`from export.runtime import NameGenerator` and `from serve.client import Client` must not
    load the tools (tools.generate loads torch for its torch backends)."""
    for alias, (home, target) in COMMAND_ALIASES.items():
        if LAYERS[target.split(".")[0]] <= LAYERS[home]:
            continue
        tree = ast.parse(project_modules()[alias].read_text(encoding="utf-8"))
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        top = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
        inside = {node.module for node in ast.walk(main) if isinstance(node, ast.ImportFrom)}
        assert target not in top and target in inside, alias


def closure(module: str, mods: dict[str, Path]) -> set[str]:
    """Every module `module` imports, directly or through the project modules it imports."""
    found, visited, todo = set(), {module}, [module]
    while todo:
        for imported in imports(mods[todo.pop()]):
            found.add(imported)
            target = imported
            while target not in mods and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in mods and target not in visited:
                visited.add(target)
                todo.append(target)
    return found


@pytest.mark.parametrize("package, forbidden", [("core", ("torch", "onnxruntime", "onnx", "numpy")),
                                                ("runtime", ("torch", "onnx"))])
def test_the_core_and_the_runtime_import_no_heavy_runtime(package, forbidden):
    """Through every project module they import, too (the runtime uses model.nbest and
    model.decode_numpy, which must stay torch-free)."""
    mods = project_modules()
    for name in mods:
        if name == package or name.startswith(package + "."):
            heavy = {m for m in closure(name, mods) if m.split(".")[0] in forbidden}
            assert not heavy, f"{name} imports {sorted(heavy)}"


SHIPPED = re.compile(r"\b((?:core|runtime|model)/[\w./]*)")


def test_what_an_embedding_application_ships_covers_every_module_the_runtime_imports():
    """runtime/__init__.py and docs/embedding.md list the files an application copies beside the
    .onnx file: every project module the runtime imports, however indirectly, must be on both."""
    mods = project_modules()
    needed = {m for name in mods if name == "runtime" or name.startswith("runtime.")
              for m in {name} | {t for t in closure(name, mods) if t in mods}}
    for source in (ROOT / "runtime" / "__init__.py", ROOT / "docs" / "embedding.md"):
        listed = set(SHIPPED.findall(source.read_text(encoding="utf-8")))
        files = {str(mods[m].relative_to(ROOT)) for m in needed}
        missing = {f for f in files if not any(f == s or (s.endswith("/") and f.startswith(s)) for s in listed)}
        assert not missing, f"{source.relative_to(ROOT)} does not list {sorted(missing)} among the shipped files"


def test_the_walker_sees_imports_inside_functions_and_from_packages(tmp_path):
    """The checks above are only as good as the walker: it must see a lazy import and a module
    imported by `from package import module`."""
    found = imports(ROOT / "model" / "checkpoint.py")
    assert "torch" in found and "core.atomic" in found
    assert "model.torchscript" in imports(ROOT / "model" / "names.py")  # imported inside a function
    assert "core.manifest" in imports(ROOT / "runtime" / "greedy.py")  # from core import ... manifest
    assert "torch" in closure("model.generate", project_modules())  # through model.decode
