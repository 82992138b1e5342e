"""What the mail client raises when a server's answer stops a session; each caller words it."""


class MailClientError(Exception):
    """A server's answer the session cannot go on with."""


class Refused(MailClientError):
    """A command answered with something other than success: `said` is the server's reply
    (POP3: the line; IMAP: the tagged status and its text)."""

    def __init__(self, said: str, status: str = "") -> None:
        super().__init__(said)
        self.said = said
        self.status = status  # IMAP's result (NO, BAD); "" for POP3


class ConnectionClosed(MailClientError):
    """The server closed the connection in the middle of an answer."""


class ConnectionFailed(MailClientError):
    """Reading the server's answer failed at the socket: `error` is the OSError."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class NoAnswer(MailClientError):
    """Nothing came within the session's time for one answer."""


class LineTooLong(MailClientError):
    """A line longer than the session takes; the connection was dropped."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a line longer than {limit} bytes")
        self.limit = limit


class AnswerTooLong(MailClientError):
    """A multi-line answer or a fetched body larger than allowed (in bytes, or in `unit`); the
    connection was dropped."""

    def __init__(self, limit: int, unit: str = "bytes") -> None:
        super().__init__(f"more than {limit} {unit} in one answer")
        self.limit = limit


class Unfollowable(MailClientError, ConnectionResetError):
    """An answer the protocol has no place for (IMAP: a tagged response for no command sent);
    the connection was dropped, so it is also a connection reset to a caller that handles
    those. What the library said of it is not kept: it names the command waiting, a LOGIN's
    password with it."""

    def __init__(self) -> None:
        super().__init__("an answer out of the protocol (a response to no command sent)")


class Injected(MailClientError):
    """The server sent more in the clear after it agreed to the TLS upgrade, where a man in
    the middle would inject responses; the upgrade did not start."""
