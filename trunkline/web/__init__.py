"""The read-only dashboard and the /metrics endpoint."""
