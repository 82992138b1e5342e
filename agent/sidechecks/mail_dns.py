"""The mail DNS of a monitored domain, resolved from the agent's country: MX, SPF, DMARC,
MTA-STS (its TXT and its HTTPS policy), TLS-RPT and the TLSA records of the monitored service.

When `_dmarc.<domain>` holds no one DMARC record, the DMARC Tree Walk (RFC 9989 4.10) goes on
above it (`dmarcWalk`), so the controller judges from the record that applies.

The agent only gathers what is served (`shared.sidechecks.mail_dns.MailDns`); the controller
judges it (controller/sidechecks/mail_dns), so a rule changes without an agent upgrade. What it
sends is bounded (`shared.sidechecks.mail_dns_bound`: 16 KiB at most, cut parts named in
`truncated`). Lookups run at
once within one budget; a lookup that fails leaves its list null and says why in `errors`, so a
resolver outage never reads as a missing record. The resolver's canaries (agent.dns_canary) are
asked beside them, so a resolver that lies (NXDOMAIN for everything) is told from a domain that
publishes nothing.

TLSA records count only with the AD bit from the resolver the agent asks (set it with
`AGENT_DNS_RESOLVER` to a validating resolver on a path the agent trusts, e.g. on localhost):
the agent does not validate DNSSEC itself.
"""

import asyncio
import ssl
from collections.abc import Awaitable
from functools import partial
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.rdtypes.ANY.TLSA
import dns.resolver

from agent.dns_errors import why
from agent.dns_resolver import CanaryResolver
from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks.base import AgentSideCheck, Round, Runner
from agent.tenant_bound import BOUND_BUSY, TenantBound
from shared.addresses import is_blocked
from shared.clock import Clock
from shared.dns_canary import Canary, parse_dns_canaries
from shared.sidechecks import dmarc_record, dmarc_tree, spf_syntax
from shared.sidechecks.mail_dns import WIRE, MailDns, MailDnsAsk
from shared.sidechecks.mail_dns_bound import bounded
from shared.sidechecks.readiness import DmarcLookup
from shared.tls import system_trust

POLICY_BYTES_MAX: Final = 64 * 1024  # RFC 8461 section 3.3 lets a sender stop reading here
BUDGET_MAX_S: Final = 10.0
POLICY_PATH: Final = "/.well-known/mta-sts.txt"
# list name → (record name prefix, TXT version tag): only TXT records of that kind are kept.
TXT_LOOKUPS: Final = {
    "mta_sts": ("_mta-sts.", "v=STSv1"),
    "tls_rpt": ("_smtp._tls.", "v=TLSRPTv1"),
}
_WIRE = {"mta_sts": "mtaSts", "tls_rpt": "tlsRpt"}
# Special-use and customary internal names (RFC 6761, 6762, 8375, 2606 and common practice):
# answered by the agent's own network, never the public DNS, so not looked up unless private
# targets are allowed. Their records (MX names, TXT texts) would reach the monitor's owner.
INTERNAL_SUFFIXES: Final = (
    "localhost",
    "local",
    "internal",
    "intranet",
    "lan",
    "corp",
    "home",
    "private",
    "home.arpa",
    "in-addr.arpa",
    "ip6.arpa",
    "invalid",
    "test",
    "example",
    "onion",
)


class MailDnsProbe:
    """`resolver`: `host` or `host:port` of the DNS resolver to ask (None: the system's);
    `policy_context`: verifies the MTA-STS policy host (the system's CAs, plus a test CA);
    `policy_port`: where that host is reached (443 but in tests)."""

    def __init__(
        self,
        *,
        resolver: str | None = None,
        policy_context: ssl.SSLContext | None = None,
        policy_port: int = 443,
        allow_private: bool = False,
        bound: TenantBound | None = None,
        canaries: tuple[Canary, ...] | None = None,
    ) -> None:
        self._bound = bound
        self._dns = CanaryResolver(resolver, canaries)
        self._context = policy_context or system_trust()
        self._policy_port = policy_port
        self._allow_private = allow_private

    async def probe(
        self, domain: str, hostname: str, port: int, budget_s: float, tenant: str = ""
    ) -> MailDns:
        """What `domain` publishes, and the TLSA records of `hostname`:`port`, all within
        `budget_s` (at most BUDGET_MAX_S), within the size bound; the wait for one of
        `tenant`'s probes (`bound`) counts in the budget."""
        if self._bound is None:
            return bounded(await self._probe(domain, hostname, port, budget_s))
        held = False
        try:
            async with self._bound.slot_within(tenant, min(budget_s, BUDGET_MAX_S)) as left:
                held = True
                return bounded(await self._probe(domain, hostname, port, left))
        except TimeoutError:
            if held:
                raise
            return MailDns(domain=domain, errors={"resolver": BOUND_BUSY})

    async def _probe(self, domain: str, hostname: str, port: int, budget_s: float) -> MailDns:
        out = MailDns(domain=domain)
        budget = min(budget_s, BUDGET_MAX_S)
        deadline = asyncio.get_running_loop().time() + budget
        if not self._allow_private and any(
            f".{name}".endswith(f".{suffix}")
            for name in (domain, hostname)
            for suffix in INTERNAL_SUFFIXES
        ):
            out.errors["resolver"] = (
                "an internal or special-use name: not looked up unless "
                "AGENT_ALLOW_PRIVATE_TARGETS is set"
            )
            return out
        try:
            resolver = self._dns.resolver()
        except dns.exception.DNSException as exc:
            out.errors["resolver"] = f"no resolver: {exc}"
            return out
        canaries = asyncio.create_task(self._dns.canaries.answers(resolver, budget))
        lookups: dict[str, Awaitable[list[str]]] = {
            "mx": self._mx(resolver, domain, budget),
            "tlsa": self._tlsa(resolver, out, f"_{port}._tcp.{hostname}", budget),
        }
        for name, (prefix, tag) in TXT_LOOKUPS.items():
            lookups[name] = self._txt(resolver, prefix + domain, tag, budget)
        lookups["spf"] = self._spf(resolver, domain, budget)
        lookups["dmarc"] = self._dmarc(resolver, f"_dmarc.{domain}", budget)
        found = await asyncio.gather(*lookups.values(), return_exceptions=True)
        for name, value in zip(lookups, found, strict=True):
            if isinstance(value, BaseException):
                if not isinstance(value, dns.exception.DNSException | OSError):
                    raise value
                out.errors[_WIRE.get(name, name)] = _why(value)
            else:
                setattr(out, name, value)
        if (
            out.dmarc is not None
            and dmarc_tree.single(DmarcLookup(name=domain, records=out.dmarc)) is None
        ):
            out.dmarc_walk = await self._walk(resolver, domain, deadline)
        out.canaries = await canaries
        if out.mta_sts:
            try:
                async with asyncio.timeout_at(deadline):
                    out.mta_sts_policy = await self._policy(resolver, domain, budget)
            except (OSError, ssl.SSLError, TimeoutError, ValueError) as exc:
                out.errors["mtaStsPolicy"] = _why(exc)
            except dns.exception.DNSException as exc:
                out.errors["mtaStsPolicy"] = f"mta-sts.{domain}: {_why(exc)}"
        return out

    async def _walk(
        self, resolver: dns.asyncresolver.Resolver, domain: str, deadline: float
    ) -> list[DmarcLookup]:
        """The DMARC Tree Walk above `domain`, whose own `_dmarc` holds no one record (RFC
        9989 4.10), each lookup within what is left of the budget."""

        async def lookup(name: str) -> DmarcLookup:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return DmarcLookup(name=name, error="the budget ran out")
            try:
                texts = await self._dmarc(resolver, f"_dmarc.{name}", left)
            except (dns.exception.DNSException, OSError) as exc:
                return DmarcLookup(name=name, error=_why(exc))
            return DmarcLookup(name=name, records=texts)

        return await dmarc_tree.walk(domain, lookup, above=True)

    async def _dmarc(
        self, resolver: dns.asyncresolver.Resolver, name: str, budget: float
    ) -> list[str]:
        """The DMARC records at `name` (`dmarc_record.is_record`: as readiness reads them)."""
        texts = await self._texts(resolver, name, budget)
        return sorted(t for t in texts if dmarc_record.is_record(t))

    async def _spf(
        self, resolver: dns.asyncresolver.Resolver, name: str, budget: float
    ) -> list[str]:
        """The SPF records at `name` (`spf_syntax.records`: as readiness reads them)."""
        return sorted(spf_syntax.records(await self._texts(resolver, name, budget)))

    async def _texts(
        self, resolver: dns.asyncresolver.Resolver, name: str, budget: float
    ) -> list[str]:
        answer = await self._answer(resolver, name, "TXT", budget)
        if answer is None or answer.rrset is None:
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset]

    async def _answer(
        self, resolver: dns.asyncresolver.Resolver, name: str, rdtype: str, budget: float
    ) -> dns.resolver.Answer | None:
        """The answer, or None for a name that does not exist."""
        try:
            return await resolver.resolve(
                name, rdtype, raise_on_no_answer=False, lifetime=budget, search=False
            )
        except dns.resolver.NXDOMAIN:
            return None

    async def _mx(
        self, resolver: dns.asyncresolver.Resolver, domain: str, budget: float
    ) -> list[str]:
        answer = await self._answer(resolver, domain, "MX", budget)
        if answer is None or answer.rrset is None:
            return []
        ordered = sorted(answer.rrset, key=lambda r: (r.preference, r.exchange.to_text()))
        names = [r.exchange.to_text(omit_final_dot=True).lower() for r in ordered]
        return list(dict.fromkeys(names))  # bounded (and flagged) by `bounded`

    async def _txt(
        self, resolver: dns.asyncresolver.Resolver, name: str, tag: str, budget: float
    ) -> list[str]:
        answer = await self._answer(resolver, name, "TXT", budget)
        if answer is None or answer.rrset is None:
            return []
        texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset]
        # A record of the kind starts with its tag, then a separator or nothing (`v=spf1`
        # must not pick up `v=spf10`).
        kept = [
            t
            for t in sorted(texts)
            if t.lower().startswith(tag.lower()) and t[len(tag) : len(tag) + 1] in ("", " ", ";")
        ]
        return kept

    async def _tlsa(
        self, resolver: dns.asyncresolver.Resolver, out: MailDns, name: str, budget: float
    ) -> list[str]:
        answer = await self._answer(resolver, name, "TLSA", budget)
        if answer is None or answer.rrset is None:
            return []
        out.tlsa_dnssec = bool(answer.response.flags & dns.flags.AD)
        records = [r for r in answer.rrset if isinstance(r, dns.rdtypes.ANY.TLSA.TLSA)]
        texts = [f"{r.usage} {r.selector} {r.mtype} {r.cert.hex()}" for r in records]
        return sorted(texts)

    async def _policy(
        self, resolver: dns.asyncresolver.Resolver, domain: str, budget: float
    ) -> str:
        """The policy text from `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461
        section 3.3: HTTPS with a valid certificate, no redirects, status 200); ValueError
        saying why it is not one."""
        host = f"mta-sts.{domain}"
        addresses: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = await self._answer(resolver, host, rdtype, budget)
            if answer is not None and answer.rrset is not None:
                addresses += [r.to_text() for r in answer.rrset]
        if not addresses:
            raise ValueError(f"{host} has no address")
        if not self._allow_private and any(is_blocked(a) for a in addresses):
            raise ValueError(f"{host} resolves to a private or reserved address; not fetched")
        reader, writer = await asyncio.open_connection(
            addresses[0], self._policy_port, ssl=self._context, server_hostname=host
        )
        try:
            request = f"GET {POLICY_PATH} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode("ascii"))
            data = await reader.read(POLICY_BYTES_MAX + 8192)
            while (more := await reader.read(8192)) and len(data) <= POLICY_BYTES_MAX + 8192:
                data += more
        finally:
            # Done reading: no TLS goodbye to wait for (a host that never answers one would
            # hold the probe until its budget ran out, and lose the policy read).
            writer.transport.abort()
        head, sep, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()
        if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/"):
            raise ValueError(f"{host} did not answer HTTP")
        if status[1] != b"200":
            raise ValueError(f"{host} answered HTTP {status[1].decode('ascii', 'replace')[:3]}")
        return body[:POLICY_BYTES_MAX].decode("utf-8", "replace")


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not valid: {exc.verify_message}"
    return why(exc)


async def _run(probe: MailDnsProbe, ask: MailDnsAsk, at: Round) -> MailDns | None:
    """The mail domain's DNS, and the TLSA records of the checked host and port: not for a host
    the agent refused (its TLSA records are the agent's network's)."""
    if at.result.error_kind == "blocked_target":
        return None
    return await probe.probe(
        ask.domain, at.job.hostname, at.port, at.job.timeout_seconds, at.job.tenant
    )


def runner(probe: MailDnsProbe) -> Runner[MailDnsAsk, MailDns]:
    return partial(_run, probe)


def build(
    settings: SideCheckSettings, targets: TargetSettings, clock: Clock
) -> Runner[MailDnsAsk, MailDns]:
    context = system_trust()
    if settings.agent_mta_sts_ca_file is not None:
        context = ssl.create_default_context()
        context.load_verify_locations(settings.agent_mta_sts_ca_file)
    return runner(
        MailDnsProbe(
            resolver=settings.agent_dns_resolver,
            policy_context=context,
            policy_port=settings.agent_mta_sts_port,
            allow_private=targets.agent_allow_private_targets,
            bound=TenantBound(settings.agent_dns_probes_per_tenant),
            canaries=parse_dns_canaries(settings.agent_dns_canaries),
        )
    )


SIDE_CHECK: Final = AgentSideCheck(WIRE, build)
