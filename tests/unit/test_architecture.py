"""The import rules of docs/architecture.md, read from the code's own imports.

Layers, bottom up: `core` (imports no project package) < the libraries (`guards`,
`model_registry`, `gpu_monitor`: each imports only `core`) < `gateway.wire` and the shared
roots (`gateway.config`, `gateway.metrics`) < the two planes (`gateway.serving`,
`gateway.control`), which never import each other < the entry points (`gateway.app`,
`gateway.cli`, `gateway.runtime`, `gateway.admin_client`, `gateway.demo`). Nothing in
production imports test or demo fixtures. No module takes part in an import circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "guards", "model_registry", "gpu_monitor", "gateway", "benchmarks")
# gateway.report renders plain data (a rollout's timeline): a library to the planes.
LIBRARIES = ("guards", "model_registry", "gpu_monitor", "gateway.report")
SHARED = ("gateway.wire", "gateway.config", "gateway.metrics")
PLANES = ("gateway.serving", "gateway.control")
ENTRY = ("gateway.app", "gateway.cli", "gateway.runtime", "gateway.admin_client",
         "gateway.watch", "gateway.status_view", "gateway.rollout_alias", "gateway.history",
         "gateway.demo")
FIXTURES = ("tests", "model_registry.testing", "gateway.demo")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = p
    return out


MODULES = _modules()


def _targets(module: str, path: Path) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        yield from names


def _edges() -> dict[str, set[str]]:
    """module -> the project modules it imports (the longest known prefix of each name)."""
    edges: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        deps = set()
        for name in _targets(module, path):
            if name.split(".")[0] == "tests":
                deps.add("tests")
                continue
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                deps.add(name)
        edges[module] = deps
    return edges


EDGES = _edges()


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(sources: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in EDGES.items() if _under(m, sources)
                  for d in deps if not _under(d, allowed))


def test_no_import_circles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in EDGES.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(EDGES):
        if v not in index:
            visit(v)
    assert circles == []


@pytest.mark.parametrize(("sources", "allowed"), [
    (("core",), ("core",)),
    *[((lib,), ("core", lib)) for lib in LIBRARIES],
    (SHARED, ("core", *LIBRARIES, *SHARED)),
    (("gateway.serving",), ("core", *LIBRARIES, *SHARED, "gateway.serving")),
    (("gateway.control",), ("core", *LIBRARIES, *SHARED, "gateway.control")),
], ids=["core", *LIBRARIES, "shared", "serving", "control"])
def test_every_arrow_points_down(sources: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    assert _violations(sources, allowed) == []


def test_production_code_imports_no_fixtures() -> None:
    production = ("core", *LIBRARIES, *SHARED, *PLANES, "gateway.app", "gateway.cli",
                  "gateway.runtime", "gateway.admin_client")
    bad = sorted(f"{m} -> {d}" for m, deps in EDGES.items()
                 if _under(m, production) and not _under(m, FIXTURES)
                 for d in deps if _under(d, FIXTURES) and not _under(m, ("gateway.cli",)))
    assert bad == []


def test_every_project_import_names_a_module_that_exists() -> None:
    """`from a.b import c` needs module a.b (a lazy import inside a function is not checked
    by anything else until it runs)."""
    missing = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                top = node.module.split(".")[0]
                if top in PACKAGES and node.module not in MODULES:
                    missing.append(f"{module}: from {node.module} import ...")
    assert missing == []


def test_the_rules_see_the_tree() -> None:
    """A rule over an empty set passes for nothing: every layer named here exists."""
    for prefix in ("core", *LIBRARIES, *SHARED, *PLANES, *ENTRY):
        assert any(_under(m, (prefix,)) for m in MODULES), prefix
    assert len(EDGES["gateway.serving.ingress"]) >= 5  # the parser sees imports


DOC = ROOT / "docs" / "architecture.md"


def test_the_architecture_page_names_every_module_of_the_gateway_and_core() -> None:
    text = DOC.read_text()
    unnamed = sorted(
        str(p.relative_to(ROOT)) for pkg in ("core", "gateway/serving", "gateway/control",
                                             "gateway/wire")
        for p in (ROOT / pkg).rglob("*.py")
        if p.name != "__init__.py" and p.name not in text)
    assert unnamed == [], "docs/architecture.md does not mention these modules"


def test_every_path_on_the_architecture_page_exists() -> None:
    import re

    text = DOC.read_text()
    paths = set(re.findall(r"`?((?:core|gateway|guards|tests|serving|control|wire)/[\w/]*\.py)",
                           text))
    missing = [p for p in sorted(paths)
               if not (ROOT / p).exists() and not (ROOT / "gateway" / p).exists()]
    assert missing == []
