"""Run one check job end to end and always return a CheckResult (never raises)."""

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import msgspec
import structlog
from aiosmtplib import SMTPConnectError

from agent.probers import PROBERS
from agent.probers.base import (
    GOODBYE_MARGIN_S,
    GOODBYE_PHASES,
    Allowance,
    ProbeFailure,
    Recorder,
    Target,
)
from agent.probers.redact import job_secrets, publishable
from agent.probers.tls import SslContexts, describe_ssl_error
from agent.resolver import TargetResolver
from agent.settings import DNS_LOOKUPS_PER_TENANT_DEFAULT
from shared.addresses import is_blocked as is_blocked
from shared.clock import Clock, ManualClock
from shared.mailclient.errors import MailClientError, NoAnswer
from shared.messages import (
    CheckJob,
    CheckResult,
    ErrorKind,
    RoundTripConfig,
    SmtpConfig,
    TlsOptions,
    default_port,
)
from shared.secret import NO_SECRET
from shared.sidechecks.relay import WIRE as RELAY
from shared.sidechecks.relay import RelayTest
from shared.timefmt import iso_ms, parse_iso

log = structlog.get_logger(__name__)

TLS_PHASES = ("tls", "tls handshake or greeting")
# Characters of a result's message: what a server said in it is cut there, after masking.
MESSAGE_MAX = 2048
_default_resolver: TargetResolver | None = None


def default_resolver() -> TargetResolver:
    """The resolver of run_check callers that bring none (the worker brings its own)."""
    global _default_resolver
    if _default_resolver is None:
        _default_resolver = TargetResolver(per_tenant=DNS_LOOKUPS_PER_TENANT_DEFAULT)
    return _default_resolver


async def run_check(
    job: CheckJob,
    agent_id: str,
    allow_private: bool,
    ssl_contexts: SslContexts,
    resolver: TargetResolver | None = None,
    *,
    clock: Clock,
) -> CheckResult:
    """`clock`: the instant the job's expiry is judged at, the result's times, a certificate's
    days left."""
    started = clock.now()
    t0 = time.perf_counter()
    rec = Recorder(
        clock=clock, api_calls=Allowance(job.api_calls), api_units=Allowance(job.api_units)
    )
    kind: ErrorKind | None = None
    message = "ok"
    try:
        if parse_iso(job.expires_at) <= started:
            raise ProbeFailure("expired", f"job expired at {job.expires_at}; not run")
        rec.deadline = asyncio.get_running_loop().time() + job.timeout_seconds
        async with asyncio.timeout_at(rec.deadline) as deadline:
            try:
                await _check(job, allow_private, ssl_contexts, rec, resolver or default_resolver())
            except TimeoutError:
                if deadline.expired():
                    raise
                # an OS-level timeout (e.g. ETIMEDOUT while connecting), not our deadline
                raise ProbeFailure("timeout", f"timed out during {rec.current}") from None
    except ProbeFailure as failure:
        kind, message = failure.kind, failure.message
    except TimeoutError:
        # The deadline can still win the race with goodbye's own shorter budget on a loaded
        # loop; the check's answer was complete by then, so it stands.
        if rec.current not in GOODBYE_PHASES:
            kind = "timeout"
            message = f"no answer within {job.timeout_seconds:g}s (during {rec.current})"
    except Exception as exc:
        kind, message = _classify(exc, job, rec)
        if kind == "internal":
            log.exception("probe_internal_error", job_id=job.job_id, phase=rec.current)
    response_ms = round((time.perf_counter() - t0) * 1000, 3)
    if kind is None and rec.note is not None:
        message = rec.note
    finished = clock.now()
    return build_result(job, agent_id, kind, message, started, rec, response_ms, finished)


def build_result(
    job: CheckJob,
    agent_id: str,
    kind: ErrorKind | None,
    message: str,
    started: datetime,
    rec: Recorder | None = None,
    response_ms: float | None = None,
    finished: datetime | None = None,
) -> CheckResult:
    """The result of `job`, `finished` when it ran (else at `started`: nothing ran); the only
    place texts from servers and exceptions enter one, so the only place they are made
    publishable (valid UTF-8, no secret)."""
    # Nothing ran without a recorder: its readings would be the instant it was judged.
    rec = rec or Recorder(clock=ManualClock(started))
    secrets = job_secrets(job)

    def advertised(capabilities: list[str] | None) -> list[str] | None:
        if capabilities is None:
            return None
        if not secrets and "".join(capabilities).isascii():  # publishable as they are
            return list(capabilities)
        return [publishable(c, secrets) for c in capabilities]

    return CheckResult(
        job_id=job.job_id,
        monitor_id=job.monitor_id,
        monitor_type=job.monitor_type,
        country=job.country,
        agent_id=agent_id,
        scheduled_at=job.scheduled_at,
        started_at=iso_ms(started),
        finished_at=iso_ms(started if finished is None else finished),
        status="up" if kind is None else "inconclusive" if kind == "inconclusive" else "down",
        error_kind=kind,
        message=publishable(message, secrets)[:MESSAGE_MAX],
        banner=None if rec.banner is None else publishable(rec.banner, secrets),
        response_time_ms=response_ms,
        phases=rec.to_phases(),
        tls=rec.tls,
        address=rec.address,
        folder=rec.folder,
        hops=rec.hops,
        auth_results=rec.auth_results,
        arc=rec.arc,
        capabilities=advertised(rec.capabilities),
        capabilities_before_tls=advertised(rec.capabilities_before_tls),
        side_checks={} if rec.relay is None else {RELAY.name: _relay(rec.relay, secrets)},
        logins=rec.logins,
    )


def _relay(test: RelayTest, secrets: tuple[str, ...]) -> RelayTest:
    def said(text: str | None) -> str | None:
        return None if text is None else publishable(text, secrets)

    return msgspec.structs.replace(
        test,
        mail_from=said(test.mail_from),
        rcpt_to=said(test.rcpt_to),
        error=publishable(test.error, secrets),
    )


@dataclass(frozen=True, slots=True)
class _Admission:
    """Which targets a job may reach, and with which TLS context: the job's own and any other
    server it names (a round trip's mailbox), under the same rules. An object rather than two
    closures that name each other: those would make a reference cycle per check, left to the
    cyclic garbage collector."""

    job: CheckJob
    allow_private: bool
    contexts: SslContexts
    resolver: TargetResolver

    def admit(
        self, hostname: str, addresses: tuple[str, ...], port: int, tls: TlsOptions
    ) -> Target:
        if not self.allow_private and any(is_blocked(address) for address in addresses):
            # The address stays out of the message: echoed, it would let anyone who can create
            # a monitor read the agent's internal DNS one name at a time.
            raise ProbeFailure(
                "blocked_target",
                f"{hostname} resolves to a private, loopback, link-local or reserved address; "
                "agents refuse those unless AGENT_ALLOW_PRIVATE_TARGETS is set",
            )
        context, server_name = self.contexts.for_options(tls), tls.servername or hostname
        return Target(hostname, addresses, port, context, server_name, self.reach)

    async def reach(self, hostname: str, port: int, tls: TlsOptions) -> Target:
        """Every lookup of the job (a round trip's mailbox too) counts against its tenant's
        bound."""
        addresses = await self.resolver.resolve(hostname, self.job.tenant)
        return self.admit(hostname, addresses, port, tls)


async def reach(
    job: CheckJob,
    hostname: str,
    port: int,
    tls: TlsOptions,
    *,
    allow_private: bool,
    contexts: SslContexts,
    resolver: TargetResolver | None,
) -> Target:
    """The Target of another server a job's side check reads (a heartbeat's mailbox), under
    the check's rules: its tenant's DNS bound, the private-address policy, the TLS contexts."""
    admission = _Admission(job, allow_private, contexts, resolver or default_resolver())
    return await admission.reach(hostname, port, tls)


async def _check(
    job: CheckJob,
    allow_private: bool,
    contexts: SslContexts,
    rec: Recorder,
    resolver: TargetResolver,
) -> None:
    port = job.port or default_port(job.monitor_type, job.config)
    send = job.config.send if isinstance(job.config, RoundTripConfig) else job.config
    admission = _Admission(job, allow_private, contexts, resolver)
    with rec.phase("dns"):
        addresses = await resolver.resolve(job.hostname, job.tenant)
    target = admission.admit(job.hostname, addresses, port, send.tls_options)
    try:
        await PROBERS[job.monitor_type](target, job, rec)
    except Exception as exc:
        if rec.tls is None and (context := _second_context(exc, rec, contexts)) is not None:
            await _second_look(job, target, context, contexts, rec, exc)
        raise


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: the chain verified, only the name did not match.
_HOSTNAME_MISMATCH = 62
# Handshake failures of a server that speaks only old TLS versions or weak ciphers.
_OUTDATED = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "NO_SHARED_CIPHER",
        "NO_CIPHERS_AVAILABLE",
        "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    }
)


def _second_context(exc: Exception, rec: Recorder, contexts: SslContexts) -> ssl.SSLContext | None:
    """The context for a second look after a failed handshake: without verification for a
    refused certificate; also with old TLS versions and weak ciphers when the server refused
    ours (with an alert, or by hanging up: asyncio reports a server's alert so, often)."""
    for err in _chain(exc):
        if isinstance(err, ssl.SSLCertVerificationError):
            return contexts.unverified
        if isinstance(err, ssl.SSLError):
            return contexts.legacy if err.reason in _OUTDATED else None
    if rec.current in TLS_PHASES and isinstance(exc, OSError | EOFError):
        return contexts.legacy
    return None


async def _second_look(
    job: CheckJob,
    target: Target,
    context: ssl.SSLContext,
    contexts: SslContexts,
    rec: Recorder,
    exc: Exception,
) -> None:
    """The handshake failed, so the result would not say what the server offers: connect once
    more with `context`, without credentials, only to read the TLS facts, within what is left of
    the deadline. At a server stuck with old TLS it verifies the chain first (not the name),
    and looks a third time without when that fails. It costs connections only on such a
    failure; the check stays failed. Not for a round trip: a second look there would submit
    another message."""
    if isinstance(job.config, RoundTripConfig):
        return
    budget = rec.deadline - asyncio.get_running_loop().time() - GOODBYE_MARGIN_S
    if budget <= 0:
        return
    until = asyncio.get_running_loop().time() + budget
    look = Recorder(clock=rec.clock, deadline=rec.deadline)
    tries = [context]
    if context is contexts.legacy:  # a trusted chain first, else none: a third look
        tries = [contexts.legacy_verified, context]
    for ctx in tries:
        again = Target(
            target.hostname, target.addresses, target.port, ctx, target.server_name, target.reach
        )
        with contextlib.suppress(Exception):
            async with asyncio.timeout_at(until):
                await PROBERS[job.monitor_type](again, _without_credentials(job), look)
        if look.tls is not None:
            break
    if look.tls is None:
        return
    rec.tls = look.tls
    refused = next((e for e in _chain(exc) if isinstance(e, ssl.SSLCertVerificationError)), None)
    if refused is not None:
        rec.tls.chain_verified = refused.verify_code == _HOSTNAME_MISMATCH
        if refused.verify_code == _HOSTNAME_MISMATCH:
            rec.tls.name_matched = False


def _without_credentials(job: CheckJob) -> CheckJob:
    if isinstance(job.config, SmtpConfig):
        # nor the relay test: a second look reads TLS facts only
        config = msgspec.structs.replace(job.config, auth=None, relay_check=False)
        return msgspec.structs.replace(job, config=config)
    return msgspec.structs.replace(
        job,
        config=msgspec.structs.replace(
            job.config, user="", password=NO_SECRET, mechanism="", access_token=NO_SECRET
        ),
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _classify(exc: Exception, job: CheckJob, rec: Recorder) -> tuple[ErrorKind, str]:
    """Map an exception a library raised to an errorKind and a message for a person; a
    connection's failure names the server dialled (and the name its certificate is checked
    against, when that is another and the failure came after connecting)."""
    where = rec.dialled or f"{job.hostname} port {job.port or 'default'}"
    if rec.name_checked is not None and rec.current != "connect":
        where += f", certificate name {rec.name_checked}"
    for err in _chain(exc):
        if isinstance(err, ssl.SSLError):
            return "tls", describe_ssl_error(err)
        if isinstance(err, socket.gaierror):
            return "dns", f"cannot resolve {job.hostname}: {err.strerror or err}"
        if isinstance(err, ConnectionRefusedError):
            return "refused", f"connection refused by {where}"
        if isinstance(err, NoAnswer):
            return "timeout", f"{err} (during {rec.current})"
        if isinstance(err, MailClientError):  # a server's answer the session cannot go on with
            return "protocol", f"{err} (during {rec.current})"
    if isinstance(exc, OSError | EOFError):
        why = _why(exc)
        if rec.current == "connect":
            return "refused", f"cannot connect to {where}: {why}"
        if rec.current in TLS_PHASES:
            return "tls", f"connection lost during the TLS handshake with {where}: {why}"
        return "protocol", f"connection lost during {rec.current} with {where}: {why}"
    return "internal", f"unexpected {type(exc).__name__} during {rec.current}: {exc}"


def _why(exc: BaseException) -> str:
    """What went wrong, in the words of whoever saw it: aiosmtplib's SMTPConnectError names
    the host and port it was handed (the certificate's name, and no port: the socket was
    connected here), so its cause's words are taken instead."""
    if isinstance(exc, SMTPConnectError) and exc.__cause__ is not None:
        return str(exc.__cause__) or type(exc.__cause__).__name__
    return str(exc) or type(exc).__name__
