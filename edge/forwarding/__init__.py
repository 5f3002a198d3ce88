"""Forwarding between edges sharing a registry: a visitor request that lands on an edge without a
session of its tunnel goes to an edge that holds one (one extra hop at most), over an
authenticated edge-to-edge connection on the tunnel listener."""
