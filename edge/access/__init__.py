"""Access at the edge: the per-hostname gate (IP lists, rate limit, service tokens, logins),
the login page and sessions, and the key that signs Access JWTs.

Imports `edge.routing` (the `Exchange` it answers), `edge.registry` (policies) and `shared`.
"""
