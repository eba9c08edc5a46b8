"""Outbound actions behind one executor interface: HTTP, queues, and a test double."""
