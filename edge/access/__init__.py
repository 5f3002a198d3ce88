"""Per-hostname policies at the edge: IP lists, rate limits and Access (service tokens, logins, JWTs)."""
