"""The public front door: HTTPS and plain-HTTP listeners, TLS with SNI and ALPN, HTTP/1.1 and
HTTP/2 for visitors with their guards, and the cap on connections per client address.

Turns visitor bytes into `Exchange`s for `edge.routing`; imports `edge.routing`, `edge.certs`, `edge.dns` and `shared`.
"""
