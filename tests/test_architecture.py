"""The package's shape: no import cycle, no borrowed private names, short modules, installed scripts.

The allow-lists name today's exceptions; each entry is a defect to mend, and the
lists only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "unet3d_keras"
MAX_LINES = 450

# Modules longer than MAX_LINES (path relative to the repository root).
LONG_MODULES_ALLOWED: set[str] = set()
# Scripts that still put the repository on sys.path.
SYS_PATH_EDITS_ALLOWED: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST):
    """Every import statement, at any depth (functions included), except under ``if TYPE_CHECKING``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(name: str, path: Path, modules: dict[str, Path]):
    """``(module, imported names, line)`` of each intra-package import of module ``name``.

    ``from .pkg import sub`` counts as an import of ``pkg.sub`` when ``sub`` is a module.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "unet3d_keras":
                    yield alias.name, [], node.lineno
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != "unet3d_keras":
            continue
        names = [alias.name for alias in node.names]
        submodules = [n for n in names if f"{target}.{n}" in modules]
        for sub in submodules:
            yield f"{target}.{sub}", [], node.lineno
        others = [n for n in names if n not in submodules]
        if others or not submodules:
            yield target, others, node.lineno


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _, _ in imported_modules(name, path, modules):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "unet3d_keras.pipeline" in graph["unet3d_keras.commands.train"]  # function-level imports count
    assert find_cycles(graph) == []


def test_no_module_imports_another_modules_private_names():
    modules = package_modules()
    borrowed = []
    for name, path in modules.items():
        for target, names, line in imported_modules(name, path, modules):
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__") and target != name:
                    borrowed.append(f"{path.relative_to(ROOT)}:{line}: {imported} from {target}")
    assert borrowed == []


def test_no_module_is_longer_than_the_limit():
    long = {str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")
            if len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES}
    assert long - LONG_MODULES_ALLOWED == set(), f"modules over {MAX_LINES} lines"
    # An entry that got short enough leaves the allow-list.
    assert LONG_MODULES_ALLOWED - long == set(), "no longer over the limit: remove from LONG_MODULES_ALLOWED"


def sys_path_edits(path: Path) -> list[int]:
    """Lines of ``sys.path.insert/append/...`` calls and ``sys.path = ...`` assignments."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
        if (isinstance(target, ast.Attribute) and target.attr == "path" and isinstance(target.value, ast.Name)
                and target.value.id == "sys"):
            lines.append(node.lineno)
    return lines


def test_scripts_do_not_edit_sys_path():
    scripts = sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("brats/*.py")])
    editing = {str(path.relative_to(ROOT)) for path in scripts if sys_path_edits(path)}
    assert editing - SYS_PATH_EDITS_ALLOWED == set(), "the installed package is importable: no sys.path edits"
    assert SYS_PATH_EDITS_ALLOWED - editing == set(), "no longer edits sys.path: remove from SYS_PATH_EDITS_ALLOWED"


def function_level_imports(path: Path):
    """``(line, text)`` of each import inside a function or method body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node.lineno


def test_function_level_imports_say_why():
    """Imports inside functions are kept for heavy optional dependencies, each with a ``# why`` comment
    on its line or in the comment lines right above it."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for line in sorted(set(function_level_imports(path))):
            above = line - 2
            context = [lines[line - 1]]
            while above >= 0 and lines[above].strip().startswith(("#", "import ", "from ")):
                context.append(lines[above])
                above -= 1
            if not any("# why" in text for text in context):
                unexplained.append(f"{path.relative_to(ROOT)}:{line}: {lines[line - 1].strip()}")
    assert unexplained == []


def test_the_library_does_not_import_its_command_line_layer():
    """Data flows one way: the programs (cli, commands) call the library, never the reverse."""
    modules = package_modules()
    upward = []
    for name, path in modules.items():
        if name.startswith(("unet3d_keras.commands", "unet3d_keras.cli")):
            continue
        for target, _, line in imported_modules(name, path, modules):
            if target.startswith(("unet3d_keras.commands", "unet3d_keras.cli")):
                upward.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert upward == []


def test_every_module_is_on_the_architecture_page():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [name for name, path in package_modules().items()
               if path.name != "__init__.py" and f"`{name.removeprefix('unet3d_keras.')}`" not in page]
    assert missing == [], "add these modules to docs/architecture.md"
