"""An incident says it was notified only once a notice about it was delivered: `make run` with
no relay used to show `notified: true` for alerts that never left the outbox."""

import httpx

from controller.notify.outbox import OutboxWorker
from shared.clock import WALL
from tests.alerting.conftest import DOWN, Rig


async def _incident(api: httpx.AsyncClient, rig: Rig, public_id: object) -> dict[str, object]:
    r = await api.get(f"/api/smtp-monitors/{public_id}/incidents", headers=rig.tenant.auth())
    assert r.status_code == 200, r.text
    (incident,) = r.json()["items"]
    assert isinstance(incident, dict)
    return incident


async def test_queued_is_pending_and_not_notified_until_a_notice_is_delivered(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor()
    await rig.rounds(m, 0, [DOWN, DOWN])
    incident = await _incident(api, rig, m["public_id"])
    assert (incident["notified"], incident["delivery"]) == (False, "pending")

    # a controller without any channel configured sends nothing: still nobody told
    assert await OutboxWorker(rig.pool, {}, clock=WALL.now).burst() == 0
    incident = await _incident(api, rig, m["public_id"])
    assert (incident["notified"], incident["delivery"]) == (False, "pending")

    assert await rig.outbox().burst() == 2
    incident = await _incident(api, rig, m["public_id"])
    assert (incident["notified"], incident["delivery"]) == (True, "sent")


async def test_a_notice_refused_for_good_is_failed_and_not_notified(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    """A stored address the relay can never take (rows from before the API's rule) is refused
    for good: the incident says `failed`."""
    m = await rig.monitor(email="root, oncall@customer.test", phone=None)
    await rig.rounds(m, 0, [DOWN, DOWN])
    assert await rig.outbox().burst() == 0
    incident = await _incident(api, rig, m["public_id"])
    assert (incident["notified"], incident["delivery"]) == (False, "failed")


async def test_a_monitor_without_an_address_has_nobody_to_tell(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    m = await rig.monitor(email=None, phone=None)
    await rig.rounds(m, 0, [DOWN, DOWN])
    incident = await _incident(api, rig, m["public_id"])
    assert (incident["notified"], incident["delivery"]) == (False, "none")
