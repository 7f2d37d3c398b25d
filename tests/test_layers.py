"""The layers stay one-way: foundation ← geo/adapters ← engine ← API/CLI/drills.

A module that reaches up a layer (a text that loads the geocoder, an adapter that knows the
store, the engine that calls the CLI) is how the code became hard to change; these tests
read every import statement (including late ones inside functions) and fail naming the
module that crossed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("alertd", "adapters", "geo", "simulations")

# The domain and the leaves everything may use: models, errors, texts, CAP, limits, logs,
# metrics, settings. They import nothing above themselves.
FOUNDATION = {
    f"alertd.{m}"
    for m in (
        "models errors messages cap cap_signature json_alert schemas constants limits redact logs xmlsafe places "
        "text_catalogs hazard_texts metrics config loop offload retry ratelimit report tls broker apprise_urls romaji"
    ).split()
}
# What only the outermost layer may import: the HTTP API, the command line, drills, the demo.
TOP = {"alertd.api", "alertd.atom", "alertd.openapi", "alertd.public", "alertd.cli", "alertd.demo",
       "alertd.__main__", "alertd.jma.cli"}  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Project modules ``name`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            found.update(c for c in subs if c in MODULES)
            if not any(c in MODULES for c in subs):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            pkg = name.rsplit(".", node.level)[0] if "." in name else name
            base = f"{pkg}.{node.module}" if node.module else pkg
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> str:
    if name.startswith("simulations"):
        return "simulations"
    if name in FOUNDATION:
        return "foundation"
    if name.startswith(("geo", "adapters")):
        return name.split(".")[0]
    if name in TOP or name.startswith("alertd.drills"):
        return "top"
    return "engine"


ALLOWED = {
    "foundation": {"foundation"},
    "geo": {"foundation", "geo"},
    "adapters": {"foundation", "adapters"},
    "engine": {"foundation", "geo", "adapters", "engine"},
    "top": {"foundation", "geo", "adapters", "engine", "top"},
    "simulations": {"foundation", "geo", "adapters", "engine", "top", "simulations"},
}


def test_every_import_points_down_a_layer() -> None:
    crossings = sorted(
        f"{name} ({_layer(name)}) imports {dep} ({_layer(dep)})"
        for name, deps in GRAPH.items()
        for dep in deps
        if _layer(dep) not in ALLOWED[_layer(name)]
    )
    assert crossings == [], "\n".join(crossings)


def test_alertd_never_imports_simulations() -> None:
    assert not [(n, d) for n, d in GRAPH.items() if not n.startswith("simulations")
                for d in d if d.startswith("simulations")]  # fmt: skip


def test_no_module_imports_itself_through_others() -> None:
    """No import cycles: Tarjan's strongly connected components are all single modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
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
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == [], cycles


def test_the_checker_sees_a_crossing() -> None:
    """The checker itself can fail: the engine module is known to import the store and geo."""
    assert "alertd.store" in GRAPH["alertd.engine"] and "geo.registry" in GRAPH["alertd.engine"]
    assert _layer("alertd.api") == "top" and "engine" not in ALLOWED["foundation"]
