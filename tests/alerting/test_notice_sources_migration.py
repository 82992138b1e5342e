"""Migration 0070 gives the notices already queued the source their kind says, keeps each
budget row under its source (the `subscribers` row becomes the subscribers' e-mail), and a row
an older controller writes without a source draws on the outage budgets, as all did before."""

import asyncpg

from controller.db.migrate import migrate, migrations
from controller.db.pool import connect
from tests.conftest import scratch_database

SOURCES = "0070_notice_sources"

# (kind, dedupe key) as queued before the migration → the source it is given.
QUEUED = [
    ("down", "incident:1:down:email", "outage"),
    ("reminder", "incident:1:reminder-1:email", "outage"),
    ("recovered", "incident:1:recovered:email", "outage"),
    ("no_data", "incident:2:no_data:email", "outage"),
    ("finding", "finding:7:email", "finding"),
    ("cert_expiry", "cert_expiry:1:ab:14", "finding"),
    ("finding", "blocklisted:1:zen:1.2.3.4:2026:appeared", "finding"),
    ("finding", "report:1:0011223344556677", "report"),
    ("credentials", "login-backoff:1:2026", "account"),
    ("login_cap", "login_cap:1:2026:3", "account"),
    ("delivery", "delivery-backoff:1:2026", "account"),
    ("oauth2_token", "oauth2_token:abc:2026", "account"),
    ("status_confirm", "status_confirm:1:ab", "subscribers"),
    ("status_update", "status_update:u:1:s", "subscribers"),
    ("held_back", "held_back:1:email:2026:5", "owners"),
]


async def test_queued_notices_and_budgets_get_their_sources(database_url: str) -> None:
    async with scratch_database(database_url, "mailprobe_0070") as url:
        conn = await connect(url)
        try:
            await _check(conn)
        finally:
            await conn.close()


async def _check(conn: asyncpg.Connection) -> None:
    # The schema as it was before 0070 (the scratch database is migrated: start over).
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await conn.execute(
        "CREATE TABLE schema_migrations (version text PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version, sql in migrations():
        if version >= SOURCES:
            break
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
    org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('o') RETURNING id")
    for kind, key, _ in QUEUED:
        await conn.execute(
            "INSERT INTO notification_outbox (organization_id, kind, channel, target, subject,"
            " body_text, dedupe_key) VALUES ($1, $2, 'email', 'a@example.com', 's', 't', $3)",
            org,
            kind,
            key,
        )
    for channel, used in (("email", 7), ("sms", 2), ("channels", 3), ("subscribers", 9)):
        await conn.execute(
            "INSERT INTO notification_budget (organization_id, channel, window_start, used)"
            " VALUES ($1, $2, now(), $3)",
            org,
            channel,
            used,
        )

    assert SOURCES in await migrate(conn)

    got = {
        r["dedupe_key"]: r["source"]
        for r in await conn.fetch("SELECT dedupe_key, source FROM notification_outbox")
    }
    assert got == {key: source for _, key, source in QUEUED}
    budgets = await conn.fetch(
        "SELECT source, channel, used FROM notification_budget ORDER BY source, channel"
    )
    assert [(r["source"], r["channel"], r["used"]) for r in budgets] == [
        ("outage", "channels", 3),
        ("outage", "email", 7),
        ("outage", "sms", 2),
        ("subscribers", "email", 9),
    ]
    # An older controller's row, written without a source: the outage budgets, as before.
    await conn.execute(
        "INSERT INTO notification_outbox (organization_id, kind, channel, target, subject,"
        " body_text, dedupe_key) VALUES ($1, 'down', 'email', 'a@example.com', 's', 't', 'old')",
        org,
    )
    assert await conn.fetchval(
        "SELECT source FROM notification_outbox WHERE dedupe_key = 'old'"
    ) == ("outage")
