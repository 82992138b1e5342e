"""TLS contexts shared within a process."""

import functools
import ssl


@functools.cache
def system_trust() -> ssl.SSLContext:
    """A verifying client context on the system's CA certificates, one per process: building
    it parses every certificate of the store (~30 ms of CPU on a 2.45 GHz EPYC core). Its users
    only read it (httpcore sets its ALPN to `http/1.1`, what every user of it asks anyway); one
    that needs more CAs or other settings builds a context of its own."""
    return ssl.create_default_context()
