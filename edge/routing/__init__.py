"""One visitor request from `Exchange` to tunnel stream: the proxy, the router that picks a live
session, the headers that travel on, the ASGI bridge to the admin pages, and the request metrics.

Imports `edge.registry`, `edge.dns` and `shared` only; the listeners above hand it exchanges.
"""
