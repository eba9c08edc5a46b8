"""Pure rules of the service: recurrence, durations, quotas. No I/O, no frameworks."""


class InvalidField(ValueError):
    """A value breaks a rule; `field` names where, in the client's terms."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
