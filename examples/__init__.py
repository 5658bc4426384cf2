"""Example architectures from outside the registry (see README, "Bringing an architecture")."""
