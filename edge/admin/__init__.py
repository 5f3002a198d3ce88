"""Administration on the edge's own hostname: the `/api/v1` admin API (with its Access routes)
and the web dashboard with its login sessions.

The top of the edge's subpackages: imports any of them, and none imports it (`edge.server` mounts it).
"""
