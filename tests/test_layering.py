"""The dependency direction the design fixes: shared ← edge, shared ← connector."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"shared": {"edge", "connector"}, "edge": {"connector"}, "connector": {"edge"}}
CLI_ONLY = {"typer"}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


MODULES = sorted((package, path) for package in FORBIDDEN for path in (REPO / package).rglob("*.py"))


def test_every_package_has_modules():
    assert {package for package, _ in MODULES} == set(FORBIDDEN)


@pytest.mark.parametrize("package, path", MODULES, ids=[str(p.relative_to(REPO)) for _, p in MODULES])
def test_imports_follow_the_layering(package, path):
    imports = imported_packages(path)
    assert not imports & FORBIDDEN[package], f"{path.name} imports {imports & FORBIDDEN[package]}"
    if path.name != "cli.py":
        assert not imports & CLI_ONLY, f"{path.name} imports typer; only cli.py modules may"
