"""Origins: forwarding a tunnel stream to HTTP/1.1 and HTTP/2 origins, upgrades (WebSocket, TCP,
SSH) and the built-in `hello_world` service.

Imports `connector.ingress` and `shared`.
"""
