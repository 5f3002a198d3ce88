"""Running a tunnel: the supervisor that keeps HA connections up, one connection to the edge,
serving each edge-opened stream, reloading ingress rules, and the connector's metrics.

The top of the connector's subpackages: imports any of them; only `connector.cli` imports it.
"""
