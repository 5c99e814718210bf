"""Subsystem ownership leases with fencing epochs, on the database clock."""
