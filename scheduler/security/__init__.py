"""Certificates, thumbprints and secrets at rest."""
