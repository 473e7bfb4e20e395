"""Benchmark and test-mail generator for ticketd."""
