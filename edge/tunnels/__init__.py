"""Connector sessions: the tunnel listener (TLS, registration against the registry, the session
loop) and the per-source limit on registrations.

Imports `edge.routing` (to add sessions to the router), `edge.registry` and `shared`.
"""
