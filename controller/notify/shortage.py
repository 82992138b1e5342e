"""Which send failures are mailprobe's own: the controller out of file descriptors, socket
buffers or memory. No endpoint was reached, so it is never the endpoint's fault: the send says
so and is retried soon, and it counts against no channel's breaker."""

import errno

OWN = {
    errno.EMFILE: "no file descriptor to spare",
    errno.ENFILE: "no file descriptor to spare (the system's)",
    errno.ENOBUFS: "no socket buffer to spare",
    errno.ENOMEM: "no memory to spare",
}


def own_shortage(exc: BaseException) -> OSError | None:
    """The error of this process's own resources running out behind `exc` (its causes and
    contexts followed), or None."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in OWN:
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def not_sent(own: OSError, what: str) -> str:
    """The error of a send that `own` stopped before it reached `what`."""
    code = errno.errorcode.get(own.errno or 0, "?")
    return f"not sent: this controller has {OWN[own.errno or 0]} ({code}); {what} was not tried"
