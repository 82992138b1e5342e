"""The one refusal of a report, whatever refused it (unpacking, parsing, the parsing worker, the
intake): a stable `reason` the API lists and a sentence a person reads."""


class Rejected(Exception):
    """A report refused: `reason` is stable (the API lists it), `message` says why."""

    def __init__(self, reason: str, message: str, named: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.named = named  # a refused mailed message: the domain its subject names; "": none

    def __reduce__(self) -> tuple[type["Rejected"], tuple[str, str, str]]:
        # Sent back from the parsing worker's process as it was raised there.
        return (Rejected, (self.reason, self.message, self.named))
