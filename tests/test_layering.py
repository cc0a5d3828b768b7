"""Guards the layering of the packages: each layer imports only from the layers below it.

    utils  <-  data  <-  models  <-  fl  <-  config, build, train, evaluate, compare

Every ``.py`` module under ``utils/``, ``data/``, ``models/`` and ``fl/`` is read with ``ast``; its imports
(at module level and inside functions and classes, ``import x`` and ``from x import y``, relative ones
resolved; not those under ``if TYPE_CHECKING:``) must not name a package above its own layer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN: dict[str, set[str]] = {
    "utils": {"data", "models", "fl", "config", "build"},
    "data": {"models", "fl", "config", "build"},
    "models": {"fl", "config", "build"},
    "fl": {"config", "build", "train", "evaluate", "compare"},
}

# The Flower apps are entry points, the fl/ counterparts of train.py: `flwr run` starts them, and they
# load the config and build the run like any other entry point does.
# The Flower apps and the loopback deployment (``python -m fl.flower.loopback``) are entry points.
ENTRY_POINTS = {"fl/flower/server_app.py", "fl/flower/client_app.py", "fl/flower/loopback.py"}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _package_of(module: str, is_package: bool) -> list[str]:
    parts = module.split(".")
    return parts if is_package else parts[:-1]


def imported_modules(source: str, module: str = "", is_package: bool = False) -> Iterator[str]:
    """Dotted names of every module ``source`` imports (``from x import y`` gives ``x``), except under
    ``if TYPE_CHECKING:``; relative imports resolved against ``module``."""

    def visit(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(module, is_package)
                base = package[: len(package) - (node.level - 1)]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            if name:
                yield name
            else:  # ``from .. import fl``: the names are the modules
                yield from (alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(ast.parse(source))


def violations(root: Path = ROOT, forbidden: dict[str, set[str]] = FORBIDDEN) -> list[tuple[str, str]]:
    """(module path, imported module) for every import that reaches above its layer."""
    found = []
    for layer, banned in forbidden.items():
        for path in sorted((root / layer).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative in ENTRY_POINTS or ".venv" in path.parts:
                continue
            module = relative[: -len(".py")].replace("/", ".")
            is_package = path.name == "__init__.py"
            if is_package:
                module = module[: -len(".__init__")]
            for name in dict.fromkeys(imported_modules(path.read_text(), module, is_package)):
                if name.split(".")[0] in banned:
                    found.append((relative, name))
    return found


def test_layers_import_only_from_below():
    found = violations()
    assert not found, "imports above the module's layer:\n" + "\n".join(f"  {m}: {i}" for m, i in found)


def test_the_reader_catches_a_violation(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import torch\n"
        "if TYPE_CHECKING:\n"
        "    from fl.site import Site\n"  # allowed: only for annotations
        "def f():\n"
        "    import config\n"  # function-level
        "class C:\n"
        "    def g(self):\n"
        "        from build import Builder\n"
        "from fl import algorithms\n"
    )
    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "__init__.py").write_text("from ..data import masks\nfrom . import io\n")
    (tmp_path / "utils" / "io.py").write_text("from .. import fl\n")
    assert violations(tmp_path) == [
        ("utils/__init__.py", "data"),
        ("utils/io.py", "fl"),
        ("models/net.py", "config"),
        ("models/net.py", "build"),
        ("models/net.py", "fl"),
    ]
