"""The shape of the ganzoo package: its internal import graph (levels: the longest chain of imports below each
module; cycles), imports that go up the layers, and its longest functions.

    python benchmarks/code_shape.py [--root PATH_TO_CHECKOUT]

Imports are read from the source (``import ganzoo.x``, ``from ganzoo.x import y``, ``from ganzoo import x`` of a
submodule), at module level and inside functions alike. Layers are the sub-packages in ``LAYERS`` order; a
module directly in ``ganzoo/`` is the package's front (``__init__``, ``__main__``).
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

LAYERS = ("api", "runtime", "registry", "data", "evaluation", "engine", "lettering", "audio", "apps")
"""ganzoo's layers from the bottom up: a module may import its own layer and the ones before it."""


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The ganzoo modules ``path`` (module ``name``) imports, but for imports under ``if TYPE_CHECKING:`` (for
    annotations only: nothing is imported when the module runs)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    annotation_only = {id(child) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and getattr(node.test, "id", None) == "TYPE_CHECKING" for child in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in annotation_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base in modules:
                found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    found.discard(name)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in (root / "ganzoo").rglob("*.py")}
    return {name: imports(path, name, set(files)) for name, path in files.items()}


def levels(edges: dict[str, set[str]]) -> tuple[dict[str, int], list[list[str]]]:
    """Each module's level (0: imports no ganzoo module) and the import cycles (strongly connected parts)."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def connect(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                cycles.append(sorted(part))

    for node in edges:
        if node not in index:
            connect(node)
    in_cycle = {m for cycle in cycles for m in cycle}
    memo: dict[str, int] = {}

    def level(node, seen=()):
        if node in memo:
            return memo[node]
        below = [level(o, seen + (node,)) for o in edges[node] if o not in seen and not (o in in_cycle and node in in_cycle)]
        memo[node] = 1 + max(below) if below else 0
        return memo[node]

    return {node: level(node) for node in edges}, cycles


def layer_of(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports from a layer into a later one."""
    found = []
    for name, targets in edges.items():
        mine = layer_of(name)
        for target in targets:
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                found.append(f"{name} -> {target}")
    return sorted(found)


def longest_functions(root: Path, count: int = 5) -> list[tuple[int, str]]:
    lengths = []
    for path in (root / "ganzoo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(root)}:{node.name}"))
    return sorted(lengths, reverse=True)[:count]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    edges = graph(args.root)
    module_levels, cycles = levels(edges)
    print(json.dumps({"modules": len(edges), "import levels": 1 + max(module_levels.values()),
                      "cycles": cycles, "upward imports": upward(edges),
                      "longest functions": longest_functions(args.root)}, indent=1))


if __name__ == "__main__":
    main()
