"""Real servers for the OAuth2 login tests: Dovecot with its OAuth2 passdb and a private Postfix
submitting through it, both on loopback, started once per module."""

from collections.abc import AsyncIterator

import pytest
import trustme

from agent.probers.tls import SslContexts, build_ssl_contexts
from testkit.oauth2 import dovecot, postfix
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ssl_contexts(ca: trustme.CA) -> SslContexts:
    return build_ssl_contexts(cadata=ca.cert_pem.bytes().decode())


@pytest.fixture(scope="module")
async def imap_pop(ca: trustme.CA) -> AsyncIterator[Dovecot]:
    if (why := dovecot.missing()) is not None:
        pytest.skip(why)
    async with Dovecot(ca) as server:
        yield server


@pytest.fixture(scope="module")
async def submission(ca: trustme.CA, imap_pop: Dovecot) -> AsyncIterator[Postfix]:
    if (why := postfix.missing()) is not None:
        pytest.skip(why)
    async with Postfix(ca, imap_pop.auth_socket, imap_pop.homes, imap_pop.owner) as server:
        yield server
