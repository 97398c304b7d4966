"""No import cycles between the package's parts: an import of one part (a subpackage, or a top-level module
such as config) by another is an edge, and the graph must stay acyclic. Every import statement counts,
at module level or inside a function, so that moving an import into a function cannot hide a cycle;
a function-local import is for deferring an optional or heavy dependency, which never needs a cycle.
Imports under ``if TYPE_CHECKING:`` are not edges: they never run and serve annotations only."""

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "nexus_pretrain"


def part_of(module: str) -> str:
    """The part of the package a dotted module name belongs to (nexus_pretrain.data.build -> data)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """(line, dotted name) of every import in a module, function bodies included; ``from a import b``
    gives a.b, as b may be a module; relative imports are resolved against ``package``."""

    def __init__(self, package: str):
        self.package = package
        self.found: List[Tuple[int, str]] = []

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(node.lineno, alias.name) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")[:len(self.package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        self.found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]


def imports(source: str, module: str) -> List[Tuple[int, str]]:
    """(line, dotted name) of every import that can run in the module ``module`` with this source."""
    is_package = module.endswith(".__init__")
    package = module.removesuffix(".__init__") if is_package else module.rpartition(".")[0]
    visitor = _Imports(package)
    visitor.visit(ast.parse(source))
    return visitor.found


def graph(root: Path = PACKAGE) -> Dict[str, Dict[str, List[str]]]:
    """{part: {part it imports: ["file:line", ...]}} over the package in ``root``."""
    edges: Dict[str, Dict[str, List[str]]] = {}
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        source = part_of(module)
        for line, target in imports(path.read_text(), module):
            if target.startswith("nexus_pretrain.") and part_of(target) != source:
                where = f"{path.relative_to(root.parent)}:{line}"
                edges.setdefault(source, {}).setdefault(part_of(target), []).append(where)
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
    edges = graph()
    cycle = find_cycle(edges)
    if cycle is not None:
        lines = [f"  {a} -> {b}: {', '.join(edges[a][b])}" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle between parts of nexus_pretrain: " + " -> ".join(cycle) + "\n"
                             + "\n".join(lines))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


SOURCE = '''
from typing import TYPE_CHECKING

from nexus_pretrain import config
from . import sampler
from .tokens import eos_id

if TYPE_CHECKING:
    from nexus_pretrain.train.trainer import Trainer
else:
    import json


def build():
    from nexus_pretrain.sft.data import build_sft_data

    class Local:
        def method(self):
            import nexus_pretrain.report.sweep
'''


def test_imports_inside_functions_are_seen_and_type_checking_ones_are_not():
    found: Set[str] = {name for _, name in imports(SOURCE, "nexus_pretrain.data.build")}
    assert found == {"typing.TYPE_CHECKING", "nexus_pretrain.config", "nexus_pretrain.data.sampler",
                     "nexus_pretrain.data.tokens.eos_id", "json", "nexus_pretrain.sft.data.build_sft_data",
                     "nexus_pretrain.report.sweep"}
    package_init = {name for _, name in imports("from .sampler import MixtureSampler", "nexus_pretrain.data.__init__")}
    assert package_init == {"nexus_pretrain.data.sampler.MixtureSampler"}


def test_a_cycle_through_a_function_local_import_is_found(tmp_path):
    package = tmp_path / "nexus_pretrain"
    for name, text in {"data/build.py": "from nexus_pretrain.data import store\n\n\ndef build():\n"
                                        "    from nexus_pretrain.sft.data import build_sft_data\n",
                       "data/store.py": "import json\n",
                       "sft/data.py": "from nexus_pretrain.data.build import RunData\n",
                       "config.py": "from nexus_pretrain import data\n"}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    edges = graph(package)
    assert edges == {"data": {"sft": ["nexus_pretrain/data/build.py:5"]},
                     "sft": {"data": ["nexus_pretrain/sft/data.py:1"]},
                     "config": {"data": ["nexus_pretrain/config.py:1"]}}
    assert find_cycle(edges) == ["data", "sft", "data"]
