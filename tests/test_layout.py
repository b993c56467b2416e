"""The tree shows the layers: README's "Code layout" names every module, and no two modules import each other."""

from __future__ import annotations

import ast
import re

from conftest import REPO

PACKAGE = REPO / "vp_ray"


def module_name(path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every vp_ray module -> the vp_ray modules it imports anywhere (also inside functions)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def test_no_two_modules_import_each_other_even_through_others():
    graph = imports()
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            assert state.get(target) != "open", "import cycle: " + " -> ".join(path[path.index(target):] + [target])
            if target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_readme_code_layout_names_every_module_and_folder():
    readme = (REPO / "README.md").read_text()
    layout = readme.split("## Code layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"[\w.]+\.py\b", layout)) | set(re.findall(r"(\w+)/", layout))
    for path in PACKAGE.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            assert path.name in named, f"README's Code layout does not name {path.relative_to(REPO)}"
    for folder in PACKAGE.iterdir():
        if folder.is_dir() and (folder / "__init__.py").exists():
            assert folder.name in named, f"README's Code layout does not name vp_ray/{folder.name}/"
