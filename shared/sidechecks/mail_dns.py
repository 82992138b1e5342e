"""Mail DNS on the wire: what an agent resolved from its country of a monitor's mail domain (MX,
SPF, DMARC, MTA-STS and its policy, TLS-RPT) and the TLSA records of the monitored service.
Asked on the DNS cadence of a monitor with a `mailDomain`; bounded by
`shared.sidechecks.mail_dns_bound`."""

from typing import Final

import msgspec

from shared.dns_canary import DnsCanary
from shared.sidechecks import SideCheckWire
from shared.sidechecks.readiness import DmarcLookup


class MailDnsAsk(msgspec.Struct, kw_only=True, rename="camel"):
    """The domain whose mail DNS to resolve (the monitor's `mailDomain`); the TLSA records are
    the job's host's and port's."""

    domain: str


class MailDns(msgspec.Struct, kw_only=True, rename="camel"):
    """What an agent resolved from its country for a job's `mailDomain`. Each list holds the
    records as served (a TXT record's strings joined), only those of its kind (`v=spf1`,
    `v=DMARC1`, `v=STSv1`, `v=TLSRPTv1`); [] when there is none; null when the lookup failed,
    with why in `errors` (keyed by the list's name). `mx`: exchange names by preference, lower
    case, without the final dot. `tlsa`: `usage selector matchingType hex` at
    `_port._tcp.<monitored host>`; `tlsaDnssec`: that answer carried the AD bit from the agent's
    (validating) resolver: without it the records are unverified and prove nothing. The
    MTA-STS policy is fetched only when the `_mta-sts` TXT is there: its text (at most 64 KiB),
    or why it could not be had in `errors["mtaStsPolicy"]`. The whole is bounded
    (`shared.sidechecks.mail_dns_bound`: at most 16 KiB encoded, per list and record too);
    `truncated` names the parts cut to fit (`mx`, `spf`, ..., `mtaStsPolicy`, `errors`,
    `domain`): a cut list holds the records that fitted, never fewer than one."""

    domain: str
    mx: list[str] | None = None
    spf: list[str] | None = None
    dmarc: list[str] | None = None
    mta_sts: list[str] | None = None
    mta_sts_policy: str | None = None
    tls_rpt: list[str] | None = None
    tlsa: list[str] | None = None
    tlsa_dnssec: bool = False
    errors: dict[str, str] = msgspec.field(default_factory=dict)
    truncated: list[str] = msgspec.field(default_factory=list)
    # The resolver canaries asked beside these lookups (shared.dns_canary); null from older
    # agents and from one with no canaries configured.
    canaries: list[DnsCanary] | None = None
    # The DMARC Tree Walk above the domain (RFC 9989 4.10: `_dmarc.<name>` of each name it
    # asks after the domain's own, in order, until it stops), walked when `_dmarc.<domain>`
    # holds no one DMARC record; null when not walked, and from older agents.
    dmarc_walk: list[DmarcLookup] | None = None


WIRE: Final = SideCheckWire("mail_dns", MailDnsAsk, MailDns)
