"""Imports inside ``mir`` run one way: no cycles, no arrow from a lower layer to a higher one.

The layers, lowest first (a module may import from a lower layer or from inside its own package;
the base modules may also import each other)::

    0  base        errors, config, atomic, parallel, topk, lazy, mir/__init__   (no mir imports above them)
    1  audio       the only package that opens audio files
    2  features    log-mel, descriptors (arrays in, arrays out)
    3  models      taggers, track head, checkpoints, inference
    4  catalog     the library, its analysis cache, what models wrote (predictions), the labels format
    5  index       vector indexes and their storage
    6  services    similar, tagging, datasets: each uses the layers below, none uses another
    7  recommend   builds on similar, tagging, datasets
    7  train       fits models on catalogues and on corpora that datasets build
    8  generate    builds on recommend (a listener's taste as seeds) and similar
    9  api         the HTTP API (a front end over the services)
   10  cli         the command line (launches the API with `mir serve`)
   11  __main__    ``python -m mir``: calls the cli

``datasets`` builds collections (audio files, labels, listening histories) from the layers below and
is read by recommenders and front ends, so it is a service; ``train`` fits models on catalogues and on
the corpora ``datasets`` builds, and only front ends call it.

A module named ``_something`` is private to its package: no other package imports it.

The graph is read with :mod:`ast` from every ``.py`` file under ``mir/``: ``import`` and ``from``
statements anywhere in a module (top level and inside functions), relative ones resolved;
``from pkg import sub`` counts as an import of the submodule ``pkg.sub`` (the package is its
parent, being imported already); imports under ``if TYPE_CHECKING:`` are skipped (they never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "mir"

BASE = {"mir", "mir.errors", "mir.config", "mir.atomic", "mir.parallel", "mir.topk", "mir.lazy"}
LAYERS = {
    "audio": 1, "features": 2, "models": 3, "catalog": 4, "index": 5,
    "similar": 6, "tagging": 6, "datasets": 6,
    "recommend": 7, "train": 7, "generate": 8,
    "api": 9, "cli": 10, "__main__": 11,
}

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node that runs, wherever it is (skips ``if TYPE_CHECKING:`` bodies)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def build_graph() -> dict[str, set[str]]:
    """``{module: {mir modules it imports}}`` for every module under ``mir/``."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            submodules = {f"{origin}.{a.name}" for a in node.names} & files.keys()
            targets |= submodules  # `from pkg import submodule` imports the submodule …
            if len(submodules) < len(node.names):
                targets.add(origin)  # … any other name comes from the module (or package __init__) itself
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def unit(module: str) -> str:
    """The package a module belongs to: ``mir.similar.query`` -> ``similar``; base modules name themselves."""
    return module if module in BASE else module.split(".")[1]


def layer(module: str) -> int:
    if module in BASE:
        return 0
    name = unit(module)
    if name not in LAYERS:
        raise AssertionError(f"{module}: package mir.{name} has no layer; add it to LAYERS in tests/test_layers.py")
    return LAYERS[name]


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module (the import cycles)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return build_graph()


def test_the_graph_sees_relative_and_function_level_imports(graph):
    assert "mir.catalog.predictions" in graph["mir.similar.library"]  # top level, relative
    assert "mir.models" in graph["mir.catalog.predictions"]  # inside a function, relative
    assert "mir.tagging.worker" in graph["mir.tagging.job"]
    assert "mir.errors" in graph["mir.config"]


def test_every_package_has_a_layer(graph):
    for module in graph:
        layer(module)


def test_no_import_cycles(graph):
    cycles = list(strongly_connected(graph))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def test_imports_point_down_the_layers(graph):
    wrong = []
    for module, targets in graph.items():
        for target in targets:
            same_unit = unit(module) == unit(target)
            both_base = module in BASE and target in BASE
            if not (same_unit or both_base or layer(target) < layer(module)):
                wrong.append(f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_no_import_of_another_package_private_module(graph):
    """``_name`` modules are their package's business: other packages use what it exports."""
    wrong = [f"{module} imports {target}" for module, targets in graph.items() for target in targets
             if unit(module) != unit(target)
             and any(p.startswith("_") and not p.startswith("__") for p in target.split("."))]
    assert not wrong, "\n".join(sorted(wrong))


def test_only_audio_opens_audio_files():
    """Decoders and tag libraries are imported by mir.audio alone."""
    audio_libs = {"soundfile", "mutagen", "audioread", "pydub"}
    offenders = []
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        if name.startswith("mir.audio"):
            continue
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            offenders += [f"{name} imports {n}" for n in names if n.split(".")[0] in audio_libs]
    assert not offenders, "\n".join(sorted(offenders))
