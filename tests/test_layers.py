"""The package imports one way: no cycles between subpackages or modules, and each layer imports only downward.

The imports are read with ``ast`` from every file under ``mbcost/``, including the imports inside functions and
under ``TYPE_CHECKING`` (a lazy import is still a dependency). A top-level module (``mbcost/units.py``) is its own node.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mbcost"

# DESIGN.md's order, lowest first: leaf parsing/units -> zoo -> cost -> counters/bench/gate -> report/render -> cli.
# A node may import from its own layer or any layer below it, never from one above. ``mbcost`` is the package's
# ``__init__`` (the public API), which sits with the CLI on top. A new subpackage or module must be placed here.
LAYERS: list[set[str]] = [
    {"_version", "errors", "units", "host", "inputs", "io", "experiments", "display", "lazy"},
    {"zoo"},
    {"cost"},
    {"counters", "bench", "gate", "weights", "claims"},  # analyses built on cost
    {"predict"},  # latency predicted from a calibrated device profile (built on cost and bench)
    {"comparison"},  # models side by side: costs, conventions, counters, measurements (mbcost compare's result)
    {"render", "report"},
    {"cli", "mbcost", "__main__"},
]


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from mbcost import units`` imports the module ``mbcost.units``; ``from mbcost.zoo import x`` a name.
            targets += [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
    found = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _node(module: str) -> str:
    """The subpackage (``cost``) or top-level module (``units``) of a module; the package itself is ``mbcost``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _node_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    nodes: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        nodes[_node(module)] |= {_node(t) for t in targets} - {_node(module)}
    return nodes


def _witnesses(graph: dict[str, set[str]], a: str, b: str) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts if _node(m) == a and _node(t) == b)


def test_the_walker_sees_imports_inside_functions_and_relative_ones():
    # The checks below are only as good as the import reader: prove it on the package's own files.
    modules = _modules()
    assert "mbcost.zoo.mobilenet_v1" in _imports("mbcost.zoo.catalog", modules["mbcost.zoo.catalog"], modules)
    assert "mbcost.units" in _imports("mbcost.bench.devices", modules["mbcost.bench.devices"], modules)
    assert _imports("mbcost.__main__", modules["mbcost.__main__"], modules) == {"mbcost.cli"}
    assert "mbcost._version" in _imports("mbcost.gate.baseline", modules["mbcost.gate.baseline"], modules)


def test_cycles_are_found_in_a_made_up_graph():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycle_between_subpackages():
    graph = _graph()
    cycles = _cycles(_node_graph(graph))
    detail = [w for c in cycles for a in c for b in c if a != b for w in _witnesses(graph, a, b)]
    assert not cycles, f"import cycles between subpackages: {cycles}; imports: {detail}"


def test_no_cycle_between_modules():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles between modules: {cycles}"


def test_every_node_has_a_layer():
    nodes = {_node(m) for m in _modules()}
    placed = set().union(*LAYERS)
    assert nodes - placed == set(), "add the new subpackage or module to LAYERS in DESIGN.md's order"
    assert placed - nodes == set(), "LAYERS names a node the package no longer has"


@pytest.mark.parametrize("layer", range(len(LAYERS) - 1))
def test_layers_import_only_downward(layer):
    graph = _graph()
    rank = {node: i for i, nodes in enumerate(LAYERS) for node in nodes}
    upward = [w for a, targets in _node_graph(graph).items() if rank.get(a) == layer
              for b in targets if rank.get(b, -1) > layer for w in _witnesses(graph, a, b)]
    assert not upward, f"{sorted(LAYERS[layer])} import a higher layer: {upward}"
