"""Heartbeat mail read from the mailbox a round's check reads (issue 83): for each heartbeat the
job asks for, the matching messages that arrived after its `since`, read with
agent.probers.heartbeat_box (IMAP, POP3, Microsoft Graph or Gmail, read-only) with the round's
own credentials, server and TLS options: an IMAP or POP3 monitor's mailbox, or a round trip's
mailbox leg. Each look is a session of its own, one after the other, within the job's timeout;
one that fails says why (`error_kind`, `error`) and the others still run. Nothing is read of a
round whose check did not log in (`auth`, `basic_auth_disabled`): the same credentials would
only be refused again."""

import asyncio
import ssl
from dataclasses import dataclass
from typing import Final

import msgspec

from agent.probers import gmail, graph
from agent.probers.base import Allowance, ProbeFailure, Recorder
from agent.probers.heartbeat_box import (
    Sought,
    gmail_arrivals,
    graph_arrivals,
    imap_arrivals,
    pop3_arrivals,
)
from agent.probers.redact import job_secrets, publishable
from agent.probers.run import reach
from agent.probers.tls import SslContexts, build_ssl_contexts
from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks.base import AgentSideCheck, Round, Runner
from shared.clock import Clock
from shared.mailclient.errors import MailClientError
from shared.messages import (
    ImapPopConfig,
    RoundTripConfig,
    RoundTripReceive,
    default_port,
)
from shared.sidechecks.heartbeat_mail import (
    FOLDERS_MAX,
    GMAIL_LOOK_UNITS,
    GRAPH_LOOK_CALLS,
    WIRE,
    HeartbeatMail,
    HeartbeatMailAsk,
    Look,
    Looked,
    bounded,
)
from shared.strangers import kept
from shared.timefmt import parse_iso

# The round's failures that say its credentials were refused: no look logs in again.
_REFUSED: Final = frozenset({"auth", "basic_auth_disabled"})


@dataclass(frozen=True, slots=True)
class _Mailbox:
    receive: RoundTripReceive
    port: int


def mailbox_of(at: Round) -> _Mailbox | None:
    """The mailbox the round's check reads: an IMAP or POP3 monitor's (the job's server), a
    round trip's mailbox leg; None for an SMTP round."""
    job, config = at.job, at.job.config
    if isinstance(config, RoundTripConfig):
        receive = config.receive
        if receive.api == graph.API_GRAPH:
            port = receive.port or graph.GRAPH_PORT
        elif receive.api == gmail.API_GMAIL:
            port = receive.port or gmail.GMAIL_PORT
        else:
            port = receive.port or default_port(receive.protocol, receive)
        host = receive.hostname or job.hostname
        folders = receive.folders[:FOLDERS_MAX]
        return _Mailbox(msgspec.structs.replace(receive, hostname=host, folders=folders), port)
    if isinstance(config, ImapPopConfig):
        fields = {f: getattr(config, f) for f in config.__struct_fields__}
        receive = RoundTripReceive(**fields, hostname=job.hostname, port=at.port)
        return _Mailbox(receive, at.port)
    return None


def build(
    settings: SideCheckSettings, targets: TargetSettings, clock: Clock
) -> Runner[HeartbeatMailAsk, HeartbeatMail]:
    system = build_ssl_contexts()
    allow_private = targets.agent_allow_private_targets

    async def run(ask: HeartbeatMailAsk, at: Round) -> HeartbeatMail | None:
        if not ask.looks or (box := mailbox_of(at)) is None:
            return None
        if at.result.error_kind in _REFUSED:
            why = "the round's login was refused: the mailbox was not read"
            return HeartbeatMail(
                looks=[
                    Looked(monitor_id=look.monitor_id, error_kind="auth", error=why)
                    for look in ask.looks
                ]
            )
        contexts = at.contexts or system
        # All the looks within the job's timeout, one after the other: a look past it says so.
        until = asyncio.get_running_loop().time() + at.job.timeout_seconds
        secrets = job_secrets(at.job)
        looked = [
            _published(await _look(look, box, at, contexts, allow_private, until, clock), secrets)
            for look in ask.looks
        ]
        return bounded(HeartbeatMail(looks=looked))

    return run


def _published(looked: Looked, secrets: tuple[str, ...]) -> Looked:
    """A look's error as a result may carry it: never a secret the job holds."""
    if not looked.error:
        return looked
    return msgspec.structs.replace(looked, error=publishable(looked.error, secrets))


async def _look(
    look: Look,
    box: _Mailbox,
    at: Round,
    contexts: SslContexts,
    allow_private: bool,
    until: float,
    clock: Clock,
) -> Looked:
    job, receive = at.job, box.receive
    try:
        since = parse_iso(look.since)
    except ValueError:
        return Looked(monitor_id=look.monitor_id, error_kind="protocol", error="no `since`")
    sought = Sought(
        monitor_id=look.monitor_id,
        country=job.country,
        agent_id=at.result.agent_id,
        sender=look.sender,
        subject=look.subject,
        since=since,
    )
    rec = Recorder(
        clock=clock,
        api_calls=Allowance(
            None if job.api_calls is None else min(job.api_calls, GRAPH_LOOK_CALLS)
        ),
        api_units=Allowance(
            None if job.api_units is None else min(job.api_units, GMAIL_LOOK_UNITS)
        ),
    )
    try:
        async with asyncio.timeout_at(until):
            rec.deadline = until
            target = await reach(
                job,
                receive.hostname,
                box.port,
                receive.tls_options,
                allow_private=allow_private,
                contexts=contexts,
                resolver=at.resolver,
            )
            if receive.api == graph.API_GRAPH:
                found = await graph_arrivals(target, receive, sought, rec)
            elif receive.api == gmail.API_GMAIL:
                found = await gmail_arrivals(target, receive, sought, rec)
            elif receive.protocol == "pop3":
                found = await pop3_arrivals(target, receive, sought, rec)
            else:
                found = await imap_arrivals(target, receive, sought, rec)
    except ProbeFailure as failure:
        return Looked(monitor_id=look.monitor_id, error_kind=failure.kind, error=failure.message)
    except TimeoutError:
        why = f"no answer within {job.timeout_seconds:g}s (during {rec.current})"
        return Looked(monitor_id=look.monitor_id, error_kind="timeout", error=why)
    except ssl.SSLError as exc:
        return Looked(monitor_id=look.monitor_id, error_kind="tls", error=kept(str(exc), 300))
    except (OSError, MailClientError) as exc:
        why = kept(f"{type(exc).__name__}: {exc}", 300)
        return Looked(monitor_id=look.monitor_id, error_kind="refused", error=why)
    return Looked(monitor_id=look.monitor_id, arrivals=found)


SIDE_CHECK: Final = AgentSideCheck(WIRE, build)
