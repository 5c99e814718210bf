"""trunkline: merge discipline for repositories where many AI coding agents work in parallel."""

__version__ = "0.1.0"
