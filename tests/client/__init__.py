"""Tests of the command-line client."""
