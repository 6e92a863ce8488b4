"""Write docs/modules.md from the package itself: the layers, each subpackage's paragraph and each module's first
docstring line, and the imports that run between layers. `tests/test_layers.py` fails when the file is stale,
when an import runs up the layers or in a circle (`import_circles`), or when a `pwoa_lab.<name>` written in the
code, docs or notebooks no longer resolves (`stale_dotted_names`).

    python scripts/modules_md.py           # rewrite docs/modules.md
    python scripts/modules_md.py --check   # exit 1 if it is stale
"""
from __future__ import annotations

import ast
import importlib
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pwoa_lab"
DOC = ROOT / "docs" / "modules.md"

# a dotted name of the kit as written in code, docs or notebooks; trailing dots, commas, brackets and calls stay out
DOTTED = re.compile(r"(?<![\w.])pwoa_lab(?:\.[A-Za-z_]\w*)+")

# the layers, bottom to top: a module may import from its own layer and the layers before it, never from a later one
LAYERS = ("pwoa_lab", "core", "pruning", "io", "training", "experiments", "course", "cli")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    """'pwoa_lab.core.attacks' -> 'core'; 'pwoa_lab.utils' -> 'pwoa_lab'; 'pwoa_lab.cli.prune' -> 'cli'."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    return "pwoa_lab"


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def module_names() -> set[str]:
    """The dotted names of all the package's modules."""
    return {module_name(p) for p in modules()}


def import_target(name: str, known: set[str]) -> str:
    """The module an import of `name` reaches: `name` itself, else its longest prefix that is a module."""
    parts = name.split(".")
    return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in known), name)


def absolute_module(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of a `from ... import`, relative ones resolved against `path`'s package."""
    if not node.level:
        return node.module or ""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def kit_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a pwoa_lab module in `path` (top level and inside functions).

    `from pwoa_lab.pruning import masks` reaches the module `pwoa_lab.pruning.masks`; `from pwoa_lab.pruning
    import ADMM` reaches `pwoa_lab.pruning` (ADMM is no module)."""
    known, out = module_names(), []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = absolute_module(path, node)
            if base.split(".")[0] == "pwoa_lab":
                out += [(node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in known else import_target(base, known))
                        for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, import_target(a.name, known)) for a in node.names
                    if a.name.split(".")[0] == "pwoa_lab"]
    return out


def upward_imports() -> list[str]:
    """Every import that runs from a layer to a later one, as 'file:line: A imports B'."""
    bad = []
    for path in modules():
        here = LAYERS.index(layer_of(module_name(path)))
        for line, target in kit_imports(path):
            if LAYERS.index(layer_of(target)) > here:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {module_name(path)} imports {target}")
    return bad


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports; a package's `__init__` importing its own submodules does not count."""
    graph = {}
    for path in modules():
        name = module_name(path)
        own = name + "." if path.name == "__init__.py" else None
        graph[name] = {t for _, t in kit_imports(path) if t != name and not (own and t.startswith(own))}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules `start` reaches through one import or more."""
    seen, todo = set(), list(graph.get(start, ()))
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph.get(m, ())
    return seen


def shortest_circle(graph: dict[str, set[str]], start: str) -> list[str]:
    """The shortest chain of imports from `start` back to itself (`start` must be on a circle)."""
    parent, queue = {}, [start]
    while start not in parent:
        m = queue.pop(0)
        for t in sorted(graph.get(m, ())):
            if t not in parent:
                parent[t] = m
                queue.append(t)
    path = [start]
    while len(path) == 1 or path[-1] != start:
        path.append(parent[path[-1]])
    return path[::-1]


def import_circles() -> list[str]:
    """One line per import circle (a group of modules that import each other, directly or through others):
    the shortest circle through its first module, 'a -> b -> a', plus the group's other modules if any."""
    graph = import_graph()
    reach = {m: reachable(graph, m) for m in graph}
    seen, out = set(), []
    for m in sorted(graph):
        if m in seen or m not in reach[m]:
            continue
        group = {n for n in reach[m] if m in reach[n]}
        seen |= group
        circle = shortest_circle(graph, m)
        rest = sorted(group - set(circle))
        out.append(" -> ".join(circle) + (f" (the circle also holds {', '.join(rest)})" if rest else ""))
    return out


def text_lines():
    """(where, line) of every line that may name a kit module: the package's, bench's and scripts' .py files,
    docs/*.md, README.md, and the notebooks' cell sources ('notebooks/x.ipynb:cell 3 line 2')."""
    files = modules() + sorted((ROOT / "bench").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
    files += sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    for path in files:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            yield f"{path.relative_to(ROOT)}:{i}", line
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for c, cell in enumerate(json.loads(path.read_text())["cells"], 1):
            for i, line in enumerate("".join(cell["source"]).splitlines(), 1):
                yield f"{path.relative_to(ROOT)}:cell {c} line {i}", line


@lru_cache(maxsize=None)
def resolves(name: str) -> bool:
    """Whether `name` exists: import its longest module prefix, then getattr the rest."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        try:
            obj = importlib.import_module(prefix)
        except ModuleNotFoundError as e:
            if not (e.name == prefix or prefix.startswith(f"{e.name}.")):
                raise  # the module exists but one of its own imports is missing
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def stale_dotted_names() -> list[str]:
    """Every `pwoa_lab.<dotted.name>` written in code, docs or notebooks that does not resolve, as 'file:line: name'."""
    return [f"{where}: {name}" for where, line in text_lines() for name in DOTTED.findall(line) if not resolves(name)]


def layer_imports() -> dict[str, list[str]]:
    """Each layer -> the other layers its modules import from, bottom to top."""
    found = {layer: set() for layer in LAYERS}
    for path in modules():
        here = layer_of(module_name(path))
        found[here] |= {layer_of(t) for _, t in kit_imports(path)} - {here}
    return {layer: sorted(found[layer], key=LAYERS.index) for layer in LAYERS}


def layer_label(layer: str) -> str:
    """How docs/modules.md names a layer: 'utils, defaults', 'core/', ..., 'cli/'."""
    return {"pwoa_lab": "utils, defaults"}.get(layer, f"{layer}/")


def first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def render() -> str:
    lines = ["# What is inside pwoa-lab", "",
             "Generated by `python scripts/modules_md.py` from the package's docstrings; `tests/test_layers.py` fails "
             "when this file is stale or when an import runs up the layers. See the [README](../README.md) for how "
             "to use the kit.", "",
             "## The layers", "",
             "Bottom to top; a module imports only from its own layer and the layers before it:", "", "```",
             " -> ".join(layer_label(s) for s in LAYERS), "```", "",
             "Computing never draws; pruning and HSIC know no training loop; evaluation knows nothing of how a model "
             "was made.", ""]
    lines += ["## The imports between layers", "",
              "Which layers each layer's modules import from (read from the code):", "",
              "| layer | imports from |", "| --- | --- |"]
    lines += [f"| `{layer_label(layer)}` | {', '.join(f'`{layer_label(s)}`' for s in used) or '(nothing)'} |"
              for layer, used in layer_imports().items()]
    lines.append("")
    for layer in LAYERS:
        files = [p for p in modules() if layer_of(module_name(p)) == layer]
        if layer == "pwoa_lab":
            title, intro = "`pwoa_lab/` (the base)", first_line(PACKAGE / "__init__.py")
            files = [p for p in files if p.parent == PACKAGE and p.name != "__init__.py"]
        else:
            init = PACKAGE / layer / "__init__.py"
            title, intro = f"`pwoa_lab/{layer}/`", first_line(init)
            files = [p for p in files if p != init]
        lines += [f"## {title}", ""] + ([intro, ""] if intro else [])
        lines += ["| module | what it holds |", "| --- | --- |"]
        lines += [f"| `{module_name(p)}` | {first_line(p)} |" for p in files]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is stale: run python scripts/modules_md.py")
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
