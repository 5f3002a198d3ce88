"""The edge's state on SQLite or PostgreSQL (`dialect`): accounts, tunnels, secret hashes, DNS records, Access policies and
the numbered schema migrations.

Imports `edge.dns` (zones and hostname checks) and `shared`.
"""
