"""Errors the SFU reports to its caller (the signaling layer turns them into protocol errors)."""


class NegotiationError(Exception):
    """An SDP could not be used. ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
