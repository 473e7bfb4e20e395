"""Shared test helpers (not fixtures): building messages from dedented text."""
