"""The connector: dials the edge and serves its streams from origins (burrow).

Imports shared first: it picks the compiled or the pure-Python modules (shared/native.py)."""

import shared  # noqa: F401
