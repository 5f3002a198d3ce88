"""The dependency directions the design fixes (docs/architecture.md).

shared ← edge and shared ← connector, never across; inside each side, subpackages
are ordered bottom to top and a module imports only subpackages below its own
(or its own). The top-level modules (`cli.py`, `server.py`, …) wire them all.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"shared": {"edge", "connector"}, "edge": {"connector"}, "connector": {"edge"}}
CLI_ONLY = {"typer"}
LAYERS = {
    "edge": ["dns", "certs", "registry", "routing", "tunnels", "access", "forwarding", "visitors", "admin", "workers"],
    "connector": ["egress", "ingress", "origins", "management", "access", "tunnel"],
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def layer_of(module: str) -> tuple[str, int] | None:
    """(side, index of its subpackage) for `edge.routing.proxy`; None for other modules."""
    side, _, rest = module.partition(".")
    sub = rest.partition(".")[0]
    if side in LAYERS and sub in LAYERS[side]:
        return side, LAYERS[side].index(sub)
    return None


MODULES = sorted((package, path) for package in FORBIDDEN for path in (REPO / package).rglob("*.py"))
IDS = [str(p.relative_to(REPO)) for _, p in MODULES]


def test_every_package_has_modules():
    assert {package for package, _ in MODULES} == set(FORBIDDEN)


def test_every_subpackage_is_layered_and_documented():
    for side, layers in LAYERS.items():
        found = {p.parent.name for p in (REPO / side).glob("*/__init__.py")}
        assert found == set(layers), f"{side}/: subpackages {found ^ set(layers)} missing from LAYERS or the tree"
        for sub in layers:
            assert ast.get_docstring(ast.parse((REPO / side / sub / "__init__.py").read_text())), f"{side}/{sub} has no docstring"


@pytest.mark.parametrize("package, path", MODULES, ids=IDS)
def test_imports_follow_the_layering(package, path):
    imports = imported_modules(path)
    roots = {name.split(".")[0] for name in imports}
    assert not roots & FORBIDDEN[package], f"{path.name} imports {roots & FORBIDDEN[package]}"
    if path.name != "cli.py":
        assert not roots & CLI_ONLY, f"{path.name} imports typer; only cli.py modules may"
    own = layer_of(".".join(path.relative_to(REPO).with_suffix("").parts))
    if own is None:
        return  # a top-level module: it wires the subpackages
    above = sorted(name for name in imports if (layer := layer_of(name)) and layer[0] == own[0] and layer[1] > own[1])
    assert not above, f"{path.relative_to(REPO)} imports {above}, above its own subpackage"


def test_top_level_modules_are_few():
    """Each side keeps only its wiring at the top; everything else lives in a subpackage."""
    assert {p.name for p in (REPO / "edge").glob("*.py")} == {"__init__.py", "cli.py", "server.py", "privileges.py"}
    assert {p.name for p in (REPO / "connector").glob("*.py")} == {"__init__.py", "cli.py"}
