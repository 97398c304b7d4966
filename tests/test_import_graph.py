"""No import cycles between the package's parts: a module-level import of one part (a subpackage, or a
top-level module such as config) by another is an edge, and the graph must stay acyclic. Imports inside
functions (optional heavy dependencies) and under TYPE_CHECKING are not edges."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nexus_pretrain"


def part_of(module: str) -> str:
    """The part of the package a dotted module name belongs to (nexus_pretrain.data.build -> data)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_level_imports(path: Path):
    for node in ast.parse(path.read_text()).body:  # module level only: no function bodies, no if-blocks
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def graph():
    edges = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        source = part_of(".".join(relative.parts))
        for target in module_level_imports(path):
            if target.startswith("nexus_pretrain.") and part_of(target) != source:
                edges.setdefault(source, set()).add(part_of(target))
    return edges


def find_cycle(edges):
    """One cycle as a list of parts, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_parts_import_each_other_without_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle between parts of nexus_pretrain: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
