"""The dependency rule of DESIGN.md ("Layout"), read from the code's own imports: every
import points down the list below, none runs back up, none hides inside a function.

A newcomer who adds `from server.http... import` to the runner, or makes the graph
import the server, sees this test name the module and the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO

# Top to bottom. A module may import its own layer and the layers below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("server.app", "server.cli", "server.terminal"),
    ("server.http",),
    ("server.services", "server.worker_tasks"),
    ("server.operations",),
    ("server.outcomes",),
    ("server.runner",),
    ("server.abuse",),
    ("server.media",),
    ("server.whatsapp",),
    ("server.audit", "server.telemetry", "server.logging"),
    ("graph.composition",),
    ("nodes",),
    ("graph.infra",),
    ("graph.settings",),
    ("tools",),
    ("graph.state", "graph.context", "graph.privacy"),
)
PACKAGES = ("server", "graph", "nodes", "tools")


def layer_of(module: str) -> int | None:
    """The index of the layer `module` belongs to (its longest matching prefix)."""
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return best[0] if best else None


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            yield name.removesuffix(".__init__"), path


def imports(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line, imported module, at module level) of every absolute import of ours."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield node.lineno, name, id(node) in top_level


def test_every_module_of_ours_has_a_layer() -> None:
    missing = [n for n, _ in modules() if n not in PACKAGES and layer_of(n) is None]
    assert missing == []


def test_imports_point_down() -> None:
    upward = []
    for name, path in modules():
        own = layer_of(name)
        for line, imported, _ in imports(path):
            target = layer_of(imported)
            if own is not None and target is not None and target < own:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {imported}")
    assert upward == []


def test_no_import_hides_inside_a_function_or_behind_importlib() -> None:
    hidden = []
    for _, path in modules():
        for line, imported, at_top in imports(path):
            if not at_top:
                hidden.append(f"{path.relative_to(REPO)}:{line} imports {imported} late")
        if "importlib.import_module" in path.read_text(encoding="utf-8"):
            hidden.append(f"{path.relative_to(REPO)} uses importlib.import_module")
    assert hidden == []


def test_the_rule_itself_sees_an_upward_import() -> None:
    """The checker is not vacuous: the runner importing the HTTP edge is upward."""
    runner, edge = layer_of("server.runner.queue"), layer_of("server.http.webhook")
    assert runner is not None and edge is not None and edge < runner
