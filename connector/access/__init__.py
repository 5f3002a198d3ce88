"""Access on the connector: `burrow access tcp|ssh` (a local listener ⇄ the edge), the check of the
edge's Access JWT before a request reaches its origin, and `burrow access token|policy|user`.

Imports `connector.management` (the API client), `connector.ingress` and `shared`.
"""
