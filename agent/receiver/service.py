"""The receiver as the agent runs it (agent.__main__): its address book watched from the
`RECEIVERS` bucket, its arrivals published to ARRIVALS, until the agent stops."""

import asyncio
import contextlib
import socket

import structlog
from nats.aio.client import Client as NATS

from agent.dns_resolver import blocking_resolver
from agent.receiver.book import AddressBook, watch
from agent.receiver.server import Receiver
from agent.receiver.verdicts import Lookup
from agent.settings import ReceiverSettings, SideCheckSettings
from shared.arrivals import Arrival, encode
from shared.clock import Clock
from shared.subjects import arrivals_subject

log = structlog.get_logger(__name__)
PUBLISH_TIMEOUT_S = 5.0


def build(
    nc: NATS,
    group: ReceiverSettings,
    side_checks: SideCheckSettings,
    *,
    country: str,
    agent_id: str,
    clock: Clock,
) -> Receiver | None:
    """The receiver of its settings `group`, asking DNS through the side checks' resolver
    (`AGENT_DNS_RESOLVER`); None when it is off (no AGENT_RECEIVER_DOMAIN)."""
    if group.agent_receiver_domain is None:
        return None
    js = nc.jetstream()

    async def publish(arrival: Arrival) -> None:
        await js.publish(
            arrivals_subject(country, arrival.monitor_id),
            encode(arrival),
            timeout=PUBLISH_TIMEOUT_S,
            headers={"Nats-Msg-Id": arrival.arrival_id},
        )

    return Receiver(
        group,
        country=country,
        agent_id=agent_id,
        book=AddressBook(),
        publish=publish,
        lookup=Lookup(blocking_resolver(side_checks.agent_dns_resolver)),
        clock=clock,
        hostname=group.agent_receiver_hostname or socket.getfqdn(),
    )


async def run(nc: NATS, receiver: Receiver, stop: asyncio.Event) -> None:
    """Watch the book and take mail until `stop`."""
    watching = asyncio.create_task(watch(nc.jetstream(), receiver.book, stop))
    try:
        try:
            await receiver.start()
        except OSError as exc:  # the port taken or not ours: the checks go on without it
            log.error("receiver_not_listening", error=str(exc)[:200])
            return
        await stop.wait()
    finally:
        await receiver.stop()
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        log.info("receiver_stopped", taken=receiver.counts.taken)
