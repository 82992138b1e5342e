"""The API served over HTTPS (a trustme CA) for the report endpoint's tests, a domain of their
own per test, and per module Debian's Dovecot (OAuth2 and a password for `USER`) and Postfix."""

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypedDict

import asyncpg
import httpx
import pytest
import trustme

from controller.settings import ControllerSettings
from controller.web.app import create_app
from testkit.oauth2 import dovecot, postfix
from testkit.oauth2.dovecot import Dovecot
from testkit.oauth2.postfix import Postfix
from testkit.serving import serve_app
from testkit.trust import trusting
from tests.reports.mailing import PASSWORD, USER


@pytest.fixture(scope="session")
def report_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
async def https_url(
    settings: ControllerSettings, pool: asyncpg.Pool, report_ca: trustme.CA, tmp_root: Path
) -> AsyncIterator[str]:
    async with serve_app(create_app(settings, pool), **tls_files(report_ca, tmp_root)) as url:
        yield url


class TlsFiles(TypedDict):
    ssl_certfile: str
    ssl_keyfile: str


def tls_files(report_ca: trustme.CA, where: Path) -> TlsFiles:
    """uvicorn's `ssl_certfile` and `ssl_keyfile` of a certificate for 127.0.0.1, in `where`."""
    cert = report_ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = where / "reports-api.pem", where / "reports-api.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}


@pytest.fixture
async def https(https_url: str, report_ca: trustme.CA) -> AsyncIterator[httpx.AsyncClient]:
    ctx = trusting(report_ca)
    async with httpx.AsyncClient(base_url=https_url, verify=ctx, timeout=30) as client:
        yield client


@pytest.fixture
def domain() -> Iterator[str]:
    yield f"r{uuid.uuid4().hex[:10]}.example.com"


@pytest.fixture(scope="module")
def mail_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
async def imap_pop(mail_ca: trustme.CA) -> AsyncIterator[Dovecot]:
    if (why := dovecot.missing()) is not None:
        pytest.skip(why)
    async with Dovecot(mail_ca, {USER: PASSWORD}) as server:
        yield server


@pytest.fixture(scope="module")
async def submission(mail_ca: trustme.CA, imap_pop: Dovecot) -> AsyncIterator[Postfix]:
    if (why := postfix.missing()) is not None:
        pytest.skip(why)
    async with Postfix(mail_ca, imap_pop.auth_socket, imap_pop.homes, imap_pop.owner) as server:
        yield server
