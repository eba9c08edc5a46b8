"""A self-hosted cloud scheduling service with the Azure Scheduler management API."""
