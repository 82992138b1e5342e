"""The login cap's rules are decided once each in SQL (migration 0053), where the need of an
organization's monitors of one account is summed, and once in Python, where a round's jobs
are counted; the two agree on every case of one table, run against real PostgreSQL:

- `login_account` and `plan.account_name`: the account a stored config logs in to (user@host
  in lower case, the host without its trailing dot; a round trip's mailbox), none without a
  user, whatever the kind;
- `login_legs` and `plan.legs_of`: the logins a check makes to it (two for a round trip whose
  submission logs in as its mailbox's user on the mailbox's host);
- `login_need` and `cap.monitor_need`: a monitor's logins per window."""

from typing import Any, cast

import asyncpg
import pytest

from controller.logins import cap
from controller.monitors.config import decode_config
from controller.scheduling import plan

RT_SEND = {"auth": {"user": "probe@example.net", "pass": "x"}}
RT_RECEIVE = {"hostname": "imap.example.net", "user": "probe@example.net", "password": "x"}

# (type, hostname, stored config)
CONFIGS: list[tuple[str, str, dict[str, Any]]] = [
    ("smtp", "smtp.example.net", {"auth": {"user": "Probe@Example.NET", "pass": "x"}}),
    ("smtp", "SMTP.Example.NET.", {"auth": {"user": "probe", "pass": "x"}}),
    ("smtp", "smtp.example.net", {"auth": {"user": "JÜRGEN@Example.net", "pass": "x"}}),
    ("smtp", "smtp.example.net", {}),
    ("smtp", "smtp.example.net", {"auth": None}),
    ("smtp", "smtp.example.net", {"auth": {"user": "", "pass": "x"}}),
    ("smtp", "smtp.example.net", {"auth": {"user": None, "pass": None}}),
    ("imap", "imap.example.net", {"user": "Reader", "password": "x"}),
    ("pop3", "pop.example.net.", {"protocol": "pop3", "user": "reader", "password": "x"}),
    ("imap", "imap.example.net", {"user": "", "password": "x"}),
    ("imap", "imap.example.net", {}),
    # a round trip logs in to its mailbox; its submission too when it is the same user@host
    ("roundtrip", "imap.example.net", {"send": RT_SEND, "receive": RT_RECEIVE}),
    ("roundtrip", "smtp.example.net", {"send": RT_SEND, "receive": RT_RECEIVE}),
    (
        "roundtrip",
        "IMAP.example.net.",
        {
            "send": {"auth": {"user": "PROBE@example.net", "pass": "x"}},
            "receive": {**RT_RECEIVE, "hostname": "imap.EXAMPLE.net."},
        },
    ),
    ("roundtrip", "imap.example.net", {"send": {}, "receive": RT_RECEIVE}),
    ("roundtrip", "imap.example.net", {"send": {"auth": None}, "receive": RT_RECEIVE}),
    ("roundtrip", "imap.example.net", {"send": RT_SEND, "receive": {**RT_RECEIVE, "user": ""}}),
    ("roundtrip", "imap.example.net", {"send": RT_SEND, "receive": {"user": "probe"}}),
    ("roundtrip", "imap.example.net", {"send": RT_SEND}),
]


@pytest.mark.parametrize(("kind", "hostname", "config"), CONFIGS)
async def test_the_account_and_the_logins_of_a_check(
    pool: asyncpg.Pool, kind: str, hostname: str, config: dict[str, Any]
) -> None:
    async with pool.acquire() as conn:
        account, legs = cast(
            asyncpg.Record,
            await conn.fetchrow(
                "SELECT login_account($1, $2, $3::jsonb), login_legs($1, $2, $3::jsonb)",
                kind,
                hostname,
                config,
            ),
        )
    typed = decode_config(kind, config)
    assert account == plan.account_name(hostname, typed)
    if account is not None:  # a config without a user counts towards no account
        assert legs == plan.legs_of(hostname, typed)


NEEDS = [
    (legs, countries, interval, burst)
    for legs in (1, 2)
    for countries in (1, 3)
    for interval in (10, 59, 60, 61, 599, 600, 601, 86_400)
    for burst in (0, 4)
]


async def test_a_monitors_logins_per_window(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        in_sql = await conn.fetch(
            "SELECT login_need(l, c, i, b) FROM unnest($1::int[], $2::int[], $3::int[], $4::int[])"
            " WITH ORDINALITY AS u(l, c, i, b, n) ORDER BY n",
            *(list(column) for column in zip(*NEEDS, strict=True)),
        )
    assert [r[0] for r in in_sql] == [cap.monitor_need(*need) for need in NEEDS]
