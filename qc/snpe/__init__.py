"""Parsers for SNPE tool output (pure library)."""
