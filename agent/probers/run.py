"""Run one check job end to end and always return a CheckResult (never raises)."""

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import datetime

import structlog

from agent.probers import PROBERS
from agent.probers.base import GOODBYE_PHASES, ProbeFailure, Recorder, Target
from agent.probers.redact import job_secrets, publishable
from agent.probers.tls import SslContexts, describe_ssl_error
from shared.messages import CheckJob, CheckResult, ErrorKind, default_port
from shared.timefmt import iso_ms, parse_iso, utcnow

log = structlog.get_logger(__name__)

TLS_PHASES = ("tls", "tls handshake or greeting")
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


async def run_check(
    job: CheckJob, agent_id: str, allow_private: bool, ssl_contexts: SslContexts
) -> CheckResult:
    started = utcnow()
    t0 = time.perf_counter()
    rec = Recorder()
    kind: ErrorKind | None = None
    message = "ok"
    try:
        if parse_iso(job.expires_at) <= started:
            raise ProbeFailure("expired", f"job expired at {job.expires_at}; not run")
        rec.deadline = asyncio.get_running_loop().time() + job.timeout_seconds
        async with asyncio.timeout_at(rec.deadline) as deadline:
            try:
                await _check(job, allow_private, ssl_contexts, rec)
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
    return build_result(job, agent_id, kind, message, started, rec, response_ms)


def build_result(
    job: CheckJob,
    agent_id: str,
    kind: ErrorKind | None,
    message: str,
    started: datetime,
    rec: Recorder | None = None,
    response_ms: float | None = None,
) -> CheckResult:
    """The result of `job`; the only place texts from servers and exceptions enter one, so the
    only place they are made publishable (valid UTF-8, no secret)."""
    rec = rec or Recorder()
    secrets = job_secrets(job)
    return CheckResult(
        job_id=job.job_id,
        monitor_id=job.monitor_id,
        monitor_type=job.monitor_type,
        country=job.country,
        agent_id=agent_id,
        scheduled_at=job.scheduled_at,
        started_at=iso_ms(started),
        finished_at=iso_ms(utcnow()),
        status="up" if kind is None else "down",
        error_kind=kind,
        message=publishable(message, secrets),
        banner=None if rec.banner is None else publishable(rec.banner, secrets),
        response_time_ms=response_ms,
        phases=rec.to_phases(),
        tls=rec.tls,
        address=rec.address,
    )


async def _check(job: CheckJob, allow_private: bool, contexts: SslContexts, rec: Recorder) -> None:
    port = job.port or default_port(job.monitor_type, job.config)
    with rec.phase("dns"):
        addresses = await resolve(job.hostname, port)
    if not allow_private and any(is_blocked(address) for address in addresses):
        # The address stays out of the message: echoed, it would let anyone who can create a
        # monitor read the agent's internal DNS one name at a time.
        raise ProbeFailure(
            "blocked_target",
            f"{job.hostname} resolves to a private, loopback, link-local or reserved address; "
            "agents refuse those unless AGENT_ALLOW_PRIVATE_TARGETS is set",
        )
    target = Target(
        hostname=job.hostname,
        addresses=addresses,
        port=port,
        ssl_context=contexts.for_options(job.config.tls_options),
        server_name=job.config.tls_options.servername or job.hostname,
    )
    await PROBERS[job.monitor_type](target, job, rec)


async def resolve(hostname: str, port: int) -> tuple[str, ...]:
    """The name's addresses in resolver order, without duplicates. Raises socket.gaierror."""
    name = hostname.rstrip(".").lower()
    if name == "invalid" or name.endswith(".invalid"):
        # RFC 6761 section 6.4: never resolves, so do not ask a DNS server.
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    infos = await asyncio.get_running_loop().getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def is_blocked(address: str) -> bool:
    """True for anything but a globally routable unicast address, judged also by the IPv4
    address an IPv6 one carries: a packet to it ends up there."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _not_public(ip)
    # IPv4-mapped and NAT64 (RFC 6052 forbids its well-known prefix for non-global IPv4) are
    # that IPv4 address, nothing else: judged as it, so DNS64 agents still reach public ones.
    translated = ip.ipv4_mapped or (_nat64_ipv4(ip) if ip in NAT64_WELL_KNOWN else None)
    if translated is not None:
        return _not_public(translated)
    # 6to4 and Teredo: relays deliver to the IPv4 address inside, so it must be public too.
    tunnelled = [ip.sixtofour, *(ip.teredo or ())]
    return _not_public(ip) or any(v4 is not None and _not_public(v4) for v4 in tunnelled)


def _nat64_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        # fec0::/10, deprecated (RFC 3879) but still routed inside some networks
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _classify(exc: Exception, job: CheckJob, rec: Recorder) -> tuple[ErrorKind, str]:
    """Map an exception a library raised to an errorKind and a message for a person."""
    for err in _chain(exc):
        if isinstance(err, ssl.SSLError):
            return "tls", describe_ssl_error(err)
        if isinstance(err, socket.gaierror):
            return "dns", f"cannot resolve {job.hostname}: {err.strerror or err}"
        if isinstance(err, ConnectionRefusedError):
            return "refused", f"connection refused by {job.hostname} port {job.port or 'default'}"
    if isinstance(exc, OSError | EOFError):
        if rec.current == "connect":
            return "refused", f"cannot connect to {job.hostname}: {exc}"
        if rec.current in TLS_PHASES:
            return "tls", f"connection lost during the TLS handshake: {exc}"
        return "protocol", f"connection lost during {rec.current}: {exc}"
    return "internal", f"unexpected {type(exc).__name__} during {rec.current}: {exc}"
