"""Certificates (trustme) and the agent's TLS contexts for prober tests."""

import ssl
from datetime import datetime, timedelta
from typing import TypedDict

import pytest
import trustme

from agent.probers.tls import SslContexts, build_ssl_contexts
from shared.timefmt import utcnow


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ssl_contexts(ca: trustme.CA) -> SslContexts:
    """What an agent builds at start, plus the test CA in the verified trust store."""
    return build_ssl_contexts(cadata=ca.cert_pem.bytes().decode())


class _Validity(TypedDict, total=False):
    not_before: datetime
    not_after: datetime


def _server_context(ca: trustme.CA, *names: str, expired: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    now = utcnow()
    validity: _Validity = {
        "not_before": now - timedelta(days=30),
        "not_after": now - timedelta(days=2),
    }
    cert = ca.issue_cert(*names, common_name=names[0], **(validity if expired else {}))
    cert.configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A certificate for `localhost` from the trusted test CA."""
    return _server_context(ca, "localhost")


@pytest.fixture(scope="session")
def untrusted_tls() -> ssl.SSLContext:
    """A certificate for `localhost` from a CA nobody trusts (like a self-signed one)."""
    return _server_context(trustme.CA(), "localhost")


@pytest.fixture(scope="session")
def wrong_name_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A trusted certificate issued for another name."""
    return _server_context(ca, "other.example")


@pytest.fixture(scope="session")
def expired_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A certificate for `localhost` from the trusted test CA that expired two days ago."""
    return _server_context(ca, "localhost", expired=True)
