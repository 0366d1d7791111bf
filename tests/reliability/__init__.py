"""Reliability tests: inputs a user can type, files they can point at, the environment."""
