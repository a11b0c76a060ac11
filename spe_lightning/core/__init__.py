"""Plumbing every layer shares: the error types, name registries, number checks and optional packages
(standard library only)."""
