"""Ingress rules: cloudflared's `ingress:` list and `originRequest` settings, validated and
matched exactly as cloudflared does.

The bottom of the connector: imports only `shared`.
"""
