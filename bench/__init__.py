"""Benchmarks of the scheduler service."""
