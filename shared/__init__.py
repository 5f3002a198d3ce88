"""What the edge and the connector share. Imported before any of its modules, so it picks
which of the compiled ones run (see shared/native.py: BURROW_PURE_PYTHON=1)."""

from shared import native

native.install()
