"""A round trip's mailbox is decided once: SQL `roundtrip_mailbox` (migration 0044), which the
trigger dropping a delivery confirmation calls, and its Python twin `rules.mailbox` give the same
value on every config of one table; configs saying the same thing another way (a default left
out or spelt out, a name's case, a trailing dot, a secret sealed anew, another folder or send
leg) are one mailbox, and a new `to`, server, port, protocol, login or OAuth2 subject is not."""

from typing import Any

import asyncpg
import pytest

from controller.roundtrips import rules

BASE: dict[str, Any] = {
    "to": "probe@example.net",
    "send": {"auth": {"user": "probe@example.net", "pass": "enc:v1:aaa"}},
    "receive": {"hostname": "imap.example.net", "user": "probe@example.net", "password": "x"},
}


def with_receive(**receive: Any) -> dict[str, Any]:
    return {**BASE, "receive": {**BASE["receive"], **receive}}


# (config, same mailbox as BASE?)
CASES: list[tuple[dict[str, Any], bool]] = [
    (BASE, True),
    (with_receive(protocol="imap"), True),
    (with_receive(protocol=""), True),
    (with_receive(port=143), True),
    (with_receive(port=None), True),
    (with_receive(tls=False, tlsOptions={"servername": "other.example"}), True),
    (with_receive(hostname="IMAP.Example.NET."), True),
    (with_receive(password="enc:v1:bbb", folders=["INBOX", "Junk"], spamFolders=["Junk"]), True),
    (with_receive(allowPlaintextAuth=True, oauth2={"grant": "client_credentials"}), True),
    ({**BASE, "to": "Probe@Example.NET"}, True),
    ({**BASE, "send": {"hostname": "smtp.other.example"}, "slowAfterSeconds": 5}, True),
    ({**BASE, "to": "other@example.net"}, False),
    (with_receive(hostname="imap2.example.net"), False),
    (with_receive(port=993), False),
    (with_receive(tls=True), False),  # its port is 993 now
    (with_receive(tls=True, port=143), True),
    (with_receive(protocol="pop3"), False),
    (with_receive(protocol="pop3", tls=True, port=995), False),
    (with_receive(user="other@example.net"), False),
    (with_receive(oauth2={"grant": "jwt_bearer", "subject": "boss@example.net"}), False),
    ({"to": "probe@example.net"}, False),
    ({}, False),
    ({**BASE, "receive": "not an object"}, False),
    ({**BASE, "to": None}, False),
    (with_receive(user=None, hostname=None, port="993"), False),
]


@pytest.mark.parametrize(("config", "same"), CASES)
async def test_sql_and_python_agree_on_the_mailbox(
    pool: asyncpg.Pool, config: dict[str, Any], same: bool
) -> None:
    async with pool.acquire() as conn:
        in_sql = await conn.fetchval("SELECT roundtrip_mailbox($1::jsonb)", config)
        base_in_sql = await conn.fetchval("SELECT roundtrip_mailbox($1::jsonb)", BASE)
    assert in_sql == rules.mailbox(config)
    assert (in_sql == base_in_sql) is same
    assert (rules.mailbox(config) == rules.mailbox(BASE)) is same
