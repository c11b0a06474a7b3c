"""mir.recommend imports one way: no cycle among its modules (lazy imports included) and no private
module of another package."""
from __future__ import annotations

import ast
from pathlib import Path

import mir.recommend

PACKAGE = Path(mir.recommend.__file__).parent


def imports(path: Path) -> list[tuple[int, str]]:
    """``(level, dotted name)`` of every ``from … import`` in a module (functions' bodies too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.module:
                out.append((node.level, node.module))
            else:
                out.extend((node.level, a.name) for a in node.names)
    return out


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {p.stem: {name.split(".")[0] for level, name in imports(p) if level == 1} & modules - {p.stem}
            for p in PACKAGE.glob("*.py")}


def test_recommend_modules_import_each_other_one_way():
    g = graph()
    done: set[str] = set()

    def visit(m, path):
        assert m not in path, f"import cycle: {' -> '.join(path[path.index(m):] + [m])}"
        if m in done:
            return
        for d in sorted(g[m]):
            visit(d, path + [m])
        done.add(m)

    for m in sorted(g):
        visit(m, [])
    assert "registry" not in g["_base"] and "persist" in g["batch"]  # the registry sits above every method


def test_recommend_uses_only_public_modules_of_other_packages():
    private = [(p.name, name) for p in PACKAGE.glob("*.py") for level, name in imports(p)
               if level >= 2 and any(part.startswith("_") for part in name.split("."))]
    assert private == []
