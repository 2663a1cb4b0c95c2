"""The layering of spikingmind, checked on the source (README, "Layers"):

    core        spikingmind/ except workflows/ and cli/ (+ hardware_profiles/): imports only the core
    export      export/ (installed as spikingmind.export): imports the core and itself
    workflows   spikingmind/workflows/: imports the core, the backends and itself
    cli         spikingmind/cli/: imports anything

Every module is parsed (AST), so imports inside functions count too, and so do string imports
(`importlib.import_module("spikingmind.export.nir")`, a module path held in a string). The
Lava sidecar (Python 3.10, no torch) may import only NumPy, Lava, SciPy, the standard library,
`spikingmind.fixed_point` and its own package, and nobody edits `sys.path` to find a module.
No module imports another module's private names (`from x import _y`, `x._y`).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> the package it is installed as (pyproject.toml's package-dir)
SOURCE_ROOTS = {ROOT / "spikingmind": "spikingmind", ROOT / "export": "spikingmind.export",
                ROOT / "hardware_profiles": "spikingmind.hardware_profiles"}
ALLOWED = {  # layer -> the layers it may import
    "core": {"core"},
    "export": {"core", "export"},
    "workflows": {"core", "export", "workflows"},
    "cli": {"core", "export", "workflows", "cli"},
}
SIDECAR = "spikingmind.export.lava_sidecar"
SIDECAR_THIRD_PARTY = {"numpy", "lava", "scipy"}
MODULE_PATH = re.compile(r"spikingmind(\.[A-Za-z_][A-Za-z0-9_]*)*")


def module_name(path: Path) -> str:
    for root, package in SOURCE_ROOTS.items():
        if path.is_relative_to(root):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join([package, *parts])
    raise ValueError(path)


def layer(module: str) -> str:
    for name in ("cli", "workflows", "export"):
        if module == f"spikingmind.{name}" or module.startswith(f"spikingmind.{name}."):
            return name
    return "core"


def sources() -> dict[str, Path]:
    return {module_name(path): path for root in SOURCE_ROOTS for path in sorted(root.rglob("*.py"))
            if "__pycache__" not in path.parts}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (prose may name modules)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def imports(path: Path, module: str) -> list[tuple[int, str, str]]:
    """(line, imported module, how) for every import of `path`, function-local and string ones included."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "import") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target, "from"))
            # `from spikingmind.export import nir` imports the submodule spikingmind.export.nir
            found += [(node.lineno, f"{target}.{alias.name}", "from") for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if MODULE_PATH.fullmatch(node.value):  # a module path in a string: import_module, a registry
                found.append((node.lineno, node.value, "string"))
    return found


def test_every_module_keeps_to_its_layer():
    broken = []
    for module, path in sources().items():
        own = layer(module)
        for line, target, how in imports(path, module):
            if not target.startswith("spikingmind"):
                continue
            if layer(target) not in ALLOWED[own]:
                broken.append(f"{path.relative_to(ROOT)}:{line}: {own} module {module} imports {target} "
                              f"({layer(target)}, {how})")
    assert not broken, "layering broken:\n" + "\n".join(broken)


def test_the_lava_sidecar_imports_only_what_its_python_310_venv_has():
    """Everything the sidecar imports from spikingmind, transitively (parent packages included:
    importing spikingmind.export.lava_sidecar.plan runs spikingmind/export/__init__.py), needs
    only the standard library, NumPy, Lava and SciPy: no torch in the Lava venv."""
    modules = sources()
    allowed = set(sys.stdlib_module_names) | SIDECAR_THIRD_PARTY | {"__future__"}
    todo = [module for module in modules if module.startswith(SIDECAR)]
    reached, broken = set(), []
    while todo:
        module = todo.pop()
        if module in reached or module not in modules:
            continue  # a name imported from a module, not a module
        reached.add(module)
        todo += [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]  # parent packages
        for line, target, how in imports(modules[module], module):
            if how == "string":
                continue
            if target.startswith("spikingmind"):
                todo.append(target)
            elif target.split(".")[0] not in allowed:
                broken.append(f"{modules[module].relative_to(ROOT)}:{line}: {module} imports {target}")
    assert {"spikingmind.fixed_point", "spikingmind.export", f"{SIDECAR}.plan", f"{SIDECAR}.run"} <= reached
    assert not broken, "the Lava sidecar would import:\n" + "\n".join(broken)


def _private_uses(path: Path) -> list[str]:
    """`from spikingmind.x import _y` and `module._y` where `module` is an imported spikingmind module."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spikingmind"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}")
                elif alias.name.islower():
                    aliases.add(alias.asname or alias.name)  # maybe a submodule (from spikingmind.export import lava)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("spikingmind"):
                    aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_outside_the_tests_uses_another_modules_private_names():
    files = [*sources().values(), *sorted((ROOT / "benchmarks").glob("*.py")), *sorted((ROOT / "scripts").glob("*.py"))]
    found = [use for path in files for use in _private_uses(path)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_nothing_edits_sys_path_to_find_a_module():
    edits = []
    for path in sources().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in ("insert", "append", "extend")
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "path"
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "sys"):
                edits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not edits, "sys.path edited at " + ", ".join(edits)


def test_pyproject_installs_every_package_folder():
    """A non-editable install (`pip install .`) gets every package the sources hold."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {module for module, path in sources().items() if path.name == "__init__.py"}
    assert set(config["packages"]) == packages
    for package, folder in config["package-dir"].items():
        assert SOURCE_ROOTS[ROOT / folder] == package


@pytest.mark.parametrize("source, expected", [
    ("import spikingmind.export.nir\n", "imports spikingmind.export.nir (export, import)"),
    ("def f():\n    from spikingmind.workflows import evaluate\n", "imports spikingmind.workflows (workflows, from)"),
    ("import importlib\nmodule = importlib.import_module('spikingmind.export.onnx')\n",
     "imports spikingmind.export.onnx (export, string)"),
])
def test_the_check_catches_a_core_module_that_imports_a_layer_above(tmp_path, source, expected):
    path = ROOT / "spikingmind" / "_layering_probe.py"  # parsed, never imported
    module = module_name(path)
    found = [f"imports {target} ({layer(target)}, {how})" for _, target, how in imports_of(source, tmp_path, module)
             if target.startswith("spikingmind") and layer(target) not in ALLOWED[layer(module)]]
    assert expected in found


def imports_of(source: str, tmp_path: Path, module: str) -> list[tuple[int, str, str]]:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    return imports(probe, module)
