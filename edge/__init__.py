"""The edge: public HTTPS, DNS, registry and the tunnels' endpoint (burrow-edge).

Imports shared first: it picks the compiled or the pure-Python modules (shared/native.py)."""

import shared  # noqa: F401
