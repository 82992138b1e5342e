"""Client TLS contexts for tests whose peers are on loopback with a test CA."""

import ssl

import trustme


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts `ca` alone. A test's peers carry its own CA's
    certificates, so the system's store (about 30 ms of CPU to parse, each time) is not
    loaded."""
    return ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
