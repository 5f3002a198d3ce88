"""`burrow access token|policy|user`: managing Access through the edge's admin API."""
