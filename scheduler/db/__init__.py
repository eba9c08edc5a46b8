"""Persistence: models and sessions."""
