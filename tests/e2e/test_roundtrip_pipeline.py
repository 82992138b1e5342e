"""Round-trip monitors end to end (issue 14): made through the API, scheduled, sealed to their
countries, run by the agents of two countries against an SMTP server that really delivers into
a mailbox the IMAP and POP3 peers serve (testkit/peers/mailstore.py), results back through the
API. The controller runs on a skipping clock (tests/e2e/virtual.py): the waits between a round's
spaced logins are skipped, its SMTP, IMAP and POP3 exchanges run in real time."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from controller.jobs.rules import JobIds
from testkit.alerting.wired import wired_alerter
from testkit.peers.mailstore import DeliveringHandler, MailboxImapPeer, MailboxPop3Peer, Mailstore
from testkit.peers.smtp import SmtpPeer
from tests.conftest import Tenant
from tests.e2e.conftest import Controller
from tests.e2e.helpers import count, no_round_due
from tests.e2e.virtual import FIRST, SECOND, Virtual, stepped_results

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("unjudged")]

RT = "/api/roundtrip-monitors"
BOX = "probe@mail.test"


@dataclass
class Mail:
    store: Mailstore
    handler: DeliveringHandler
    smtp: SmtpPeer
    imap: MailboxImapPeer
    pop3: MailboxPop3Peer


@asynccontextmanager
async def mail() -> AsyncIterator[Mail]:
    store = Mailstore()
    handler = DeliveringHandler(store, auth_results="spf=pass smtp.mailfrom=x; dmarc=none")
    async with (
        SmtpPeer(handler=handler, users={"sender": "send-pw"}, auth_in_clear=True) as smtp,
        MailboxImapPeer(store) as imap,
        MailboxPop3Peer(store) as pop3,
    ):
        # The mailbox's login is its address: `to` must be the mailbox the monitor reads.
        imap.users[BOX] = pop3.users[BOX] = "secret"
        yield Mail(store, handler, smtp, imap, pop3)


async def roundtrip_monitor(
    api: httpx.AsyncClient,
    org: Tenant,
    m: Mail,
    *,
    protocol: str = "imap",
    timeout_s: int = 15,
    send: dict[str, Any] | None = None,
    receive: dict[str, Any] | None = None,
    **config: Any,
) -> str:
    recv: dict[str, Any] = {
        "protocol": protocol,
        "hostname": "127.0.0.1",
        "port": m.imap.port if protocol == "imap" else m.pop3.port,
        "user": BOX,
        "password": "secret",
        "allowPlaintextAuth": True,
    }
    if protocol == "imap":
        recv.update(folders=["INBOX", "Junk"], spamFolders=["Junk"])
    body = {
        "customerId": org.customer_public_id,
        "name": "e2e round trip",
        "checkInterval": 3600,
        "timeoutSeconds": timeout_s,
        "allowedCheckCountryCodes": [FIRST, SECOND],
        "roundtripConfig": {
            "send": {
                "hostname": "127.0.0.1",
                "port": m.smtp.port,
                "auth": {"user": "sender", "pass": "send-pw"},
                "allowPlaintextAuth": True,
                "from": "sender@mail.test",  # no address login: in `to`'s domain
                **(send or {}),
            },
            "to": BOX,
            "receive": {**recv, **(receive or {})},
            **config,
        },
    }
    r = await api.post(RT, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    public_id: str = r.json()["publicId"]
    return public_id


async def first_round(
    virtual: Virtual, api: httpx.AsyncClient, org: Tenant, public_id: str, within: float = 15.0
) -> list[dict[str, Any]]:
    """The results of a new monitor's first round, which runs at once from both countries (the
    second login `LOGIN_SPACING_SECONDS` after the first). Only that round's: a failing first
    round asks for a confirmation round, whose first country may be in before the first
    round's second."""

    def first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        earliest = min((i["scheduledAt"] for i in items), default=None)
        return [i for i in items if i["scheduledAt"] == earliest]

    items = await stepped_results(
        virtual, api, org, public_id, lambda items: len(first(items)) >= 2, within, path=RT
    )
    return sorted(first(items), key=lambda i: i["country"])


async def round_of(
    virtual: Virtual,
    api: httpx.AsyncClient,
    org: Tenant,
    public_id: str,
    n: int = 2,
    within: float = 10.0,
) -> list[dict[str, Any]]:
    """Trigger a round from both countries; its `n` results once they are all in."""
    r = await api.post(f"{RT}/{public_id}/trigger-check", headers=org.auth())
    assert r.status_code == 202, r.text
    assert sorted(j["status"] for j in r.json()["jobs"]) == ["queued", "queued"], r.text
    # A round of its own: a check-now joins a round still in flight instead (its jobs).
    assert not r.json().get("joined"), r.text
    job_ids = {j["jobId"] for j in r.json()["jobs"]}

    def done(items: list[dict[str, Any]]) -> bool:
        return len([i for i in items if i["jobId"] in job_ids]) >= len(job_ids)

    items = await stepped_results(virtual, api, org, public_id, done, within, path=RT)
    assert count(n)(items)
    return sorted((i for i in items if i["jobId"] in job_ids), key=lambda i: i["country"])


async def until_confirmed(
    api: httpx.AsyncClient,
    org: Tenant,
    controller: Controller,
    job_ids: JobIds,
    public_id: str,
    within: float = 10.0,
) -> None:
    """Until the alerter (a role this controller does not run) has judged a delivered round:
    the monitor's mailbox is confirmed."""
    alerter = wired_alerter(controller.pool, controller.js, job_ids)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        await alerter.burst()
        r = await api.get(f"{RT}/{public_id}/delivery", headers=org.auth())
        assert r.status_code == 200, r.text
        if r.json()["state"] == "confirmed":
            return
        assert asyncio.get_running_loop().time() < deadline, r.json()
        await asyncio.sleep(0.1)


async def test_two_countries_and_two_monitors_share_one_mailbox(
    virtual_api: httpx.AsyncClient, virtual_org: Tenant, virtual: Virtual
) -> None:
    """Mail submitted from each country is found, measured, and deleted; a second monitor
    reading the same mailbox over POP3 at the same time is not confused by it."""
    api, org = virtual_api, virtual_org
    async with mail() as m:
        m.store.delay_s = 0.2
        imap_id = await roundtrip_monitor(api, org, m)
        pop3_id = await roundtrip_monitor(api, org, m, protocol="pop3")
        imap_round, pop3_round = await asyncio.gather(
            first_round(virtual, api, org, imap_id), first_round(virtual, api, org, pop3_id)
        )
        for item in imap_round + pop3_round:
            assert (item["status"], item["errorKind"]) == ("up", None), item
            assert item["monitorType"] == "roundtrip" and item["folder"] == "INBOX"
            assert item["phases"]["deliveryMs"] >= 150 and item["phases"]["submitMs"] is not None
            assert item["hops"] and item["hops"][0]["by"] == "mx.mail.test"
            assert item["authResults"]["spf"] == "pass"
        assert [i["country"] for i in imap_round] == sorted([FIRST, SECOND])
        assert m.handler.accepted == 4
        assert m.store.probes() == [], "every probe message is deleted"
        assert len(m.smtp.auths) == 4, "each agent opened its sealed send credentials"
        r = await api.get(f"{RT}/{imap_id}/countries", headers=org.auth())
        assert [(c["country"], c["status"]) for c in r.json()["items"]] == [
            (cc, "up") for cc in sorted([FIRST, SECOND])
        ]


async def test_junk_lateness_and_cleanup_of_late_arrivals(
    virtual_api: httpx.AsyncClient, virtual_org: Tenant, virtual: Virtual
) -> None:
    """Held mail is `not_delivered`; once it arrives late, the next round deletes it with its
    own; mail in Junk is `spam` for a monitor that counts it as failing. The mailbox first
    shows it receives the probe: an unconfirmed one gets only 3 messages an hour (issue 22)."""
    api, org = virtual_api, virtual_org
    async with mail() as m:
        # Short, as a held round lasts all of it, but long enough that a loaded host sends and
        # logs in within it (at 2 s a round ended `timeout` before its mailbox was looked at).
        timeout_s = 5
        public_id = await roundtrip_monitor(api, org, m, timeout_s=timeout_s)
        first = await first_round(virtual, api, org, public_id)
        assert [i["status"] for i in first] == ["up", "up"], first
        await no_round_due(virtual.pool, public_id)

        async def confirmed() -> bool:
            await virtual.stepper.alerter.burst()  # the alerter judges the delivered round
            r = await api.get(f"{RT}/{public_id}/delivery", headers=org.auth())
            assert r.status_code == 200, r.text
            return bool(r.json()["state"] == "confirmed")

        await virtual.stepper.until("the mailbox confirmed", confirmed, 10.0)
        m.store.hold = True
        late = await round_of(virtual, api, org, public_id, n=4, within=4.0 * timeout_s)
        assert [(i["status"], i["errorKind"]) for i in late] == [("down", "not_delivered")] * 2, (
            late
        )
        m.store.hold = False
        m.store.release()
        assert len(m.store.probes()) == 2
        # A leftover is one older than a round (the timeout, on the agents' clock): that passes.
        virtual.clock.skip(timeout_s + 0.1)
        again = await round_of(virtual, api, org, public_id, n=6, within=15.0)
        assert [i["status"] for i in again] == ["up", "up"], again
        assert m.store.probes() == [], "the late arrivals were deleted too"

        m.store.route = lambda raw: "Junk"
        spam_id = await roundtrip_monitor(api, org, m, spamIsFailure=True)
        spam = await first_round(virtual, api, org, spam_id)
        assert [(i["status"], i["errorKind"], i["folder"]) for i in spam] == [
            ("down", "spam", "Junk")
        ] * 2


async def test_failing_send_leg_and_failing_mailbox_leg(
    virtual_api: httpx.AsyncClient, virtual_org: Tenant, virtual: Virtual
) -> None:
    """Each leg's rejected password is `auth`, named by its leg; the round's other country does
    not log in after the rejection (`auth_backoff`: logins never lock the account)."""
    api, org = virtual_api, virtual_org
    async with mail() as m:
        bad_send = await roundtrip_monitor(
            api, org, m, send={"auth": {"user": "sender", "pass": "wrong"}}
        )
        bad_box = await roundtrip_monitor(api, org, m, receive={"password": "wrong"})
        send_round, box_round = await asyncio.gather(
            first_round(virtual, api, org, bad_send), first_round(virtual, api, org, bad_box)
        )
        for found, leg in ((send_round, "send leg:"), (box_round, "mailbox leg:")):
            kinds = sorted((i["status"], i["errorKind"]) for i in found)
            assert kinds == [("down", "auth"), ("missed", "auth_backoff")], found
            [failed] = [i for i in found if i["errorKind"] == "auth"]
            assert failed["message"].startswith(leg) and "wrong" not in failed["message"]
        assert m.handler.accepted == 1, "only the monitor whose send leg works sent mail"
