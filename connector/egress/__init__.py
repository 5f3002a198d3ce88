"""The connector's way out: which proxy (if any) reaches a host, and the HTTP CONNECT and
SOCKS5 clients that open a TCP stream through it. The bottom layer: it imports only `shared`."""
