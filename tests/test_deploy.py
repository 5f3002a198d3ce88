"""deploy/: the example configs load, compose and the Dockerfile say what docs/operations.md promises."""

import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from connector import cli
from shared.edge_config import load_edge_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_edge_example_loads(tmp_path):
    shutil.copy(DEPLOY / "edge.example.yml", tmp_path / "edge.yml")
    cfg = load_edge_config(tmp_path)
    assert cfg.zones == ("example.com",) and cfg.tunnel_listen == ("", 7844)


def test_config_example_validates():
    result = CliRunner().invoke(cli.app, ["tunnel", "ingress", "validate", "--config", str(DEPLOY / "config.example.yml")])
    assert result.exit_code == 0 and result.output.strip().endswith("OK"), result.output


def test_compose_has_an_edge_and_a_connector():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert set(services) == {"edge", "connector"}
    assert "burrow-edge serve" in " ".join(services["edge"]["command"])
    assert services["connector"]["command"][:2] == ["tunnel", "run"]


def test_dockerfile_is_slim_non_root_with_the_connector_entrypoint():
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    assert "RUN pip install . && rm -rf /src" in lines
    assert "USER burrow:burrow" in lines
    assert 'ENTRYPOINT ["burrow"]' in lines
