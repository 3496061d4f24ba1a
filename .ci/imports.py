"""Check the import graph of the ragserve package: no cycles, and the layers' direction.

    python .ci/imports.py        (exit 1 with the offending modules)

Layers: `errors` and `options` import nothing of ours; `engine` and `retrieval` only those;
`ingest` may use `retrieval`; `server` may use `engine`, `retrieval` and `ingest` (the
vector stores ingest in the server); only `ragserve.cli` (and `ragserve.docs`) see
everything. Imports inside functions count too.

Outside the package (tests/, bench/, .ci/, samples/): the layers are imported only as
`ragserve.<layer>`, never by their folder's name (`import server...` would load a second
copy of every module it reaches), and tests never import a bench script by name (bench/ is
not on their path; helpers.bench_script loads the one a test checks from its file).
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ragserve"
ALLOWED = {
    "errors": set(),
    "options": set(),
    "engine": {"errors", "options"},
    "retrieval": {"errors", "options"},
    "ingest": {"errors", "options", "retrieval"},
    "server": {"errors", "options", "engine", "retrieval", "ingest"},
    "cli": {"errors", "options", "engine", "retrieval", "ingest", "server"},
    "docs": {"errors", "options", "engine", "retrieval", "ingest", "server"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m == "ragserve" or m.startswith("ragserve.")}


def main() -> int:
    files = [
        Path(d) / f
        for d, _, names in os.walk(PACKAGE, followlinks=True)  # the layers are linked in
        for f in names
        if f.endswith(".py")
    ]
    modules = {module_name(p): p for p in files}
    graph = {
        name: {m for m in imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }
    problems = []
    for name, targets in graph.items():
        layer = name.split(".")[1] if name.count(".") else "cli"
        for target in targets:
            other = target.split(".")[1] if target.count(".") else "ragserve"
            if other not in (layer, "ragserve") and other not in ALLOWED.get(layer, set()):
                problems.append(f"{name} imports {target} ({layer} may not use {other})")
    # cycles: depth-first search over the module graph
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                problems.append("cycle: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    problems += outside()
    for line in problems:
        print(line)
    print(f"imports: {len(graph)} modules, {len(problems)} problems")
    return 1 if problems else 0


LAYERS = ("engine", "retrieval", "ingest", "server")
OUTSIDE = ("tests", "bench", ".ci", "samples")


def outside() -> list[str]:
    """Imports of a layer by its folder's name, and of bench scripts from tests."""
    scripts = {p.stem for p in (ROOT / "bench").rglob("*.py")}
    problems = []
    for folder in OUTSIDE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    if top in LAYERS:
                        problems.append(f"{where} imports {name}: use ragserve.{name}")
                    elif folder == "tests" and top in scripts:
                        problems.append(f"{where} imports the bench script {name} by name")
    return problems


if __name__ == "__main__":
    sys.exit(main())
