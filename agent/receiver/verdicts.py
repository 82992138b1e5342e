"""What a received message says, read in a parser thread (never on the event loop): its From
and Subject, and the receiver's own SPF (pyspf), DKIM and ARC (dkimpy) and DMARC verdicts.

DNS goes through the `Lookup` it is given (the agent's resolver, a budget per message), never
the system's resolver behind the libraries' backs. DMARC (RFC 9989): the From domain's policy
record and Organizational Domain by the one Tree Walk (shared/sidechecks/dmarc_tree.py), each
record read by shared/sidechecks/dmarc_record.py; `pass` when SPF or a DKIM signature passed
for a domain aligned with it (strict: the same domain; relaxed: the same Organizational Domain,
the identifier being it or a name below it).
"""

import asyncio
import email.parser
import email.policy
import email.utils
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import dkim
import dns.exception
import dns.resolver
import spf

from shared.arrivals import TEXT_MAX, Verdicts
from shared.sidechecks.dmarc_record import is_record, tags
from shared.sidechecks.dmarc_tree import tree_walk, walk
from shared.sidechecks.readiness import DmarcLookup
from shared.strangers import kept

DKIM_SIGNATURES_MAX: Final = 4
# Each DNS question's own time, and what all of one message's SPF evaluation may take.
QUERY_S: Final = 2.0
SPF_BUDGET_S: Final = 6.0
# Headers read for From and Subject: the message is capped in size, its header block too.
HEADERS_MAX: Final = 64 * 1024


class Lookup:
    """Synchronous DNS through `resolver`, for the parser threads: TXT texts, and pyspf's
    answers in its own shapes."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self.resolver = resolver

    def _answer(self, name: str, qtype: str) -> dns.resolver.Answer | None:
        """None for a name or type with no records; raises dns.exception.DNSException when the
        resolver could not say."""
        try:
            return self.resolver.resolve(name, qtype, lifetime=QUERY_S, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None

    def txt(self, name: str) -> list[str]:
        answer = self._answer(name, "TXT")
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer or ()]

    def dkim_txt(self, name: bytes, timeout: int = 5) -> bytes | None:
        """dkimpy's `dnsfunc`: the first TXT record of `name`, its strings joined."""
        try:
            answer = self._answer(name.decode("ascii", "replace"), "TXT")
        except dns.exception.DNSException:
            return None
        for r in answer or ():
            return b"".join(r.strings)
        return None

    def spf_answers(self, name: str, qtype: str) -> list[object]:
        """pyspf's answers for `name` and `qtype`: addresses, (preference, exchange), names,
        or TXT strings; spf.TempError when the resolver could not say."""
        try:
            answer = self._answer(name, qtype)
        except dns.exception.DNSException as exc:
            raise spf.TempError(f"DNS {type(exc).__name__}") from None
        out: list[object] = []
        for r in answer or ():
            if qtype in ("A", "AAAA"):
                out.append(r.address)
            elif qtype == "MX":
                out.append((r.preference, r.exchange))
            elif qtype == "PTR":
                out.append(r.target.to_text(True))
            elif qtype in ("TXT", "SPF"):
                out.append(r.strings)
        return out


class _SpfQuery(spf.query):  # type: ignore[misc]
    """pyspf's evaluation, its lookups through the receiver's `Lookup` (pyspf's own limits
    stand: 10 lookups, 2 void ones, `querytime` in all)."""

    def __init__(self, lookup: Lookup, **kw: object) -> None:
        super().__init__(**kw)
        self._lookup = lookup

    def dns(
        self, name: str, qtype: str, cnames: object = None, ignore_void: bool = False
    ) -> list[object]:
        name = str(name).rstrip(".").lower()
        if not name or not all(0 < len(label) < 64 for label in name.split(".")):
            return []
        result = self._lookup.spf_answers(name, qtype)
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result


@dataclass(frozen=True, slots=True)
class Envelope:
    peer_ip: str
    helo: str
    mail_from: str


@dataclass(frozen=True, slots=True)
class Read:
    header_from: str
    subject: str
    verdicts: Verdicts
    message_id: str = ""


def read(message: bytes, envelope: Envelope, lookup: Lookup) -> Read:
    """The message's From, Subject, Message-ID and verdicts. Never raises for what a sender
    wrote: a part that cannot be judged is `permerror` (malformed) or `temperror` (DNS)."""
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        message[:HEADERS_MAX]
    )
    from_domain, header_from = _from_domain(headers.get_all("From") or [])
    subject = kept(str(headers.get("Subject") or ""), TEXT_MAX)
    spf_result, spf_domain = _spf(envelope, lookup)
    dkim_result, dkim_domains = _dkim(message, lookup)
    arc = _arc(message, lookup)
    dmarc, policy = _dmarc(from_domain, spf_result, spf_domain, dkim_domains, lookup)
    return Read(
        header_from=header_from,
        subject=subject,
        message_id=kept(str(headers.get("Message-ID") or "").strip(), TEXT_MAX),
        verdicts=Verdicts(
            spf=spf_result,
            dkim=dkim_result,
            dkim_domains=dkim_domains[:DKIM_SIGNATURES_MAX],
            dmarc=dmarc,
            dmarc_policy=policy,
            arc=arc,
        ),
    )


def _from_domain(values: Sequence[str]) -> tuple[str | None, str]:
    """The From header's one address's domain (None unless exactly one address with a domain:
    DMARC judges no other) and the address as kept."""
    addresses = email.utils.getaddresses([str(v) for v in values])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        return None, kept(" ".join(a for _, a in addresses), TEXT_MAX)
    address = addresses[0][1]
    domain = address.rpartition("@")[2].strip().rstrip(".").lower()
    return (domain or None), kept(address, TEXT_MAX)


def _spf(envelope: Envelope, lookup: Lookup) -> tuple[str, str]:
    """RFC 7208's result for MAIL FROM (HELO's identity for the null sender) and the domain it
    is for."""
    sender = envelope.mail_from or f"postmaster@{envelope.helo}"
    domain = sender.rpartition("@")[2].lower()
    try:
        query = _SpfQuery(
            lookup,
            i=envelope.peer_ip,
            s=sender,
            h=envelope.helo or "unknown",
            timeout=QUERY_S,
            querytime=SPF_BUDGET_S,
        )
        result, _, _ = query.check()
    except (spf.TempError, dns.exception.DNSException):
        return "temperror", domain
    except (spf.PermError, ValueError, UnicodeError):
        return "permerror", domain
    return str(result), domain


def _dkim(message: bytes, lookup: Lookup) -> tuple[str, list[str]]:
    """`pass` when a signature verified (with the `d=` of each that did), `fail` when there
    were signatures and none did, `none` without one; at most `DKIM_SIGNATURES_MAX` tried."""
    try:
        signed = dkim.DKIM(message, minkey=1024, timeout=int(QUERY_S))
        count = sum(1 for name, _ in signed.headers if name.lower() == b"dkim-signature")
    except (dkim.DKIMException, ValueError, IndexError):
        return "permerror", []
    if not count:
        return "none", []
    passed: list[str] = []
    for idx in range(min(count, DKIM_SIGNATURES_MAX)):
        try:
            ok = signed.verify(idx=idx, dnsfunc=lookup.dkim_txt)
        except (dkim.DKIMException, ValueError, IndexError, UnicodeError):
            continue
        domain = (signed.domain or b"").decode("ascii", "replace").lower()
        if ok and domain:
            passed.append(kept(domain, TEXT_MAX))
    return ("pass" if passed else "fail"), passed


def _arc(message: bytes, lookup: Lookup) -> str:
    """The ARC chain's validation (`pass`, `fail`, `none`: RFC 8617)."""
    try:
        cv, _, _ = dkim.arc_verify(message, dnsfunc=lookup.dkim_txt, timeout=int(QUERY_S))
    except (dkim.DKIMException, ValueError, IndexError, UnicodeError):
        return "fail"
    return bytes(cv).decode("ascii", "replace").lower() or "none"


def _dmarc(
    from_domain: str | None,
    spf_result: str,
    spf_domain: str,
    dkim_domains: Sequence[str],
    lookup: Lookup,
) -> tuple[str, str]:
    """The DMARC result and the policy asked (`p=`, "" without a record)."""
    if from_domain is None:
        return "permerror", ""

    async def ask(name: str) -> DmarcLookup:
        try:
            texts = lookup.txt(f"_dmarc.{name}")
        except dns.exception.DNSException as exc:
            return DmarcLookup(name=name, records=None, error=type(exc).__name__)
        return DmarcLookup(name=name, records=[t for t in texts if is_record(t)])

    walked = tree_walk(from_domain, asyncio.run(walk(from_domain, ask)))
    if walked is None:
        return "temperror", ""
    if walked.record is None:
        return "none", ""
    t = tags(walked.record)
    policy = walked.policy or ""

    def aligned(domain: str, mode: str) -> bool:
        if mode == "s":
            return domain == from_domain
        org = walked.organizational
        return domain == org or domain.endswith("." + org)

    spf_ok = spf_result == "pass" and aligned(spf_domain, t.get("aspf", "r").lower())
    dkim_ok = any(aligned(d, t.get("adkim", "r").lower()) for d in dkim_domains)
    return ("pass" if spf_ok or dkim_ok else "fail"), policy
