"""The read-only dashboard (timeline, queue, locks, spend), /metrics and terminal views."""
