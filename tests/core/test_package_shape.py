"""The package's shape: its layers import only downward and without cycles, built-in plugins import only the
public ``ganzoo``, benchmarks only ``ganzoo`` and its toolkit, and no name stands twice in the tree."""

import ast
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import code_shape  # noqa: E402  (the script that measures the package's shape: one parser of its imports)


def test_layers_import_only_downward_and_without_cycles():
    edges = code_shape.graph(REPO)
    assert code_shape.upward(edges) == []
    _, cycles = code_shape.levels(edges)
    assert cycles == []
    layered = {name for name in edges if code_shape.layer_of(name) is not None}
    assert len(layered) == len(edges) - 2  # every module but ganzoo/__init__ and ganzoo/__main__ is in a layer


def ganzoo_imports(path: Path) -> set[str]:
    """Every ``ganzoo...`` module a file imports (``from ganzoo.x import y`` gives ``ganzoo.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "ganzoo"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ganzoo":
            found.add(node.module)
    return found


def test_built_in_plugins_import_only_the_public_ganzoo():
    for path in sorted((REPO / "plugins").rglob("*.py")):
        assert ganzoo_imports(path) <= {"ganzoo"}, path


def test_benchmarks_import_only_ganzoo_and_its_toolkit():
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        assert ganzoo_imports(path) <= {"ganzoo", "ganzoo.apps", "ganzoo.apps.toolkit"}, path


def test_no_name_stands_twice_in_the_tree():
    names = Counter()
    for top in ("ganzoo", "plugins", "benchmarks", "datasets", "docs"):
        for path in (REPO / top).rglob("*"):
            if "__pycache__" in path.parts or path.name in ("__init__.py", "__main__.py", "README.md"):
                continue
            if path.is_dir() or path.suffix == ".py":
                names[path.stem] += 1
    names.update({"ganzoo", "plugins", "benchmarks", "datasets", "docs", "tests"})
    assert [name for name, count in names.items() if count > 1] == []
