"""Guards the layering of the whole tree: each package imports only from the packages below it.

    utils  <-  data  <-  models  <-  fl  <-  assembly  <-  study, deploy  <-  commands

Commands are the modules at the repository root (train.py, compare.py, ...) and the scripts under
``bench/`` and ``docs/``: they may import any package, and no package may import them. Every ``.py``
module of the tree is read with ``ast``; its imports (at module level and inside functions and classes,
``import x`` and ``from x import y``, relative ones resolved; not those under ``if TYPE_CHECKING:``) must
not name a package of its own layer or above, nor a command. There is no exemption list.

No two of its modules import each other, directly or around a loop (type-only imports included).

It also bounds their size: no module outside ``tests/`` longer than :data:`MAX_MODULE_LINES` lines, no
function (from its ``def`` to the end of its body) longer than :data:`MAX_FUNCTION_LINES`.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Packages from the ground floor up; packages on one floor may not import each other.
LAYERS: dict[str, int] = {
    "utils": 0, "data": 1, "models": 2, "fl": 3, "assembly": 4, "study": 5, "deploy": 5,
}  # fmt: skip
SKIP = {".venv", ".venv-ci", "__pycache__", ".git", "tests", "runs", ".cache"}


def commands(root: Path = ROOT) -> set[str]:
    """The top-level names of the command modules: the root's ``*.py`` files."""
    return {path.stem for path in root.glob("*.py")}


def forbidden_for(package: str, root: Path = ROOT) -> set[str]:
    """What a module of ``package`` may not import: the packages on its floor and above (not itself),
    and every command."""
    floor = LAYERS[package]
    above = {name for name, level in LAYERS.items() if level >= floor and name != package}
    return above | commands(root) | {"bench", "docs"}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _package_of(module: str, is_package: bool) -> list[str]:
    parts = module.split(".")
    return parts if is_package else parts[:-1]


def imported_modules(
    source: str,
    module: str = "",
    is_package: bool = False,
    *,
    type_only: bool = False,
    submodules: bool = False,
) -> Iterator[str]:
    """Dotted names of every module ``source`` imports (``from x import y`` gives ``x``, and also ``x.y``
    with ``submodules``), except under ``if TYPE_CHECKING:`` unless ``type_only``; relative imports
    resolved against ``module``."""

    def visit(node: ast.AST) -> Iterator[str]:
        if not type_only and isinstance(node, ast.If) and _is_type_checking(node.test):
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
                if submodules:  # ``from data import sim``: the name may be a module
                    yield from (f"{name}.{alias.name}" for alias in node.names)
            else:  # ``from .. import fl``: the names are the modules
                yield from (alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(ast.parse(source))


def _module_name(relative: str) -> tuple[str, bool]:
    module = relative[: -len(".py")].replace("/", ".")
    is_package = relative.endswith("__init__.py")
    return (module[: -len(".__init__")] if is_package else module), is_package


def violations(root: Path = ROOT, layers: dict[str, int] = LAYERS) -> list[tuple[str, str]]:
    """(module path, imported module) for every import that reaches its own floor or above, or a
    command, from a package module."""
    found = []
    for package in layers:
        banned = forbidden_for(package, root)
        for path in sorted((root / package).rglob("*.py")):
            if SKIP & set(path.relative_to(root).parts):
                continue
            relative = path.relative_to(root).as_posix()
            module, is_package = _module_name(relative)
            for name in dict.fromkeys(imported_modules(path.read_text(), module, is_package)):
                if name.split(".")[0] in banned:
                    found.append((relative, name))
    return found


def unplaced(root: Path = ROOT) -> list[str]:
    """Folders of Python code at the root that are neither a layer nor a command folder (bench, docs)
    nor tests: every library module must sit in a package with a floor."""
    known = set(LAYERS) | {"bench", "docs", "tests"} | SKIP
    return sorted(
        p.name for p in root.iterdir()
        if p.is_dir() and p.name not in known and not p.name.startswith(".") and any(p.rglob("*.py"))
    )  # fmt: skip


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80
# Top-level folders whose modules are not bounded: tests, the study's own scripts, what is not the code.
UNBOUNDED = {"tests", ".git", "runs", ".cache"}


def bounded_modules(root: Path = ROOT) -> Iterator[Path]:
    """Every ``.py`` file of the tree outside ``tests/``, ``.venv*``, ``.git``, ``runs``, ``.cache`` and
    ``docs/results``, in order."""
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d not in UNBOUNDED and not d.startswith(".venv")]
        elif here == root / "docs":
            dirs[:] = [d for d in dirs if d != "results"]
        dirs.sort()
        yield from (here / name for name in sorted(files) if name.endswith(".py"))


def oversized(root: Path = ROOT) -> list[str]:
    """One line for each module over :data:`MAX_MODULE_LINES` lines and each function over
    :data:`MAX_FUNCTION_LINES` (``end_lineno - lineno + 1``: the ``def`` line to the body's end)."""
    found = []
    for path in bounded_modules(root):
        relative, text = path.relative_to(root).as_posix(), path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{relative}: {lines} lines (at most {MAX_MODULE_LINES})")
        nodes = ast.walk(ast.parse(text))
        functions = [n for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for node in sorted(functions, key=lambda n: n.lineno):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                limit = f"at most {MAX_FUNCTION_LINES}"
                found.append(f"{relative}:{node.lineno} {node.name}: {length} lines ({limit})")
    return found


def test_no_module_or_function_is_too_long():
    found = oversized()
    assert not found, "too long; split along a seam of meaning:\n" + "\n".join(f"  {f}" for f in found)


def test_the_size_check_names_each_long_module_and_function(tmp_path):
    def function(name: str, body: int, indent: str = "") -> str:
        return f"{indent}def {name}():\n" + f"{indent}    x = 1\n" * body

    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "long.py").write_text("x = 1\n" * 401)
    # 400 lines, 80 of them one function: at the bounds
    (tmp_path / "utils" / "fits.py").write_text("x = 1\n" * 320 + function("ok", 79))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(
        "class Net:\n" + function("forward", 80, "    ") + "    @property\n" + function("size", 2, "    ")
        + "async def fetch():\n" + "    x = 1\n" * 81
    )  # fmt: skip
    for skipped in ("tests", ".venv-ci", "runs", ".cache", "docs/results"):
        (tmp_path / skipped).mkdir(parents=True)
        (tmp_path / skipped / "big.py").write_text("x = 1\n" * 500)
    (tmp_path / "docs" / "script.py").write_text(function("main", 100))
    assert oversized(tmp_path) == [
        "docs/script.py:1 main: 101 lines (at most 80)",
        "models/net.py:2 forward: 81 lines (at most 80)",
        "models/net.py:87 fetch: 82 lines (at most 80)",
        "utils/long.py: 401 lines (at most 400)",
    ]


def test_layers_import_only_from_below():
    found = violations()
    assert not found, "imports above the module's layer:\n" + "\n".join(f"  {m}: {i}" for m, i in found)


def test_every_python_folder_has_a_floor():
    assert not unplaced(), f"packages with no floor in tests/test_layering.py LAYERS: {unplaced()}"


def test_the_root_holds_only_commands():
    """A root module is a command: it has a ``main`` and runs it when executed."""
    for name in sorted(commands()):
        text = (ROOT / f"{name}.py").read_text()
        assert "def main(" in text and '__name__ == "__main__"' in text, f"{name}.py is not a command"


def test_the_reader_catches_a_violation(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import torch\n"
        "if TYPE_CHECKING:\n"
        "    from fl.site import Site\n"  # allowed: only for annotations
        "def f():\n"
        "    import assembly.config\n"  # function-level
        "class C:\n"
        "    def g(self):\n"
        "        from assembly.build import Builder\n"
        "from fl import algorithms\n"
    )
    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "__init__.py").write_text("from ..data import masks\nfrom . import io\n")
    (tmp_path / "utils" / "io.py").write_text("from .. import fl\n")
    (tmp_path / "train.py").write_text("def main(): ...\n")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "runner.py").write_text(
        "import train\nfrom deploy import local\nfrom assembly import build\n"
    )
    assert violations(tmp_path) == [
        ("utils/__init__.py", "data"),
        ("utils/io.py", "fl"),
        ("models/net.py", "assembly.config"),
        ("models/net.py", "assembly.build"),
        ("models/net.py", "fl"),
        ("study/runner.py", "train"),
        ("study/runner.py", "deploy"),
    ]


def import_graph(root: Path = ROOT, layers: dict[str, int] = LAYERS) -> dict[str, set[str]]:
    """Module -> the modules of the packages in ``layers`` that it imports, at any depth of its code
    (for type annotations only, too): the graph whose circles tie modules that cannot be read alone."""
    modules: dict[str, tuple[Path, bool]] = {}
    for package in layers:
        for path in sorted((root / package).rglob("*.py")):
            if not SKIP & set(path.relative_to(root).parts):
                name, is_package = _module_name(path.relative_to(root).as_posix())
                modules[name] = (path, is_package)
    return {
        name: {
            other
            for other in imported_modules(path.read_text(), name, is_package, type_only=True, submodules=True)
            if other in modules and other != name
        }
        for name, (path, is_package) in modules.items()
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_circles():
    """No two modules of the packages import each other, directly or around a loop, not even for type
    annotations: each can be read, and moved, with only what lies below it."""
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(f"  {' <-> '.join(c)}" for c in found)


def test_the_circle_check_finds_a_loop_through_type_checking_and_packages(tmp_path):
    (tmp_path / "data" / "sim").mkdir(parents=True)
    (tmp_path / "data" / "__init__.py").write_text("")
    (tmp_path / "data" / "sim" / "__init__.py").write_text("from .imaging import simulate\n")
    (tmp_path / "data" / "sim" / "imaging.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from data.source import Options\n"
    )
    (tmp_path / "data" / "source.py").write_text("from data import sim\n")  # the package's __init__
    (tmp_path / "data" / "alone.py").write_text("import data.source\n")  # into the loop, not part of it
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.py").write_text("def f():\n    from models import b\n")
    (tmp_path / "models" / "b.py").write_text("from models.a import f\n")
    graph = import_graph(tmp_path, {"data": 1, "models": 2})
    assert circles(graph) == [
        ["data.sim", "data.sim.imaging", "data.source"],
        ["models.a", "models.b"],
    ]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
