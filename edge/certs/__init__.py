"""Certificates: the store chosen by SNI, the dev CA, ACME (client, manager, state, HTTP-01
challenges), the shared TLS policy and the `burrow-edge cert` commands.

Imports only `shared`.
"""
