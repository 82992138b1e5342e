"""A round trip recovers from a delivery stall (issue 60): real agents in two countries send
through a loopback SMTP server that takes every message but files none into the mailbox for a
while (`Mailstore.hold`), then delivers them all (`release`). Three rounds `not_delivered` back
the monitor's sending off (at most one message, or one round, an hour: the agents' IP
reputation); its rounds then look in the mailbox without sending (`lookOnly`). Once the stall
ends, a look finds the late messages: the round is `up`, the back-off ends, the next round sends
again, and the monitor is up within two intervals and a login spacing of the release, with one
down and one recovery notice. Before, every round until the hour was out was `missed`
(`delivery_backoff`) and the monitor stayed down that long.

Time is the subject: the controller runs on a skipping clock (tests/e2e/virtual.py), every
bound below in its seconds; the round trips and their timeouts run in real time."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import make_tenant
from tests.e2e.helpers import since
from tests.e2e.test_roundtrip_outage import (
    INTERVAL,
    RECOVERY_ROUNDS,
    RECOVERY_S,
    RT,
    SPACING,
    MailHost,
    alert_state,
    all_results,
    confirmed,
    delivery,
    judged_after,
    notices,
    rounds_between,
    roundtrip_monitor,
    serving,
    took_mail,
)
from tests.e2e.virtual import FIRST, SECOND, Virtual

# Three stalled rounds wait out their real 5 s timeouts from each country, and the first test
# on a worker sets up the session's database: past the suite's 60 s on a loaded machine.
pytestmark = [pytest.mark.breadth, pytest.mark.slow, pytest.mark.timeout(120)]

LOOKS = 1  # whole rounds of looks (both countries) that find nothing before the release


def _looks(items: list[dict[str, Any]], after: float) -> list[dict[str, Any]]:
    """Results of rounds scheduled after `after` (epoch seconds) that looked and found nothing:
    held back, yet run by an agent."""
    return [
        i
        for i in since(datetime.fromtimestamp(after, UTC), items)
        if i["errorKind"] == "delivery_backoff" and "this round sent nothing" in i["message"]
    ]


def _rounds(items: list[dict[str, Any]]) -> int:
    """Rounds with both countries' results."""
    per_round: dict[str, int] = {}
    for i in items:
        per_round[i["scheduledAt"]] = per_round.get(i["scheduledAt"], 0) + 1
    return sum(n == 2 for n in per_round.values())


async def stall_and_release(
    api: httpx.AsyncClient, virtual: Virtual, protocol: str
) -> dict[str, Any]:
    """A confirmed round trip (its mailbox read over `protocol`) whose mail stalls until its
    sending is backed off and a round has looked in vain, then is delivered; what was seen,
    for the caller to judge."""
    until, now, pool = virtual.stepper.until, virtual.clock.now, virtual.pool
    org = await make_tenant(pool)
    host = MailHost(protocol)
    try:
        async with serving(host.smtp, host.mailbox):
            public_id = await roundtrip_monitor(api, org, host)
            await confirmed(virtual, api, org, public_id)
            host.store.hold = True
            stalled_at = now().timestamp()

            async def backed_off() -> bool:
                return bool((await delivery(api, org, public_id))["state"] == "backed_off")

            # Three rounds not delivered (a confirmation round among them), each a timeout long.
            await until(f"{protocol}: backed off", backed_off, 5 * INTERVAL + 2 * SPACING)
            backed_at = now().timestamp()
            accepted_at_backoff = host.handler.accepted

            async def looked() -> list[dict[str, Any]] | None:
                found = _looks(await all_results(api, org, public_id), backed_at)
                return found if _rounds(found) >= LOOKS else None

            looks = await until(
                f"{protocol}: {LOOKS} round(s) of looks",
                looked,
                (LOOKS + 1) * INTERVAL + SPACING + 3,
            )
            accepted_in_backoff = host.handler.accepted - accepted_at_backoff
            held_messages = len(host.store.held)
            host.store.hold = False
            host.store.release()
            released_at = now().timestamp()

            async def recovered() -> list[tuple[str, float]] | None:
                seen = await notices(pool, public_id)
                return seen if any(k == "recovered" for k, _ in seen) else None

            try:
                seen = await until(f"{protocol}: recovery notice", recovered, RECOVERY_S + 5)
            except AssertionError as exc:
                after = since(
                    datetime.fromtimestamp(backed_at, UTC), await all_results(api, org, public_id)
                )
                rows = [
                    (i["scheduledAt"], i["country"], i["status"], i["errorKind"], i["message"])
                    for i in after
                ]
                raise AssertionError((protocol, _iso(released_at), rows)) from exc
            recovered_at = next(at for k, at in seen if k == "recovered")

            # One more whole round after the recovery: nothing more is told.
            async def round_after() -> list[dict[str, Any]] | None:
                items = await all_results(api, org, public_id)
                after = since(datetime.fromtimestamp(recovered_at, UTC), items)
                return items if _rounds(after) >= 1 else None

            items = await until(
                "a whole round after the recovery", round_after, INTERVAL + SPACING + 3
            )
            await until(
                "the round after the recovery judged",
                lambda: judged_after(pool, public_id, recovered_at),
                5,
            )
            r = await api.get(f"{RT}/{public_id}/incidents", headers=org.auth())
            assert r.status_code == 200, r.text
            stall = since(datetime.fromtimestamp(stalled_at, UTC), items)
            return {
                "protocol": protocol,
                "backed_off_after_s": backed_at - stalled_at,
                "recovered_after_s": recovered_at - released_at,
                "rounds_to_recover": rounds_between(items, released_at, recovered_at),
                "looks": looks,
                "accepted_in_backoff": accepted_in_backoff,
                "sent_in_backoff": [
                    i
                    for i in since(datetime.fromtimestamp(backed_at, UTC), items)
                    if took_mail(i) and i["scheduledAt"] < _iso(released_at)
                ],
                "held_messages": held_messages,
                "stall": stall,
                "notices": [k for k, _ in await notices(pool, public_id)],
                "state": await alert_state(pool, public_id),
                "incidents": r.json()["items"],
                "delivery": await delivery(api, org, public_id),
                "probes_left": len(host.store.probes()),
            }
    finally:
        await pool.execute("DELETE FROM monitors WHERE organization_id = $1", org.org_id)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_after_a_delivery_stall_the_round_trip_is_up_again_notified_once(
    virtual_api: httpx.AsyncClient, virtual: Virtual
) -> None:
    """Mail to two mailboxes (one read over IMAP, one over POP3) stalls: the send server takes
    it, the mailbox gets none. Each monitor goes down, backs its sending off after three rounds
    not delivered (the owners told once), and then sends nothing: its rounds look in the mailbox
    and find nothing (`delivery_backoff`, missed, run by an agent). Released, the messages
    arrive: the next look finds them, the round after sends, and the monitor is up within two
    intervals and a login spacing, with one down and one recovery notice; the looks deleted the
    late messages."""
    outcomes = await asyncio.gather(
        stall_and_release(virtual_api, virtual, "imap"),
        stall_and_release(virtual_api, virtual, "pop3"),
    )
    for seen in outcomes:
        print(
            seen["protocol"],
            "backed off after",
            round(seen["backed_off_after_s"], 1),
            "s; recovered after",
            round(seen["recovered_after_s"], 1),
            "s of the release; accepted in the back-off:",
            seen["accepted_in_backoff"],
        )
        assert seen["notices"].count("down") == 1, seen["notices"]
        assert seen["notices"].count("recovered") == 1, seen["notices"]
        assert seen["notices"].count("delivery") == 1, seen["notices"]  # the back-off, told once
        assert set(seen["notices"]) == {"down", "delivery", "recovered"}, seen["notices"]
        assert seen["state"] == "up", seen
        assert seen["rounds_to_recover"] <= RECOVERY_ROUNDS, seen
        (incident,) = seen["incidents"]
        assert incident["state"] == "closed" and incident["endReason"] is None, incident
        assert incident["causeKind"] == "not_delivered", incident
        assert sorted(incident["countries"]) == sorted([FIRST, SECOND]), incident
        # The bound: at most one message (or one round) an hour once backed off. Inside an
        # hour of the stalled messages none goes; a round taken just before the back-off may
        # still send its later country's message.
        assert seen["sent_in_backoff"] == [], seen["sent_in_backoff"]
        assert seen["accepted_in_backoff"] <= 1, seen
        assert {i["country"] for i in seen["looks"]} == {FIRST, SECOND}
        assert all(i["status"] == "missed" and i["agentId"] for i in seen["looks"]), seen["looks"]
        assert all(not took_mail(i) for i in seen["looks"])
        # After the release: a look found the late messages (`up`, nothing sent), then rounds
        # sent again.
        found = [
            i
            for i in seen["stall"]
            if i["status"] == "up" and "arrived late" in i["message"] and not took_mail(i)
        ]
        assert found, [(i["status"], i["errorKind"], i["message"]) for i in seen["stall"]]
        d = seen["delivery"]
        assert (d["state"], d["notDeliveredRounds"], d["allowedPerHour"]) == ("confirmed", 0, None)
        assert seen["held_messages"] >= 6, seen
        assert seen["probes_left"] <= 2, ("late messages deleted by the looks", seen)
