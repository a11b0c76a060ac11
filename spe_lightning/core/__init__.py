"""Plumbing every layer shares: the error types, name registries and number checks (standard library only)."""
