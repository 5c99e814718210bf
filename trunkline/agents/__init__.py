"""Agent runtime: providers, roles with typed contracts, budgets, sandboxed tools."""
