"""A round trip recovers from an outage of either side (issue 60): real agents in two countries
send through a loopback SMTP server that delivers into a mailbox served over IMAP and POP3
(testkit/peers/mailstore.py); one side goes away for several rounds and comes back on its port.
The monitor goes down as the rules say (a failing round and its confirmation), and is up again
within two intervals and a round's login spacing of the server's return, with one down notice
and one recovery notice; the cap counts only the messages a server took. A console save of an
unchanged round trip keeps its delivery confirmation: its next round is sent, not held.

Time is the subject, so the controller runs on a skipping clock (tests/e2e/virtual.py): the
scheduler's and the alerter's passes are stepped, and the waits between rounds skipped; every
bound below is in the clock's seconds. The round trips themselves run in real time."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from shared.timefmt import parse_iso
from testkit.peers.base import LoopbackServer
from testkit.peers.mailstore import DeliveringHandler, MailboxImapPeer, MailboxPop3Peer, Mailstore
from testkit.peers.smtp import SmtpPeer
from tests.conftest import Tenant, make_tenant
from tests.console.helpers import Browserish, form_values
from tests.e2e.helpers import since
from tests.e2e.virtual import FIRST, SECOND, Virtual

# Whichever test runs first on a worker sets up the session's migrated database and the
# skipping clock's controller: past the suite's 60 s on a loaded machine.
pytestmark = [pytest.mark.breadth, pytest.mark.slow, pytest.mark.timeout(120)]

RT = "/api/roundtrip-monitors"
BOX = "probe@mail.test"
INTERVAL = 10  # the shortest the API allows
SPACING = 5.0  # the scheduler's LOGIN_SPACING_SECONDS: the round's second country goes later
TIMEOUT = 5
# From the server's return to the recovery notice: the next grid round (at most an interval),
# the one after it (recoverAfterRounds 2), its second country's login, and time to judge. A
# bound on the wait; what is judged is the rounds it took (RECOVERY_ROUNDS).
RECOVERY_S = 2 * INTERVAL + SPACING + 3.0
# Rounds scheduled after the return until the recovery notice: recoverAfterRounds 2, a passing
# round and its confirmation round, and the grid round that may come while the confirmation's
# round trip runs (a 10 s interval).
RECOVERY_ROUNDS = 3


@dataclass
class MailHost:
    """The send and receive servers of mail.test, each of which may go and come back on its
    port as a restarted server does; the mailbox is read over `protocol`."""

    protocol: str = "imap"
    store: Mailstore = field(default_factory=Mailstore)
    handler: DeliveringHandler = field(init=False)
    smtp: SmtpPeer = field(init=False)
    mailbox: MailboxImapPeer | MailboxPop3Peer = field(init=False)

    def __post_init__(self) -> None:
        self.handler = DeliveringHandler(self.store)
        self.smtp = SmtpPeer(handler=self.handler, users={"sender": "send-pw"}, auth_in_clear=True)
        self.mailbox = (
            MailboxImapPeer(self.store) if self.protocol == "imap" else MailboxPop3Peer(self.store)
        )
        self.mailbox.users[BOX] = "secret"

    def side(self, leg: str) -> SmtpPeer | LoopbackServer:
        return self.smtp if leg == "send" else self.mailbox


@asynccontextmanager
async def serving(*servers: SmtpPeer | LoopbackServer) -> AsyncIterator[None]:
    """The servers listen (on their ports of before, once they had one) until the block ends."""
    async with AsyncExitStack() as stack:
        for server in servers:
            await stack.enter_async_context(server)
        yield


async def roundtrip_monitor(api: httpx.AsyncClient, org: Tenant, host: MailHost) -> str:
    body = {
        "customerId": org.customer_public_id,
        "name": "outage round trip",
        "checkInterval": INTERVAL,
        "timeoutSeconds": TIMEOUT,
        "allowedCheckCountryCodes": [FIRST, SECOND],
        "notificationEmail": "oncall@customer.test",
        "roundtripConfig": {
            "send": {
                "hostname": "127.0.0.1",
                "port": host.smtp.port,
                "auth": {"user": "sender", "pass": "send-pw"},
                "allowPlaintextAuth": True,
                "from": "sender@mail.test",
            },
            "to": BOX,
            "receive": {
                "protocol": host.protocol,
                "hostname": "127.0.0.1",
                "port": host.mailbox.port,
                "user": BOX,
                "password": "secret",
                "allowPlaintextAuth": True,
            },
        },
    }
    r = await api.post(RT, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    public_id: str = r.json()["publicId"]
    return public_id


async def delivery(api: httpx.AsyncClient, org: Tenant, public_id: str) -> dict[str, Any]:
    r = await api.get(f"{RT}/{public_id}/delivery", headers=org.auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def all_results(api: httpx.AsyncClient, org: Tenant, public_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"{RT}/{public_id}/results?perPage=200", headers=org.auth())
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def notices(pool: asyncpg.Pool, public_id: str) -> list[tuple[str, float]]:
    """The monitor's queued notifications of its state: (kind, when queued, epoch seconds).
    Posture findings are left out: these loopback servers offer logins without TLS, which is
    a finding of its own (`auth_in_clear`), told once, whatever the outage does."""
    rows = await pool.fetch(
        "SELECT o.kind, extract(epoch FROM o.created_at)::float8 AS at"
        " FROM notification_outbox o JOIN monitors m ON m.id = o.monitor_id"
        " WHERE m.public_id = $1::uuid AND o.kind <> 'finding' ORDER BY o.id",
        public_id,
    )
    return [(r["kind"], r["at"]) for r in rows]


async def alert_state(pool: asyncpg.Pool, public_id: str) -> str | None:
    state: str | None = await pool.fetchval(
        "SELECT a.state FROM monitor_alert_state a JOIN monitors m ON m.id = a.monitor_id"
        " WHERE m.public_id = $1::uuid",
        public_id,
    )
    return state


def took_mail(result: dict[str, Any]) -> bool:
    """Whether the send server accepted the round's message (the result timed the submission)."""
    return (result.get("phases") or {}).get("submitMs") is not None


async def mailbox_changed_at(pool: asyncpg.Pool, public_id: str) -> datetime | None:
    """When the monitor's mailbox last changed (None: never since it was made)."""
    at: datetime | None = await pool.fetchval(
        "SELECT d.mailbox_at FROM roundtrip_delivery d JOIN monitors m ON m.id = d.monitor_id"
        " WHERE m.public_id = $1::uuid",
        public_id,
    )
    return at


async def confirmed(virtual: Virtual, api: httpx.AsyncClient, org: Tenant, public_id: str) -> None:
    """Until the alerter has judged the first round (both countries, at creation) delivered.
    A grid round due before that is held (an unconfirmed mailbox's cap: 2 of its 3 messages
    an hour are out): `missed`, neither up nor down."""

    async def ready() -> bool:
        return bool((await delivery(api, org, public_id))["state"] == "confirmed")

    await virtual.stepper.until("first round delivered and judged", ready, INTERVAL + SPACING)


async def outage_and_return(
    api: httpx.AsyncClient, virtual: Virtual, leg: str, protocol: str = "imap"
) -> dict[str, Any]:
    """A round trip (its mailbox read over `protocol`) whose `leg` side goes away for several
    rounds and comes back; what was seen, for the caller to judge."""
    until, now = virtual.stepper.until, virtual.clock.now
    pool = virtual.pool
    org = await make_tenant(pool)
    host = MailHost(protocol)
    leg_name = f"{leg} ({protocol})"
    stays, goes = host.side("receive" if leg == "send" else "send"), host.side(leg)
    try:
        async with serving(stays):
            async with serving(goes):
                public_id = await roundtrip_monitor(api, org, host)
                await confirmed(virtual, api, org, public_id)
            gone_at = now().timestamp()
            accepted_before = host.handler.accepted

            async def notified_down() -> bool:
                return [k for k, _ in await notices(pool, public_id)] == ["down"]

            # Detection is bounded by the rules (two failing rounds, each country's login
            # spaced), plus a round's slack; the recovery below is the bound this file is about.
            await until(f"{leg_name} down notice", notified_down, 3 * INTERVAL + 2 * SPACING)
            down_at = now().timestamp()
            # Several rounds down: a scheduled round after the one its confirmation followed.
            failing = await until(
                f"{leg_name}: a third failing round",
                lambda: _failing_rounds(api, org, public_id, gone_at, 3),
                INTERVAL + SPACING + 3,
            )
            accepted_meanwhile = host.handler.accepted - accepted_before
            async with serving(goes):
                back_at = now().timestamp()

                async def recovered() -> list[tuple[str, float]] | None:
                    seen = await notices(pool, public_id)
                    return seen if any(k == "recovered" for k, _ in seen) else None

                seen = await until(f"{leg_name} recovery notice", recovered, RECOVERY_S + 5)
                recovered_at = next(at for k, at in seen if k == "recovered")

                # One more whole round judged after the recovery: nothing more is told.
                async def round_after() -> bool:
                    items = await all_results(api, org, public_id)
                    return _whole_rounds_after(items, recovered_at) >= 1

                await until("a whole round after the recovery", round_after, INTERVAL + SPACING + 3)
                await until(
                    "the round after the recovery judged",
                    lambda: judged_after(pool, public_id, recovered_at),
                    5,
                )
                try:
                    counted = await until(
                        "sentLastHour = the messages accepted, between rounds",
                        lambda: _cap_between_rounds(api, org, public_id),
                        2 * INTERVAL,
                    )
                except AssertionError as exc:
                    items = await all_results(api, org, public_id)
                    told = (await delivery(api, org, public_id), sum(map(took_mail, items)))
                    raise AssertionError((leg_name, "sentLastHour, accepted", told)) from exc
                r = await api.get(f"{RT}/{public_id}/incidents", headers=org.auth())
                assert r.status_code == 200, r.text
                return {
                    "leg": leg_name,
                    "down_after_s": down_at - gone_at,
                    "recovered_after_s": recovered_at - back_at,
                    "rounds_to_recover": rounds_between(counted[1], back_at, recovered_at),
                    "failing_rounds": failing,
                    "accepted_meanwhile": accepted_meanwhile,
                    "notices": [k for k, _ in await notices(pool, public_id)],
                    "state": await alert_state(pool, public_id),
                    "incidents": r.json()["items"],
                    "delivery": counted[0],
                    "results": counted[1],
                    "probes_left": len(host.store.probes()),
                }
    finally:
        await pool.execute("DELETE FROM monitors WHERE organization_id = $1", org.org_id)


async def _failing_rounds(
    api: httpx.AsyncClient, org: Tenant, public_id: str, gone_at: float, n: int
) -> list[str] | None:
    """The rounds whose every country failed since the server went, once there are `n`."""
    items = since(datetime.fromtimestamp(gone_at, UTC), await all_results(api, org, public_id))
    by_round: dict[str, list[str]] = {}
    for i in items:
        by_round.setdefault(i["scheduledAt"], []).append(i["status"])
    failed = sorted(at for at, s in by_round.items() if s == ["down", "down"])
    return failed if len(failed) >= n else None


def rounds_between(items: list[dict[str, Any]], start: float, end: float) -> int:
    """Rounds scheduled after `start` and by `end` (epoch seconds)."""
    last = datetime.fromtimestamp(end, UTC)
    return len(
        {
            i["scheduledAt"]
            for i in since(datetime.fromtimestamp(start, UTC), items)
            if parse_iso(i["scheduledAt"]) <= last
        }
    )


def _whole_rounds_after(items: list[dict[str, Any]], at: float) -> int:
    """Rounds scheduled after `at` (epoch seconds) with both countries' results."""
    later = since(datetime.fromtimestamp(at, UTC), items)
    per_round: dict[str, int] = {}
    for i in later:
        per_round[i["scheduledAt"]] = per_round.get(i["scheduledAt"], 0) + 1
    return sum(n == 2 for n in per_round.values())


async def judged_after(pool: asyncpg.Pool, public_id: str, at: float) -> bool:
    judged: bool = await pool.fetchval(
        "SELECT a.last_round_at > to_timestamp($2) FROM monitor_alert_state a"
        " JOIN monitors m ON m.id = a.monitor_id WHERE m.public_id = $1::uuid",
        public_id,
        at,
    )
    return judged


async def _cap_between_rounds(
    api: httpx.AsyncClient, org: Tenant, public_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The delivery record and the results at a moment no message is in flight (the same
    `sentLastHour` before and after reading the results, equal to the messages the results
    say were accepted), else None: a round's message counts from its send to its result."""
    before = await delivery(api, org, public_id)
    items = await all_results(api, org, public_id)
    after = await delivery(api, org, public_id)
    accepted = sum(took_mail(i) for i in items)
    if before["sentLastHour"] == after["sentLastHour"] == accepted:
        return after, items
    return None


async def test_after_an_outage_of_either_side_the_round_trip_is_up_again_notified_once(
    virtual_api: httpx.AsyncClient, virtual: Virtual
) -> None:
    """The send side (SMTP refusing connections) and, for two other monitors at the same time,
    the receive side (IMAP, POP3 refusing; SMTP taking the mail meanwhile) go away for several
    rounds: each monitor goes down with a down notice, and once its server is back is up again
    within two intervals and a login spacing, with one recovery notice and nothing more. The
    refused messages count against no cap; those the send server took while the mailbox was
    away do, and the round trips after the return delete them."""
    send, *receive = await asyncio.gather(
        outage_and_return(virtual_api, virtual, "send"),
        outage_and_return(virtual_api, virtual, "receive", "imap"),
        outage_and_return(virtual_api, virtual, "receive", "pop3"),
    )
    for seen in (send, *receive):
        leg = seen["leg"]
        assert seen["notices"] == ["down", "recovered"], seen
        assert seen["state"] == "up", seen
        assert seen["rounds_to_recover"] <= RECOVERY_ROUNDS, seen
        (incident,) = seen["incidents"]
        assert incident["state"] == "closed" and incident["endReason"] is None, incident
        assert incident["causeKind"] == "refused", incident
        assert sorted(incident["countries"]) == sorted([FIRST, SECOND]), incident
        message = "send leg:" if leg.startswith("send") else "mailbox leg:"
        refused = [i for i in seen["results"] if i["errorKind"] == "refused"]
        assert len(refused) >= 6 and all(i["message"].startswith(message) for i in refused), leg
        d = seen["delivery"]
        assert (d["state"], d["notDeliveredRounds"], d["allowedPerHour"]) == ("confirmed", 0, None)
        accepted = sum(took_mail(i) for i in seen["results"])
        assert d["sentLastHour"] == accepted, (leg, d)
    # The send side away: no message left, none counts; the receive side away: the send server
    # took every one, they count, and the rounds after the return deleted them.
    assert send["accepted_meanwhile"] == 0
    assert not any(took_mail(i) for i in send["results"] if i["errorKind"] == "refused")
    for seen in receive:
        assert seen["accepted_meanwhile"] >= 6, seen
        # A round held while the mailbox was not yet confirmed only looked (issue 60): its
        # later country may find the mailbox gone, and says it sent nothing.
        unsent = [
            (i["scheduledAt"], i["country"], i["message"])
            for i in seen["results"]
            if i["errorKind"] == "refused"
            and not took_mail(i)
            and "mailbox_unconfirmed: this round sent nothing" not in i["message"]
        ]
        assert unsent == [], (seen["leg"], unsent)
        assert seen["probes_left"] <= 2, ("leftovers of the outage deleted", seen)


async def test_a_console_save_of_an_unchanged_round_trip_keeps_its_delivery_confirmation(
    virtual_api: httpx.AsyncClient, virtual: Virtual
) -> None:
    """The edit form submitted as shown (the secrets left empty: kept): the mailbox is the same,
    so its confirmation stays and the next round goes whole, where an unconfirmed mailbox's
    cap (3 messages an hour, 2 taken by the first round) would hold it back."""
    api = virtual_api
    org = await make_tenant(virtual.pool)
    host = MailHost()
    async with serving(host.smtp, host.mailbox):
        public_id = await roundtrip_monitor(api, org, host)
        await confirmed(virtual, api, org, public_id)
        before = await delivery(api, org, public_id)
        console = Browserish(api, org.tokens["member"])
        edit = f"/console/monitors/{public_id}/edit"
        page = await console.get(edit)
        assert page.status_code == 200, page.text[:500]
        token = await console.csrf(edit)
        r = await console.post(edit, form_values(page.text), token=token)
        assert r.status_code == 303, r.text[:3000]
        saved = virtual.clock.now()
        after = await delivery(api, org, public_id)
        # A country's result of the first round may land between the two reads and move the
        # confirmation forward; a reset would read `unconfirmed` (results before a mailbox's
        # change do not count) and leave its mark, `mailbox_at`.
        assert after["state"] == "confirmed", after
        assert parse_iso(after["confirmedAt"]) >= parse_iso(before["confirmedAt"]), (before, after)
        assert await mailbox_changed_at(virtual.pool, public_id) is None

        # The monitor's own next round on its grid (within an interval), both countries' logins
        # (the second a spacing later): a due time set off the grid could be passed by a grid
        # point before the scheduler claims it, and be recorded `overdue`, as the rules say.
        async def next_round() -> list[dict[str, Any]] | None:
            items = await all_results(api, org, public_id)
            return items if len(_first_round(since(saved, items))) == 2 else None

        items = await virtual.stepper.until("the next round", next_round, INTERVAL + SPACING + 3)
        first = _first_round(since(saved, items))
        assert {(i["status"], i["errorKind"]) for i in first} == {("up", None)}, items
    await virtual.pool.execute("DELETE FROM monitors WHERE organization_id = $1", org.org_id)


def _first_round(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results of the earliest round among `items`."""
    earliest = min((i["scheduledAt"] for i in items), key=parse_iso, default=None)
    return [i for i in items if i["scheduledAt"] == earliest]
