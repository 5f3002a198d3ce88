"""Managing tunnels through the edge's admin API: the API client, `tunnel list|info` rendering
and `burrow service install|uninstall` (systemd).

Imports only `shared`.
"""
