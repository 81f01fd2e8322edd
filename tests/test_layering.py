"""The package's layering, read from the source with ``ast`` (imports inside functions count).

Each top-level part of ``megatron_prealign`` sits on a layer; a module may import its own part and
the parts on lower layers, never a part on its own layer or above. ``LAYERS`` is the one place that
says what may use what; the package docstring draws the same picture for a reader.
"""

import ast
import pathlib
from collections import defaultdict

import pytest

PACKAGE = "megatron_prealign"
ROOT = pathlib.Path(__file__).resolve().parents[1] / PACKAGE

# Lowest first. Parts on one line are peers: neither may import the other.
LAYERS = [
    ["errors"],
    ["files", "cpu_compat"],
    ["text"],  # tokenizers, words, dictionaries, code-switching: pure text and ids
    ["shards"],  # the .bin/.idx format and its targets companion
    ["preprocess", "datasets"],  # offline pipeline (tools only) | training-time datasets
    ["model", "alignment"],
    ["arguments"],
    ["distributed"],
    ["checkpointing"],
    ["conversion"],
    ["evaluation"],
    ["training"],  # imported by the entry points only
]
# Stricter than the layer order: what these parts may import besides themselves.
ONLY = {
    "text": {"errors", "files"},  # files: the standard library only (sha256_file, the JSONL reader)
    "shards": {"errors", "files", "cpu_compat"},
    "preprocess": {"errors", "files", "cpu_compat", "text", "shards"},
    "datasets": {"errors", "files", "cpu_compat", "text", "shards"},
}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: pathlib.Path, modules) -> set:
    """The package modules ``name`` imports, anywhere in the file (the most specific one named)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE + ".") and target != name:
                found.add(target)
    return found


def _part(module: str) -> str:
    return module.split(".")[1]


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _rank(part: str) -> int:
    for rank, peers in enumerate(LAYERS):
        if part in peers:
            return rank
    raise AssertionError(f"{PACKAGE}.{part} is on no layer: add it to LAYERS in {__file__}")


def test_every_part_has_a_layer():
    for module in _modules():
        if module != PACKAGE:
            _rank(_part(module))


def test_imports_go_down_the_layers():
    wrong = []
    for module, imported in sorted(_graph().items()):
        if module == PACKAGE:
            continue
        part = _part(module)
        for target in sorted(imported):
            other = _part(target)
            if other == part:
                continue
            if _rank(other) >= _rank(part) or (part in ONLY and other not in ONLY[part]):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layering:\n  " + "\n  ".join(wrong)


def test_package_imports_sit_at_the_top_of_modules():
    """An import of the package inside a function hides a dependency (and once hid a cycle); one is
    allowed only with a ``# lazy: <why>`` comment on the line above it (an import-time cost)."""
    hidden = []
    for path in _modules().values():
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE)
                        and not lines[node.lineno - 2].strip().startswith("# lazy:")):
                    hidden.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} in {function.name}()")
    assert not hidden, "package imports inside functions:\n  " + "\n  ".join(hidden)


def test_training_is_imported_only_by_training():
    users = sorted(m for m, imported in _graph().items()
                   if m != PACKAGE and _part(m) != "training" and any(_part(t) == "training" for t in imported))
    assert not users, f"only the entry points may import {PACKAGE}.training: {users}"


def _cycles(graph):
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    # A package __init__ that re-exports its modules is not a cycle with them.
    graph = defaultdict(set)
    for module, imported in _graph().items():
        graph[module] = {t for t in imported if not module.startswith(t + ".")}
    assert _cycles(graph) == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_cycle_finder(graph, expected):
    assert _cycles(graph) == expected


def test_import_reader_counts_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n"
                      "    from megatron_prealign.training import loop\n"
                      "    import megatron_prealign.errors\n")
    modules = {"megatron_prealign.training.loop": None, "megatron_prealign.errors": None,
               "megatron_prealign.training": None}
    assert _imports("megatron_prealign.x", source, modules) == {
        "megatron_prealign.training.loop", "megatron_prealign.errors"}
