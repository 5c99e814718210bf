"""The local forge: a GitHub-compatible server, the embedded default and the test double."""
