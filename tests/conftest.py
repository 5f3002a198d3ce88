"""Fixtures for the whole suite."""

import os

import pytest


@pytest.fixture(autouse=True)
def restore_umask():
    """The CLIs set a private umask when a test runs them in-process; put the test
    process's umask back so later tests (and the servers they start) are unaffected."""
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)
