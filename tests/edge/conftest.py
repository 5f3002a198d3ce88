"""Fixtures for the edge's unit tests."""

from pathlib import Path

import pytest

from edge.registry.store import Registry


@pytest.fixture
def registry(tmp_path: Path):
    """A fresh registry in the test's temporary directory."""
    reg = Registry.open(tmp_path / "edge.db")
    yield reg
    reg.close()
