"""Mail-authentication readiness (issue 67): a mail domain's SPF include tree and its DNS lookup
count, its DMARC Tree Walk and report authorizations, its DKIM keys, and its MX names, as the
agent's resolver answers from its country.

The agent gathers and counts; the controller judges (controller/sidechecks/readiness). SPF terms
are parsed by pyspf (the reference implementation's `validate_mechanism`: syntax, CIDR lengths,
macro expansion; every term of a record, before it is evaluated, as RFC 7208 4.6 says);
tag-value records (DMARC, DKIM) by dkimpy's `parse_tag_value`; key sizes by
cryptography. The counting follows RFC 7208 section 4.6.4 for a sender that no term matches,
the worst case a receiver evaluates: `include`, `a`, `mx`, `ptr`, `exists` and `redirect` each
count one; `ip4`, `ip6`, `all` and `exp` none; terms after `all` are never evaluated, and
`redirect` is ignored beside `all`. A term whose target depends on the sender (macros other than
`%{d}`, and every `ptr`) is counted but not looked up.

Every round is bounded: at most QUERIES_MAX queries and SPF_RECORDS_MAX records, within the
job's timeout (at most BUDGET_MAX_S), TXT answers of at most TXT_MAX bytes; at most
PER_TENANT_MAX rounds of one organization at once (others wait within their own budget); a
round the controller held (its organization's hourly budget is spent: `ReadinessAsk.held`)
asks nothing and returns why. What
could not be read is the facts' `error`, never an exception: a walk cut short says why, and the
controller judges nothing it could not know.
"""

import asyncio
import base64
import contextlib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.message
import dns.rdatatype
import dns.resolver
import idna
import msgspec
import spf
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dns.rdtypes.ANY.MX import MX

from agent.dns_errors import why
from agent.dns_resolver import CanaryResolver
from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks.base import AgentSideCheck, Round, Runner
from agent.tenant_bound import TenantBound
from shared.clock import Clock
from shared.dns_canary import Canary, parse_dns_canaries
from shared.sidechecks import dmarc_record, dmarc_tree, spf_syntax
from shared.sidechecks.readiness import (
    QUERIES_MAX,
    REPORT_AUTH_MAX,
    SELECTORS_MAX,
    WIRE,
    DkimKey,
    Dmarc,
    DmarcLookup,
    Readiness,
    ReadinessAsk,
    ReportAuth,
    Spf,
    SpfNode,
    bounded,
    record_tags,
    selector,
)

BUDGET_MAX_S: Final = 10.0
SPF_RECORDS_MAX: Final = 40
TXT_MAX: Final = 8192  # bytes of TXT strings at one name: SPF and DKIM records are far smaller
PER_TENANT_MAX: Final = 2
GUARD_S: Final = 1.0
BUSY: Final = (
    "not asked: this organization's readiness rounds on this agent"
    f" ({PER_TENANT_MAX} at once) held it for the whole budget"
)
MX_NAMES_MAX: Final = 10  # RFC 7208 4.6.4: at most 10 MX names per `mx` term
# A macro naming the sender (anything but the domain, `%{d}`): its target is not known.
_SENDER_MACRO = re.compile(r"%\{[^dD]")


class Spent(Exception):
    """The round's budget (queries or time) is spent."""


class Failed(Exception):
    """A lookup that failed (timeout, SERVFAIL, a CNAME loop, an oversized answer)."""


@dataclass(slots=True)
class _Lookups:
    """One round's DNS lookups against its budget."""

    resolver: dns.asyncresolver.Resolver
    deadline: float
    left: int = QUERIES_MAX
    spent: int = 0

    async def ask(self, name: str, rdtype: str) -> list[dns.rdata.Rdata] | None:
        """The records of `name`; None for a void lookup (NXDOMAIN, or no records)."""
        if self.left <= 0:
            raise Spent(f"the round's {QUERIES_MAX} DNS queries are spent")
        remaining = self.deadline - asyncio.get_running_loop().time()
        if remaining <= 0.05:
            raise Spent("the round's time is spent")
        self.left -= 1
        self.spent += 1
        try:
            answer = await self.resolver.resolve(
                name, rdtype, raise_on_no_answer=False, lifetime=remaining, search=False
            )
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            raise Failed(f"{name} {rdtype}: {why(exc)}") from None
        wanted = dns.rdatatype.from_text(rdtype)
        found = [r for r in (answer.rrset or ()) if r.rdtype == wanted]
        return found or None

    async def txt(self, name: str) -> list[str] | None:
        records = await self.ask(name, "TXT")
        if records is None:
            return None
        texts: list[bytes] = [b"".join(r.strings) for r in records]  # type: ignore[attr-defined]
        if sum(len(t) for t in texts) > TXT_MAX:
            raise Failed(f"{name} TXT: the records are over {TXT_MAX} bytes")
        return [t.decode("ascii", "replace") for t in texts]


@dataclass(slots=True)
class _Walk:
    """An SPF include tree being walked: what `Spf` reports."""

    out: Spf = field(default_factory=Spf)

    def node(self, domain: str, via: str, parent: int, record: str) -> int:
        self.out.nodes.append(SpfNode(domain=domain, via=via, parent=parent, record=record))
        return len(self.out.nodes) - 1

    def count(self, index: int) -> None:
        self.out.lookups += 1
        self.out.nodes[index].lookups += 1

    def void(self, name: str) -> None:
        self.out.void += 1
        self.out.void_names.append(name)


async def _spf(look: _Lookups, domain: str) -> Spf:
    walk = _Walk()
    try:
        texts = await look.txt(domain)
        found = spf_syntax.records(texts or [])
        if not found:
            return walk.out  # no record: the mail DNS side check tells that
        if len(found) > 1:
            # the least in sorted order: DNS answers come in any order, which is no change
            walk.out.record = min(found)
            walk.out.broken = f"{domain} has {len(found)} SPF records"
            return walk.out
        walk.out.record = found[0]
        walk.out.all = await _visit(look, walk, domain, found[0], "", -1, [domain])
    except (Spent, Failed) as exc:
        walk.out.complete = False
        walk.out.error = str(exc)
    return walk.out


async def _visit(
    look: _Lookups, walk: _Walk, domain: str, record: str, via: str, parent: int, chain: list[str]
) -> str:
    """Count `record` (read at `domain`) and what it names, in evaluation order; returns the
    `all` term that ends its evaluation ("" for none)."""
    if len(walk.out.nodes) >= SPF_RECORDS_MAX:
        raise Spent(f"more than {SPF_RECORDS_MAX} SPF records in the include tree")
    index = walk.node(domain, via, parent, record)
    query = spf_syntax.parser(domain)
    terms = spf_syntax.terms(record)
    try:
        spf_syntax.parse(query, terms)
    except spf.PermError as exc:
        walk.out.broken = walk.out.broken or f"{domain}: {exc}"
        return ""
    except spf.TempError as exc:
        raise Failed(f"{domain}: {exc}") from None
    redirect: str | None = None
    ended = ""
    for term in terms:
        modifier = spf.RE_MODIFIER.split(term)[1:]
        if len(modifier) == 2:
            if modifier[0].lower() == "redirect":
                redirect = modifier[1]
            continue  # exp= and unknown modifiers cost no lookup
        _, kind, target, cidr, result = query.validate_mechanism(term)  # parsed above
        if kind == "all":
            ended = {"pass": "+", "neutral": "?", "softfail": "~", "fail": "-"}[result] + "all"
            break  # what follows is never evaluated, and redirect is ignored
        if kind in ("ip4", "ip6"):
            if cidr == 0:
                walk.out.everyone.append(term)
            continue
        walk.count(index)
        raw = spf.parse_mechanism(term.lstrip("+-~?"), domain)[1] or ""
        if kind == "ptr":
            walk.out.ptr = True
            continue
        if _SENDER_MACRO.search(raw):
            walk.out.macros.append(f"{kind}:{raw}")
            if kind == "include":
                walk.out.complete = False
            continue
        target = target.lower().rstrip(".")
        if kind == "include":
            await _include(look, walk, target, "include", index, chain)
        elif kind in ("a", "exists"):
            # RFC 7208 5.3: `a` asks the sender's address type (the walk's is IPv4, NO_SENDER);
            # 5.7: `exists` asks A whatever the sender
            if await look.ask(target, "A") is None:
                walk.void(target)
            elif kind == "a" and cidr == 0:  # an IPv4 length of 0
                walk.out.everyone.append(term)
        elif kind == "mx":
            names = await look.ask(target, "MX")
            if names is None:
                walk.void(target)
            elif len(names) > MX_NAMES_MAX:
                walk.out.mx_over.append(target)
            elif cidr == 0 and await _any_address(look, names):
                walk.out.everyone.append(term)  # an IPv4 length of 0 and an address
    if ended or redirect is None:
        return ended
    walk.count(index)
    if _SENDER_MACRO.search(redirect):
        walk.out.macros.append(f"redirect:{redirect}")
        walk.out.complete = False
        return ""
    target = query.expand_domain(redirect).lower().rstrip(".")
    return await _include(look, walk, target, "redirect", index, chain)


async def _include(
    look: _Lookups, walk: _Walk, target: str, via: str, parent: int, chain: list[str]
) -> str:
    """Follow an `include` or `redirect` to `target`; returns its `all` term."""
    if target in chain:
        walk.out.loop = [*chain, target]
        return ""
    texts = await look.txt(target)
    found = spf_syntax.records(texts or [])
    if texts is None:
        walk.void(target)
    if len(found) != 1:
        missing = "no SPF record" if not found else f"{len(found)} SPF records"
        walk.node(target, via, parent, "")
        walk.out.broken = walk.out.broken or f"{via}:{target} has {missing}"
        return ""
    return await _visit(look, walk, target, found[0], via, parent, [*chain, target])


async def _any_address(look: _Lookups, mx: Sequence[dns.rdata.Rdata]) -> bool:
    """Whether a name of `mx` has an A record (RFC 7208 5.4: an `mx` term matches the
    addresses of its names); asked in preference order, until one has."""
    names = sorted((r for r in mx if isinstance(r, MX)), key=lambda r: (r.preference, str(r)))
    for r in names:
        if await look.ask(r.exchange.to_text(omit_final_dot=True), "A"):
            return True
    return False


async def _dmarc(look: _Lookups, domain: str) -> Dmarc:
    """The Tree Walk from `domain` (stopping where RFC 9989 says), and the authorization of
    every external report destination of the record that applies (RFC 9990, "Verifying
    External Destinations")."""
    out = Dmarc()

    async def lookup(name: str) -> DmarcLookup:
        try:
            texts = await look.txt(f"_dmarc.{name}")
        except (Spent, Failed) as exc:
            return DmarcLookup(name=name, error=str(exc))
        return DmarcLookup(name=name, records=[t for t in texts or [] if dmarc_record.is_record(t)])

    out.walk = await dmarc_tree.walk(domain, lookup)
    walked = dmarc_tree.tree_walk(domain, out.walk)
    if walked is not None and walked.policy_at is not None and walked.record is not None:
        out.reports_for = walked.policy_at
        org = walked.organizational
        # The Organizational Domain of the record's domain: the walk's, or a PSD's own.
        within = walked.policy_at == org or walked.policy_at.endswith(f".{org}")
        external = report_destinations(walked.record, org if within else walked.policy_at)
        out.unchecked = max(0, len(external) - REPORT_AUTH_MAX)
        out.reports = await _report_auths(look, walked.policy_at, external[:REPORT_AUTH_MAX])
    return out


def report_destinations(record: str, org: str) -> list[tuple[str, str]]:
    """The `rua` and `ruf` mailto URIs of `record` whose host is outside the Organizational
    Domain `org`, each once, in the record's order, with their host (A-label, lower case; its
    own Organizational Domain taken as `org` when it is `org` or under it). A URI that is no
    mailto address is left out: receivers ignore it (RFC 9990, "Report Delivery")."""
    tags = dmarc_record.tags(record)
    uris = [u.strip() for key in ("rua", "ruf") for u in tags.get(key, "").split(",") if u.strip()]
    out: list[tuple[str, str]] = []
    for uri in dict.fromkeys(uris):
        host = _mailto_host(uri)
        if host is None or host == org or host.endswith(f".{org}"):
            continue
        out.append((uri, host))
    return out


def _mailto_host(uri: str) -> str | None:
    """The host of a `mailto:` URI (its `!size` suffix and query left out), as an A-label."""
    if not uri.lower().startswith("mailto:") or "@" not in uri:
        return None
    host = re.split(r"[!?]", uri.rsplit("@", 1)[1], maxsplit=1)[0].strip().rstrip(".")
    try:
        return idna.encode(host, uts46=True).decode("ascii").lower() if host else None
    except idna.IDNAError:
        return None


def _report_name(policy_at: str, host: str) -> str | None:
    """`<policy domain>._report._dmarc.<host>`, or None past DNS limits (RFC 9990, "Verifying
    External Destinations" step 4: then no authorization can be found)."""
    name = f"{policy_at}._report._dmarc.{host}"
    labels = name.split(".")
    return name if len(name) <= 253 and all(0 < len(x) <= 63 for x in labels) else None


async def _report_auths(
    look: _Lookups, policy_at: str, destinations: Sequence[tuple[str, str]]
) -> list[ReportAuth]:
    """Each destination's authorization by its host (RFC 9990, "Verifying External
    Destinations"): a `v=DMARC1` record at `<policy_at>._report._dmarc.<host>` whose `rua`,
    if it overrides, stays on the host. One query per host."""
    by_host: dict[str, ReportAuth] = {}
    out: list[ReportAuth] = []
    for uri, host in destinations:
        known = by_host.get(host)
        if known is None:
            known = by_host[host] = await _authorization(look, policy_at, host)
        out.append(msgspec.structs.replace(known, uri=uri))
    return out


async def _authorization(look: _Lookups, policy_at: str, host: str) -> ReportAuth:
    auth = ReportAuth(uri="", host=host, authorized=False)
    name = _report_name(policy_at, host)
    if name is None:
        auth.why = f"past DNS name limits: {policy_at}._report._dmarc.{host}"
        return auth
    try:
        texts = await look.txt(name)
    except (Spent, Failed) as exc:
        auth.authorized, auth.error = None, str(exc)
        return auth
    records = [t for t in texts or [] if dmarc_record.is_record(t)]
    if not records:
        auth.why = f"no v=DMARC1 record at {name}"
        return auth
    elsewhere = [
        u
        for r in records
        for u in dmarc_record.tags(r).get("rua", "").split(",")
        if u.strip() and _mailto_host(u.strip()) != host
    ]
    if elsewhere:
        auth.why = f"{name} overrides rua with another host ({elsewhere[0].strip()[:80]})"
        return auth
    auth.authorized = True
    return auth


async def _dkim(look: _Lookups, domain: str, name: str) -> DkimKey:
    key = DkimKey(selector=name)
    try:
        texts = await look.txt(f"{name}._domainkey.{domain}")
    except (Spent, Failed) as exc:
        key.error = str(exc)
        return key
    records = [t for t in texts or [] if "p=" in t.replace(" ", "")]
    if not records:
        return key
    key.record = min(records)  # DNS answers come in any order, which is no change
    tags = record_tags(key.record)
    if not tags:
        key.error = "the key record does not parse as a tag-list (RFC 6376 3.2)"
        return key
    key.key_type = tags.get("k", "rsa").strip().lower()
    key.testing = "y" in [f.strip() for f in tags.get("t", "").split(":")]
    data = re.sub(r"\s+", "", tags.get("p", ""))
    key.revoked = data == ""
    if key.revoked:
        return key
    try:
        der = base64.b64decode(data, validate=True)
    except ValueError:
        key.error = "p= is not base64"
        return key
    key.sha256 = hashlib.sha256(der).hexdigest()
    key.bits, why = _bits(key.key_type, der)
    key.error = why
    return key


def _bits(key_type: str, der: bytes) -> tuple[int | None, str]:
    """The size of a published key (RFC 6376 3.6.1: RSA as SubjectPublicKeyInfo, or the
    RSAPublicKey some publish; RFC 8463: Ed25519 as the raw 32 bytes)."""
    if key_type == "ed25519":
        return (256, "") if len(der) == 32 else (None, "not a 32-byte Ed25519 key")
    try:
        public = serialization.load_der_public_key(der)
    except (ValueError, TypeError) as exc:
        return None, f"the key does not parse: {str(exc)[:100]}"
    if isinstance(public, rsa.RSAPublicKey):
        return public.key_size, ""
    if isinstance(public, ed25519.Ed25519PublicKey):
        return 256, ""
    return None, f"a {type(public).__name__} key, not {key_type}"


class ReadinessProbe:
    """`resolver`: `host` or `host:port` of the DNS resolver to ask (None: the system's);
    `canaries`: the resolver canaries asked beside the lookups (None: the defaults)."""

    def __init__(
        self, *, resolver: str | None = None, canaries: tuple[Canary, ...] | None = None
    ) -> None:
        self._dns = CanaryResolver(resolver, canaries)
        self._tenants = TenantBound(PER_TENANT_MAX)

    async def probe(
        self, domain: str, selectors: Sequence[str], budget_s: float, tenant: str = ""
    ) -> Readiness:
        """What `domain` publishes, within `budget_s` (at most BUDGET_MAX_S), the wait for one
        of `tenant`'s rounds included."""
        out = Readiness(domain=domain)
        if not domain:
            return out
        loop = asyncio.get_running_loop()
        budget = max(0.1, min(budget_s, BUDGET_MAX_S))
        deadline = loop.time() + budget
        try:
            resolver = self._dns.resolver()
        except dns.exception.DNSException as exc:
            out.error = f"no resolver: {exc}"
            return out
        async with contextlib.AsyncExitStack() as held:
            try:
                async with asyncio.timeout_at(deadline):
                    await held.enter_async_context(self._tenants.slot(tenant))
            except TimeoutError:
                out.error = BUSY
                return out
            try:
                # Each lookup ends within the budget; this only guards against one that
                # overstays.
                async with asyncio.timeout_at(deadline + GUARD_S):
                    await self._gather(out, resolver, deadline, selectors)
            except TimeoutError:
                out.error = out.error or "the round's time was spent"
        return bounded(out)

    async def _gather(
        self,
        out: Readiness,
        resolver: dns.asyncresolver.Resolver,
        deadline: float,
        selectors: Sequence[str],
    ) -> None:
        loop = asyncio.get_running_loop()
        look = _Lookups(resolver, deadline)
        canaries = asyncio.create_task(self._dns.canaries.answers(resolver, deadline - loop.time()))
        try:
            out.spf = await _spf(look, out.domain)
            out.dmarc = await _dmarc(look, out.domain)
            try:
                mx = await look.ask(out.domain, "MX")
                out.mx = sorted({r.to_text().split()[-1].rstrip(".").lower() for r in mx or []})
            except (Spent, Failed) as exc:
                out.error = str(exc)
            usable = (s for s in map(selector, selectors) if s is not None)
            wanted = list(dict.fromkeys(usable))[:SELECTORS_MAX]
            out.dkim = [await _dkim(look, out.domain, s) for s in wanted]
        finally:
            out.queries = look.spent
            out.canaries = await canaries


def signing(at: Round, domain: str) -> list[str]:
    """The selectors the round's own message (a round trip's, as received) was signed with
    for `domain` (`d=` the domain)."""
    found = at.result.auth_results
    signed = (s.selector for s in (found.signatures if found else []) if s.domain == domain)
    return [s for s in map(selector, signed) if s is not None]


async def _run(probe: ReadinessProbe, ask: ReadinessAsk, at: Round) -> Readiness | None:
    if ask.held:
        return bounded(Readiness(error=ask.held))  # asked nothing: the budget is spent
    domain = ask.domain.strip().lower().rstrip(".")
    signed = signing(at, domain)
    out = await probe.probe(
        domain, [*signed, *ask.selectors], at.job.timeout_seconds, at.job.tenant
    )
    for key in out.dkim:
        key.signing = key.selector in signed
    return out


def runner(probe: ReadinessProbe) -> Runner[ReadinessAsk, Readiness]:
    return partial(_run, probe)


def build(
    settings: SideCheckSettings, targets: TargetSettings, clock: Clock
) -> Runner[ReadinessAsk, Readiness]:
    return runner(
        ReadinessProbe(
            resolver=settings.agent_dns_resolver,
            canaries=parse_dns_canaries(settings.agent_dns_canaries),
        )
    )


SIDE_CHECK: Final = AgentSideCheck(WIRE, build)
