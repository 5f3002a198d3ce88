"""The edge's zone: the hostname → tunnel lookup that DNS and routing share, the checks on
hostnames an account may route, and the authoritative DNS server.

The bottom of the edge: imports only `shared`.
"""
