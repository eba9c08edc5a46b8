"""The wire documents of the API and their rules."""
